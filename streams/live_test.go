package streams

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func newIngestServer(t *testing.T, m *Manager) *httptest.Server {
	srv := httptest.NewServer(NewIngestHandler(m, "source", "hackme"))
	t.Cleanup(srv.Close)
	return srv
}

// readLive reads n bytes of units from a viewer of name.
func readLive(t *testing.T, m *Manager, name string, n int) []byte {
	t.Helper()
	var v *LiveView
	waitUntil(t, "the live stream "+name, func() bool {
		var err error
		v, err = m.OpenLive(name, time.Hour)
		return err == nil
	})
	defer v.Close()
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(out) < n {
		u, err := v.Next(ctx)
		if err != nil {
			t.Fatalf("viewer after %d bytes: %v", len(out), err)
		}
		out = append(out, u.Data...)
	}
	return out
}

func TestIngestChunkedPUTRelaysMP3(t *testing.T) {
	mp3, err := os.ReadFile("../testdata/media/mp3-cbr128.mp3")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newTestManager(t)
	srv := newIngestServer(t, m)

	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/live/radio.mp3", pr)
	req.SetBasicAuth("source", "hackme")
	req.Header.Set("Content-Type", "audio/mpeg")
	req.Header.Set("Ice-Name", "Radio One")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	go func() {
		for off := 0; off < len(mp3); off += 1000 { // arbitrary chunks
			pw.Write(mp3[off:min(off+1000, len(mp3))])
		}
	}()
	got := readLive(t, m, "live/radio.mp3", 32<<10)
	// Units are whole frames: what the viewer got is a run of the input
	// (ID3 tags and the Xing/Info frame aside).
	if !bytes.Contains(mp3, got[:4096]) {
		t.Fatal("the viewer's bytes are not the source's frames")
	}
	s, _ := m.Stream("live/radio.mp3")
	if s.Kind != KindLive || s.Source != SourcePush || s.Origin != "n1" {
		t.Fatalf("stream %+v", s)
	}
	v, _ := m.OpenLive("live/radio.mp3", 0)
	if v.ContentType != "audio/mpeg" || v.Meta.Get("Ice-Name") != "Radio One" {
		t.Fatalf("view %q %v", v.ContentType, v.Meta)
	}
	v.Close()

	// A second source on the live mount is refused.
	req2, _ := http.NewRequest(http.MethodPut, srv.URL+"/live/radio.mp3", strings.NewReader("x"))
	req2.SetBasicAuth("source", "hackme")
	req2.Header.Set("Content-Type", "audio/mpeg")
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil || resp2.StatusCode != http.StatusConflict {
		t.Fatalf("second source: %v %v", resp2.Status, err)
	}

	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("source's answer: %+v", resp)
	}
	waitUntil(t, "the stream to go offline", func() bool {
		for _, st := range m.Statuses() {
			if st.Name == "live/radio.mp3" {
				return st.Current.State == StateOffline
			}
		}
		return false
	})
}

// sourceClient speaks the raw protocol of an unframed source client.
func sourceClient(t *testing.T, addr, request string, body []byte) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	io.WriteString(conn, request)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(status, " 100 ") || strings.Contains(status, " 200 ") {
		conn.Write(body)
	}
	return status
}

func TestIngestUnframedSourceAndPutWithExpect(t *testing.T) {
	mp3, _ := os.ReadFile("../testdata/media/mp3-cbr128.mp3")
	m, _ := newTestManager(t)
	srv := newIngestServer(t, m)
	addr := strings.TrimPrefix(srv.URL, "http://")
	auth := "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n" // source:hackme

	status := sourceClient(t, addr, "SOURCE /legacy.mp3 HTTP/1.0\r\n"+auth+"Content-Type: audio/mpeg\r\nice-name: old\r\n\r\n", mp3)
	if !strings.HasPrefix(status, "HTTP/1.0 200") {
		t.Fatalf("SOURCE: %q", status)
	}
	readLive(t, m, "legacy.mp3", 16<<10)

	status = sourceClient(t, addr, "PUT /ffmpeg.mp3 HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: audio/mpeg\r\nExpect: 100-continue\r\n\r\n", mp3)
	if !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("PUT with Expect: %q", status)
	}
	readLive(t, m, "ffmpeg.mp3", 16<<10)
}

func TestIngestRefusals(t *testing.T) {
	m, _ := newTestManager(t)
	srv := newIngestServer(t, m)
	for _, tc := range []struct {
		method, path, user, pass, ctype string
		want                            int
	}{
		{"PUT", "/a.mp3", "source", "wrong", "audio/mpeg", 401},
		{"PUT", "/a.mp3", "", "", "audio/mpeg", 401},
		{"GET", "/a.mp3", "source", "hackme", "audio/mpeg", 405},
		{"PUT", "/a.ogg", "source", "hackme", "audio/ogg", 415},
		{"PUT", "/../x.mp3", "source", "hackme", "audio/mpeg", 400},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("data"))
		req.URL.Path = tc.path // keep the dots
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s as %s: %d, want %d", tc.method, tc.path, tc.user, resp.StatusCode, tc.want)
		}
	}
	if len(m.Streams()) != 0 {
		t.Fatalf("refused sources created streams: %v", m.Streams())
	}
}

func TestRelayWireRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := []frame{
		{typ: frameHeader, data: []byte("init")},
		{typ: frameUnit, flags: flagKey | flagSource, seq: 7, time: time.Second, dur: 100 * time.Millisecond, edge: 3 * time.Second, data: []byte("unit")},
		{typ: framePing, edge: 4 * time.Second},
	}
	for _, f := range in {
		writeFrame(&buf, f)
	}
	fr := newFrameReader(&buf)
	for i, want := range in {
		got, err := fr.next()
		if err != nil || got.typ != want.typ || got.seq != want.seq || got.time != want.time || got.dur != want.dur || got.edge != want.edge || !bytes.Equal(got.data, want.data) || got.key() != (want.flags&flagKey != 0) {
			t.Fatalf("frame %d: %+v %v, want %+v", i, got, err, want)
		}
	}
	if _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}
}

func FuzzRelayWire(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, frame{typ: frameUnit, flags: flagKey, seq: 1, dur: time.Second, data: []byte("abc")})
	f.Add(buf.Bytes())
	f.Add([]byte("U\x00\x00"))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b))
		for range 100 {
			f, err := fr.next()
			if err != nil {
				return
			}
			if len(f.data) > maxFrameData {
				t.Fatalf("frame of %d bytes accepted", len(f.data))
			}
		}
	})
}

// forwardedLog commits a write the way a leader on another node does: the
// answer comes back before this node's own FSM has applied the entry.
type forwardedLog struct {
	leader  localLog
	local   *FSM
	pending []*raft.Log
}

func (f *forwardedLog) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	resp, err := f.leader.Apply(ctx, cmd)
	f.pending = append(f.pending, &raft.Log{Index: f.leader.index, Data: cmd})
	return resp, err
}

func (f *forwardedLog) IsLeader() bool { return false }

func (f *forwardedLog) catchUp() {
	for _, l := range f.pending {
		f.local.Apply(l)
	}
	f.pending = nil
}

// A reconcile pass that still sees the set from before a source client's
// stream was committed must not drop that stream's relay or state.
func TestIngestSurvivesReconcileThatHasNotSeenItsStream(t *testing.T) {
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local := NewFSM()
	log := &forwardedLog{leader: localLog{fsm: NewFSM()}, local: local}
	m := NewManager(Options{Self: "n1", Replicates: true, FSM: local, Store: store, Cluster: log, Peers: noPeers{}})
	defer m.Close()

	in, err := m.OpenIngest(context.Background(), "live/radio.mp3", "audio/mpeg", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.reconcile() // the local FSM has not applied the add yet
	log.catchUp()
	m.reconcile()

	mp3, err := os.ReadFile("../testdata/media/mp3-cbr128.mp3")
	if err != nil {
		t.Fatal(err)
	}
	go in.Feed(context.Background(), bytes.NewReader(mp3), nil)
	got := readLive(t, m, "live/radio.mp3", 8<<10)
	if len(got) < 8<<10 {
		t.Fatalf("viewer got %d bytes", len(got))
	}
	if st := m.state("live/radio.mp3", 1).state(); st != StateLive && st != StateOffline {
		t.Fatalf("state %q, want the ingestion's", st)
	}
}
