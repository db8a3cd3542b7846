package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/castmesh/castmesh/streams"
)

// liveStreams serves one live stream from a relay the test publishes to.
type liveStreams struct {
	relay *streams.Relay
}

func (l *liveStreams) Stream(name string) (streams.Stream, bool) {
	return streams.Stream{Name: name, Kind: streams.KindLive}, name == "live/a.mp4"
}

func (l *liveStreams) OpenCopy(string) (*os.File, streams.Copy, func(), error) {
	return nil, streams.Copy{}, nil, streams.ErrNotFound
}

func (l *liveStreams) OpenLive(name string, burst time.Duration) (*streams.LiveView, error) {
	return streams.NewLiveView(l.relay, burst, "video/mp4", http.Header{"Ice-Name": {"Test\r\nX-Injected: 1"}}), nil
}

// newLiveEdge starts an edge with o (its Streams set to a liveStreams).
func newLiveEdge(t *testing.T, o Options) (*liveStreams, *Server, *httptest.Server) {
	ls := &liveStreams{relay: streams.NewRelay(streams.RelayOptions{})}
	o.Streams = ls
	srv := New(o)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ls.relay.Close()
		hs.CloseClientConnections()
		hs.Close()
		srv.Close()
	})
	return ls, srv, hs
}

func liveGet(t *testing.T, hs *httptest.Server, proto string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	io.WriteString(conn, "GET /live/a.mp4 "+proto+"\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// A viewer that joins before the init segment gets it first, then the
// units in order, in a body that runs until the connection closes.
func TestLiveViewerGetsHeaderThenUnitsUntilClose(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		ls, _, hs := newLiveEdge(t, Options{})
		_, br, resp := liveGet(t, hs, proto)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/mp4" || resp.TransferEncoding != nil || resp.ContentLength != -1 {
			t.Fatalf("%s: %d %v te=%v len=%d", proto, resp.StatusCode, resp.Header, resp.TransferEncoding, resp.ContentLength)
		}
		if got := resp.Header.Get("Icy-Name"); got != "Test  X-Injected: 1" || resp.Header.Get("X-Injected") != "" {
			t.Fatalf("%s: Icy-Name %q: a source's header value must not break the response", proto, got)
		}
		ls.relay.SetHeader([]byte("INIT"))
		var want []byte
		want = append(want, "INIT"...)
		for _, u := range []string{"u1", "u2", "u3"} {
			ls.relay.Publish(streams.Unit{Data: []byte(u), Duration: 100 * time.Millisecond, Key: true})
			want = append(want, u...)
		}
		got := make([]byte, len(want))
		start := time.Now()
		if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: got %q %v, want %q", proto, got, err, want)
		}
		if d := time.Since(start); d > liveBatch+200*time.Millisecond {
			t.Errorf("%s: units took %v to arrive, batching allows %v", proto, d, liveBatch)
		}
		ls.relay.Close()
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Fatalf("%s: after the stream ended: %q %v, want EOF", proto, rest, err)
		}
	}
}

// A viewer that stops reading is dropped after the write timeout and
// holds up neither the relay nor another viewer.
func TestLiveStalledViewerIsDroppedOthersKeepUp(t *testing.T) {
	ls, _, hs := newLiveEdge(t, Options{WriteTimeout: 300 * time.Millisecond})
	stalled, _, _ := liveGet(t, hs, "HTTP/1.1")
	stalled.(*net.TCPConn).SetReadBuffer(4 << 10)
	reading, br, _ := liveGet(t, hs, "HTTP/1.1")
	unit := bytes.Repeat([]byte("x"), 512<<10)
	got := make([]byte, len(unit))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		ls.relay.Publish(streams.Unit{Data: unit, Duration: 10 * time.Millisecond, Key: true})
		reading.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading viewer after %d units: %v", i, err)
		}
		if readers, _, _, _ := ls.relay.Stats(); readers == 1 {
			break // the stalled one is gone
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled viewer was never dropped")
		}
	}
}

// A viewer that hangs up while the stream sends nothing is noticed.
func TestLiveViewerGoneWhileIdle(t *testing.T) {
	defer func(d time.Duration) { liveIdleCheck = d }(liveIdleCheck)
	liveIdleCheck = 50 * time.Millisecond
	ls, _, hs := newLiveEdge(t, Options{})
	conn, _, _ := liveGet(t, hs, "HTTP/1.1")
	readers := func(want int64) func() bool {
		return func() bool { n, _, _, _ := ls.relay.Stats(); return n == want }
	}
	waitUntil(t, "the viewer on the relay", readers(1))
	conn.Close()
	waitUntil(t, "the viewer that hung up to leave the relay", readers(0))
}

func TestLiveHead(t *testing.T) {
	_, _, hs := newLiveEdge(t, Options{})
	resp, err := http.Head(hs.URL + "/live/a.mp4")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
}

func TestSplitBuffers(t *testing.T) {
	b := [][]byte{[]byte("abc"), []byte("de"), []byte("fgh")}
	head, tail := splitBuffers(b, 4)
	if j := func(x [][]byte) string { return string(bytes.Join(x, nil)) }; j(head) != "abcd" || j(tail) != "efgh" {
		t.Fatalf("%q %q", head, tail)
	}
}

// A viewer held by a session cap has a goroutine of its own and is paced
// by the cap; it still gets every byte in order.
func TestLiveViewerUnderSessionCap(t *testing.T) {
	cfg := DefaultConfig()
	v := cfg.VHosts["default"]
	v.SessionCap = 64 << 10 // bytes/s
	cfg.VHosts["default"] = v
	ls, _, hs := newLiveEdge(t, Options{Config: cfg})
	_, br, _ := liveGet(t, hs, "HTTP/1.1")
	var want []byte
	for i := range 4 {
		u := bytes.Repeat([]byte{byte('a' + i)}, 32<<10)
		ls.relay.Publish(streams.Unit{Data: u, Duration: 100 * time.Millisecond, Key: true})
		want = append(want, u...)
	}
	start := time.Now()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("capped viewer: %v, %d bytes in order: %v", err, len(got), bytes.Equal(got, want))
	}
	// 128 KiB at 64 KiB/s: about 2 s (the first grant may come at once).
	if d := time.Since(start); d < time.Second {
		t.Fatalf("128 KiB under a 64 KiB/s session cap took %v", d)
	}
}

// A cap set by a reload while a viewer is served by the hub moves it to a
// goroutine of its own, under the cap, without losing or reordering bytes.
func TestLiveViewerMovesOffTheHubWhenACapComes(t *testing.T) {
	ls, srv, hs := newLiveEdge(t, Options{})
	_, br, _ := liveGet(t, hs, "HTTP/1.1")
	var want []byte
	publish := func(i int) {
		u := bytes.Repeat([]byte{byte('a' + i)}, 16<<10)
		ls.relay.Publish(streams.Unit{Data: u, Duration: 100 * time.Millisecond, Key: true})
		want = append(want, u...)
	}
	publish(0)
	got := make([]byte, 16<<10)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	v := cfg.VHosts["default"]
	v.TrafficCap = 32 << 10 // open sessions keep their own caps; the vhost's changes in place
	cfg.VHosts["default"] = v
	srv.Apply(cfg)
	for i := 1; i < 5; i++ {
		publish(i)
	}
	start := time.Now()
	rest := make([]byte, len(want)-len(got))
	if _, err := io.ReadFull(br, rest); err != nil || !bytes.Equal(append(got, rest...), want) {
		t.Fatalf("after the cap: %v, in order: %v", err, bytes.Equal(append(got, rest...), want))
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("64 KiB under a 32 KiB/s cap set by a reload took %v", d)
	}
}
