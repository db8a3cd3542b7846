package edge

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/media"
	"github.com/castmesh/castmesh/shaping"
	"github.com/castmesh/castmesh/streams"
)

// fakeStreams serves files from disk as file streams, and relays as live
// streams, counting viewers and noting the bursts asked for.
type fakeStreams struct {
	mu      sync.Mutex
	files   map[string]string // stream name → path
	live    map[string]*streams.Relay
	bursts  []time.Duration
	viewers int
}

func (f *fakeStreams) add(name, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string]string{}
	}
	f.files[name] = path
}

func (f *fakeStreams) Stream(name string) (streams.Stream, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[name]; ok {
		return streams.Stream{Name: name, Kind: streams.KindLive}, true
	}
	_, ok := f.files[name]
	return streams.Stream{Name: name, Kind: streams.KindFile}, ok
}

func (f *fakeStreams) OpenCopy(name string) (*os.File, streams.Copy, func(), error) {
	f.mu.Lock()
	p, ok := f.files[name]
	f.mu.Unlock()
	if !ok {
		return nil, streams.Copy{}, nil, streams.ErrNotFound
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, streams.Copy{}, nil, err
	}
	st, _ := file.Stat()
	sum := sha256.Sum256([]byte(p + st.ModTime().String()))
	f.mu.Lock()
	f.viewers++
	f.mu.Unlock()
	return file, streams.Copy{Name: name, Size: st.Size(), SHA256: hex.EncodeToString(sum[:]), ModTime: st.ModTime().UTC().Truncate(time.Second)},
		func() { f.mu.Lock(); f.viewers--; f.mu.Unlock() }, nil
}

func (f *fakeStreams) viewerCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.viewers
}

func (f *fakeStreams) OpenLive(name string, burst time.Duration) (*streams.LiveView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.live[name]
	if !ok {
		return nil, streams.ErrNotFound
	}
	f.bursts = append(f.bursts, burst)
	return streams.NewLiveView(r, burst, "audio/mpeg", nil), nil
}

// liveStream adds a live stream whose relay holds secs seconds of 1,000
// bytes a second, in 100 ms units.
func (f *fakeStreams) liveStream(t *testing.T, name string, secs int) *streams.Relay {
	r := streams.NewRelay(streams.RelayOptions{Window: time.Duration(secs+5) * time.Second})
	t.Cleanup(r.Close)
	for range secs * 10 {
		r.Publish(streams.Unit{Data: bytes.Repeat([]byte{'u'}, 100), Duration: 100 * time.Millisecond, Key: true})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil {
		f.live = map[string]*streams.Relay{}
	}
	f.live[name] = r
	return r
}

// testEdge is an edge on a real socket (so sendfile and deadlines are the
// server's own) with its config written as TOML.
type testEdge struct {
	t   *testing.T
	srv *Server
	hs  *httptest.Server
	st  *fakeStreams
	reg *prometheus.Registry
	dir string
}

// newTestEdge starts an edge whose [edge] section is edgeTOML (vhost
// tables and all). rules maps a file name to its contents, written next to
// the config.
func newTestEdge(t *testing.T, edgeTOML string, rules map[string]string, opts ...func(*Options)) *testEdge {
	t.Helper()
	dir := t.TempDir()
	for name, text := range rules {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(cfgPath, []byte(edgeTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	te := &testEdge{t: t, st: &fakeStreams{}, reg: prometheus.NewRegistry(), dir: dir}
	o := Options{Streams: te.st, Registry: te.reg, Config: ec}
	for _, f := range opts {
		f(&o)
	}
	te.srv = New(o)
	te.hs = httptest.NewServer(te.srv)
	t.Cleanup(func() {
		te.hs.CloseClientConnections()
		te.hs.Close()
		te.srv.Close()
	})
	return te
}

// file adds a stream backed by a copy of src (or by size random bytes
// when src is "").
func (te *testEdge) file(name, src string, size int) []byte {
	te.t.Helper()
	var b []byte
	if src != "" {
		var err error
		if b, err = os.ReadFile(src); err != nil {
			te.t.Fatal(err)
		}
	} else {
		b = make([]byte, size)
		for i := range b {
			b[i] = byte(i*7 + i/251)
		}
	}
	p := filepath.Join(te.dir, strings.ReplaceAll(name, "/", "_"))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		te.t.Fatal(err)
	}
	te.st.add(name, p)
	return b
}

func (te *testEdge) get(path string, header ...string) (*http.Response, []byte) {
	te.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, te.hs.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		te.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		te.t.Fatal(err)
	}
	return resp, b
}

// timed is what a raw socket client saw of one response: the status, the
// body, and how many body bytes had arrived at each moment.
type timed struct {
	status string
	body   []byte
	at     []time.Duration // arrival of each read, from the request
	cum    []int           // body bytes after that read
}

// bytesBy is how many body bytes had arrived d after the request.
func (tr *timed) bytesBy(d time.Duration) int {
	n := 0
	for i, at := range tr.at {
		if at > d {
			break
		}
		n = tr.cum[i]
	}
	return n
}

// fetchTimed sends a GET on a raw socket and reads for at most d.
func fetchTimed(t *testing.T, addr, path string, d time.Duration, header ...string) *timed {
	t.Helper()
	return fetchTimedHost(t, addr, "", path, d, header...)
}

// fetchTimedHost is fetchTimed with another Host header ("": addr).
func fetchTimedHost(t *testing.T, addr, host, path string, d time.Duration, header ...string) *timed {
	t.Helper()
	if host == "" {
		host = addr
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", header[i], header[i+1])
	}
	req.WriteString("\r\n")
	start := time.Now()
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(start.Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &timed{status: resp.Status}
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			tr.body = append(tr.body, buf[:n]...)
			tr.at = append(tr.at, time.Since(start))
			tr.cum = append(tr.cum, len(tr.body))
		}
		if err != nil {
			return tr
		}
	}
}

func (te *testEdge) addr() string { return strings.TrimPrefix(te.hs.URL, "http://") }

func (te *testEdge) counter(name, vhost string) float64 {
	te.t.Helper()
	var c prometheus.Metric
	switch name {
	case "bytes":
		c = te.srv.m.bytes.WithLabelValues(vhost)
	case "active":
		c = te.srv.m.active.WithLabelValues(vhost)
	case "throttled":
		c = te.srv.m.throttled.WithLabelValues(vhost)
	case "dropped":
		c = te.srv.m.dropped.WithLabelValues(vhost)
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		te.t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

const unthrottled = `
[edge.vhosts.default]
`

// A paced vhost whose figures are exact in bytes: 4,000 B/s after a 1 s
// boost.
const paced4k = `
[edge.vhosts.default]
throttling = true
unit = "bytes"
bandwidth = 4000
boost = 1
`

// TestHTTPSemantics checks Range, HEAD, conditionals and multipart ranges,
// unthrottled and throttled alike.
func TestHTTPSemantics(t *testing.T) {
	for _, tc := range []struct{ name, cfg string }{
		{"unthrottled", unthrottled},
		// Fast enough to finish at once: the rate is 1 MB/s after a 2 s boost.
		{"throttled", "[edge.vhosts.default]\nthrottling = true\nunit = \"mb\"\nbandwidth = 1\nboost = 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t, tc.cfg, nil)
			body := te.file("vod/a.mp4", "../testdata/media/mp4-faststart.mp4", 0)

			resp, got := te.get("/vod/a.mp4")
			if resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.Header.Get("Content-Type") != "video/mp4" {
				t.Fatalf("GET: %s, %d bytes, %q", resp.Status, len(got), resp.Header.Get("Content-Type"))
			}
			etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
			if etag == "" || lm == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("GET headers: %v", resp.Header)
			}

			resp, got = te.get("/vod/a.mp4", "Range", "bytes=100-199")
			if resp.StatusCode != 206 || !bytes.Equal(got, body[100:200]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(body)) {
				t.Errorf("Range 100-199: %s %q, %d bytes", resp.Status, resp.Header.Get("Content-Range"), len(got))
			}
			resp, got = te.get("/vod/a.mp4", "Range", "bytes=-50")
			if resp.StatusCode != 206 || !bytes.Equal(got, body[len(body)-50:]) {
				t.Errorf("Range -50: %s, %d bytes", resp.Status, len(got))
			}
			resp, _ = te.get("/vod/a.mp4", "Range", fmt.Sprintf("bytes=%d-", len(body)+10))
			if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(body)) {
				t.Errorf("Range past the end: %s %q", resp.Status, resp.Header.Get("Content-Range"))
			}
			resp, got = te.get("/vod/a.mp4", "Range", "bytes=0-9,20-29")
			if resp.StatusCode != 206 {
				t.Fatalf("multipart: %s", resp.Status)
			}
			_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			mr := multipart.NewReader(bytes.NewReader(got), params["boundary"])
			for _, want := range [][]byte{body[0:10], body[20:30]} {
				p, err := mr.NextPart()
				if err != nil {
					t.Fatalf("multipart: %v", err)
				}
				pb, _ := io.ReadAll(p)
				if !bytes.Equal(pb, want) {
					t.Errorf("multipart part %q, want %q", pb, want)
				}
			}

			resp, got = te.get("/vod/a.mp4", "If-None-Match", etag)
			if resp.StatusCode != 304 || len(got) != 0 {
				t.Errorf("If-None-Match: %s, %d bytes", resp.Status, len(got))
			}
			resp, _ = te.get("/vod/a.mp4", "If-Modified-Since", lm)
			if resp.StatusCode != 304 {
				t.Errorf("If-Modified-Since: %s", resp.Status)
			}
			resp, _ = te.get("/vod/a.mp4", "If-Match", `"other"`)
			if resp.StatusCode != 412 {
				t.Errorf("If-Match other: %s", resp.Status)
			}
			resp, got = te.get("/vod/a.mp4", "Range", "bytes=0-9", "If-Range", `"old"`)
			if resp.StatusCode != 200 || len(got) != len(body) {
				t.Errorf("If-Range with an old ETag: %s, %d bytes (want the whole file)", resp.Status, len(got))
			}

			req, _ := http.NewRequest(http.MethodHead, te.hs.URL+"/vod/a.mp4", nil)
			hr, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			hr.Body.Close()
			if hr.StatusCode != 200 || hr.ContentLength != int64(len(body)) {
				t.Errorf("HEAD: %s, Content-Length %d", hr.Status, hr.ContentLength)
			}

			if resp, _ := te.get("/vod/none.mp4"); resp.StatusCode != 404 {
				t.Errorf("unknown stream: %s", resp.Status)
			}
			req, _ = http.NewRequest(http.MethodPost, te.hs.URL+"/vod/a.mp4", nil)
			if pr, err := http.DefaultClient.Do(req); err != nil || pr.StatusCode != 405 {
				t.Errorf("POST: %v %v", pr, err)
			}
			// A handler lets its copy go just after the response's last byte.
			waitUntil(t, "no viewer counted after every response ended", func() bool { return te.st.viewerCount() == 0 })
		})
	}
}

// TestHeaderBoostPacing: the media header and the boost arrive at once,
// then the rest at the rate.
func TestHeaderBoostPacing(t *testing.T) {
	te := newTestEdge(t, paced4k, nil)
	body := te.file("vod/a.mp4", "../testdata/media/mp4-faststart.mp4", 0)
	info, err := media.ProbeFile("../testdata/media/mp4-faststart.mp4")
	if err != nil {
		t.Fatal(err)
	}
	hdr := int(info.HeaderBytes())
	const rate, boost = 4000, 4000
	tr := fetchTimed(t, te.addr(), "/vod/a.mp4", 2200*time.Millisecond)
	if !bytes.Equal(tr.body, body[:len(tr.body)]) {
		t.Fatal("wrong bytes")
	}
	// At once: header + boost. A grant is at least MinChunk (512 B) here.
	if got := tr.bytesBy(60 * time.Millisecond); got < hdr+boost || got > hdr+boost+512 {
		t.Errorf("first 60 ms: %d bytes, want header %d + boost %d", got, hdr, boost)
	}
	// Then the rate: 2 s after the boost, 8,000 B more, within a grant and
	// a tick or so.
	at := tr.bytesBy(2100 * time.Millisecond)
	paced := at - hdr - boost
	if paced < 2*rate-1200 || paced > 2*rate+1200 {
		t.Errorf("paced %d bytes in ~2 s after the boost, want ~%d", paced, 2*rate)
	}
	if te.counter("bytes", "default") < float64(len(tr.body)) {
		t.Errorf("bytes metric %v < %d received", te.counter("bytes", "default"), len(tr.body))
	}
}

// TestMoovAtEndRangeUnthrottled: a range over the moov of a moov-at-end
// file comes at once; a data range of the same size is paced.
func TestMoovAtEndRangeUnthrottled(t *testing.T) {
	te := newTestEdge(t, "[edge.vhosts.default]\nthrottling = true\nunit = \"bytes\"\nbandwidth = 2000\nboost = 0\n", nil)
	body := te.file("vod/m.mp4", "../testdata/media/mp4-moovend.mp4", 0)
	info, err := media.ProbeFile("../testdata/media/mp4-moovend.mp4")
	if err != nil || info.Moov == nil {
		t.Fatalf("fixture: %v %+v", err, info)
	}
	moov := *info.Moov
	tr := fetchTimed(t, te.addr(), "/vod/m.mp4", 2*time.Second, "Range", fmt.Sprintf("bytes=%d-%d", moov.Offset, moov.End()-1))
	if tr.status != "206 Partial Content" || !bytes.Equal(tr.body, body[moov.Offset:moov.End()]) {
		t.Fatalf("moov range: %s, %d bytes", tr.status, len(tr.body))
	}
	if got := tr.bytesBy(200 * time.Millisecond); got != int(moov.Length) {
		t.Errorf("moov range: %d of %d bytes in 200 ms, want all at once", got, moov.Length)
	}
	// The same length of mdat: paced at 2,000 B/s.
	data := fmt.Sprintf("bytes=%d-%d", 1000, 1000+moov.Length-1)
	tr = fetchTimed(t, te.addr(), "/vod/m.mp4", 600*time.Millisecond, "Range", data)
	if got := tr.bytesBy(500 * time.Millisecond); got > 2000 {
		t.Errorf("data range: %d bytes in 500 ms at 2,000 B/s", got)
	}
	// A range that spans data and the moov: the moov part is not paced,
	// so it takes the data's time only.
	span := fmt.Sprintf("bytes=%d-%d", moov.Offset-1000, moov.End()-1)
	tr = fetchTimed(t, te.addr(), "/vod/m.mp4", 3*time.Second, "Range", span)
	if len(tr.body) != int(moov.Length)+1000 {
		t.Fatalf("data+moov range: %d bytes", len(tr.body))
	}
	if last := tr.at[len(tr.at)-1]; last > 1500*time.Millisecond {
		t.Errorf("data+moov range took %v: 1,000 paced bytes at 2,000 B/s and an unthrottled moov", last)
	}
}

// TestVHostsRulesAndOverrides: the Host header picks the vhost, its rules
// and query parameters pick the figures, and the metrics count per vhost.
func TestVHostsRulesAndOverrides(t *testing.T) {
	rules := `# test rules
$HEADER[x-fast], no
$IP[203.0.113.9], no
/vod/*.mp3, x, 50, 0
`
	te := newTestEdge(t, `
[edge]
trusted_proxies = ["127.0.0.1"]
[edge.vhosts.default]
throttling = true
unit = "bytes"
bandwidth = 2000
boost = 0
rules_file = "rules.txt"
query_string = true
[edge.vhosts.open]
hosts = ["open.example.com", "*.open.example.com"]
`, map[string]string{"rules.txt": rules})
	body := te.file("vod/a.bin", "", 200<<10)
	te.file("vod/a.mp3", "../testdata/media/mp3-cbr128.mp3", 0)
	half := 500 * time.Millisecond

	for _, tc := range []struct {
		name     string
		host     string // "": the default vhost
		path     string
		header   []string
		min, max int // bytes by half a second
	}{
		{"settings: 2,000 B/s, no boost", "", "/vod/a.bin", nil, 0, 1100},
		{"no rule for a header", "", "/vod/a.bin", []string{"X-Fast", "1"}, len(body), len(body)},
		{"no rule for a forwarded IP", "", "/vod/a.bin", []string{"X-Forwarded-For", "203.0.113.9"}, len(body), len(body)},
		{"forwarded IP not matching", "", "/vod/a.bin", []string{"X-Forwarded-For", "203.0.113.10"}, 0, 1100},
		{"query override: bandwidth and boost", "", "/vod/a.bin?mybandwidth=20000&myboost=1&tag=x", nil, 20000 + 8000, 20000 + 13000},
		{"query override cannot beat no", "", "/vod/a.bin?mybandwidth=1&myboost=0", []string{"X-Fast", "1"}, len(body), len(body)},
		{"x: the MP3's own rate 128 kbps x 50 %", "", "/vod/a.mp3", nil, 45 + 3000, 45 + 6000},
		{"another vhost by Host: unthrottled", "v.open.example.com:80", "/vod/a.bin", nil, len(body), len(body)},
	} {
		tr := fetchTimedHost(t, te.addr(), tc.host, tc.path, 700*time.Millisecond, tc.header...)
		if got := tr.bytesBy(half); got < tc.min || got > tc.max {
			t.Errorf("%s: %d bytes by %v, want %d to %d", tc.name, got, half, tc.min, tc.max)
		}
	}
	if te.counter("bytes", "open") != float64(len(body)) {
		t.Errorf("open vhost sent %v bytes, want %d", te.counter("bytes", "open"), len(body))
	}
	if te.counter("active", "default") != 0 || te.counter("throttled", "default") != 0 {
		t.Errorf("sessions still counted: active %v throttled %v", te.counter("active", "default"), te.counter("throttled", "default"))
	}
}

// TestReloadRulesAndCaps: Apply swaps rules and changes caps in place;
// LoadConfig refuses a bad rules file with its line and column.
func TestReloadRulesAndCaps(t *testing.T) {
	te := newTestEdge(t, paced4k+"rules_file = \"rules.txt\"\n", map[string]string{"rules.txt": "$HEADER[x-a], no\n"})
	te.file("vod/a.bin", "", 100<<10)
	if tr := fetchTimed(t, te.addr(), "/vod/a.bin", 300*time.Millisecond, "X-A", "1"); len(tr.body) != 100<<10 {
		t.Fatalf("rule x-a: %d bytes", len(tr.body))
	}
	group := te.srv.state.Load().vhosts["default"].group

	// A bad file: the error names it, the line and the column.
	os.WriteFile(filepath.Join(te.dir, "rules.txt"), []byte("$HEADER[x-b], no\n$IP[1.2.3.4, 100\n"), 0o644)
	cfg, err := config.Load(filepath.Join(te.dir, "node.toml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfig(cfg)
	var se *shaping.SyntaxError
	if !errors.As(err, &se) || se.Line != 2 || se.Col == 0 || !strings.Contains(err.Error(), "rules.txt:2:") {
		t.Fatalf("bad rules file: %v", err)
	}

	// A good one, with a vhost cap: the group is the same, its cap new.
	os.WriteFile(filepath.Join(te.dir, "rules.txt"), []byte("$HEADER[x-b], no\n"), 0o644)
	os.WriteFile(filepath.Join(te.dir, "node.toml"), []byte(paced4k+"rules_file = \"rules.txt\"\ntraffic_cap = 8\n[edge]\nnode_traffic_cap = 100\n"), 0o644)
	cfg, err = config.Load(filepath.Join(te.dir, "node.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ec, err := LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	te.srv.Apply(ec)
	if g := te.srv.state.Load().vhosts["default"].group; g != group || g.Cap() != 1e6 {
		t.Errorf("after reload: group %p (was %p), cap %v B/s, want 8 Mbps = 1e6 B/s", g, group, g.Cap())
	}
	if te.srv.pacer.NodeCap() != 12.5e6 {
		t.Errorf("node cap %v", te.srv.pacer.NodeCap())
	}
	if tr := fetchTimed(t, te.addr(), "/vod/a.bin", 300*time.Millisecond, "X-B", "1"); len(tr.body) != 100<<10 {
		t.Errorf("new rule x-b: %d bytes", len(tr.body))
	}
	if tr := fetchTimed(t, te.addr(), "/vod/a.bin", 300*time.Millisecond, "X-A", "1"); len(tr.body) > 10000 {
		t.Errorf("old rule x-a still applies: %d bytes", len(tr.body))
	}
}

// smallReceiveBuffer makes a client socket that takes little before the
// server's writes block.
func smallReceiveBuffer(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
}

// TestVHostCapShared: sessions of a capped vhost share its cap, and a
// session cap holds even an unthrottled session.
func TestVHostCapShared(t *testing.T) {
	// 0.32 Mbps = 40,000 B/s for the vhost; sessions are not throttled.
	te := newTestEdge(t, "[edge.vhosts.default]\ntraffic_cap = 0.32\n[edge.vhosts.s]\nhosts = [\"s.test\"]\nsession_cap = 80\n", nil)
	te.file("vod/a.bin", "", 1<<20)
	const n = 4
	var wg sync.WaitGroup
	got := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := fetchTimed(t, te.addr(), "/vod/a.bin", 1300*time.Millisecond)
			got[i] = tr.bytesBy(1200*time.Millisecond) - tr.bytesBy(200*time.Millisecond)
		}()
	}
	wg.Wait()
	sum := 0
	for _, g := range got {
		sum += g
	}
	// One second of 40,000 B/s, shared: each about 10,000.
	if sum < 34000 || sum > 46000 {
		t.Errorf("vhost cap 40,000 B/s: %d bytes in a second over %d sessions (%v)", sum, n, got)
	}
	for _, g := range got {
		if g < 6000 || g > 14000 {
			t.Errorf("unfair share: %v", got)
			break
		}
	}
	// session_cap 80 kbps = 10,000 B/s, header and all.
	tr := fetchTimedHost(t, te.addr(), "s.test", "/vod/a.bin", time.Second)
	if b := tr.bytesBy(900 * time.Millisecond); b > 12000 || b < 5000 {
		t.Errorf("session cap 10,000 B/s: %d bytes by 0.9 s", b)
	}
}

// TestStalledViewerDropped: a viewer that stops reading is dropped after
// the write timeout and counted.
func TestStalledViewerDropped(t *testing.T) {
	te := newTestEdge(t, unthrottled, nil, func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	te.file("vod/big.bin", "", 64<<20)
	d := net.Dialer{Control: smallReceiveBuffer}
	c, err := d.Dial("tcp", te.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /vod/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(10 * time.Second)
	for te.counter("dropped", "default") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a viewer that reads nothing was not dropped within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection is closed: reading drains what was buffered, then ends
	// short of the 64 MiB.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n >= 64<<20 {
		t.Errorf("after the drop: read %d bytes, %v", n, err)
	}
	waitUntil(t, "the dropped session to end", func() bool { return te.counter("active", "default") == 0 })
}

// waitUntil waits up to 5 s for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5 s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPacedSessionsShareDescriptors: 200 paced viewers of one file do not
// hold 200 descriptors.
func TestPacedSessionsShareDescriptors(t *testing.T) {
	te := newTestEdge(t, paced4k, nil)
	te.file("vod/a.bin", "", 1<<20)
	before := openFiles(t)
	const n = 200
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", te.addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /vod/a.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	waitUntil(t, fmt.Sprintf("%d active sessions", n), func() bool { return te.counter("active", "default") == n })
	// Each viewer has two sockets in this process (client and server
	// side); files add only a few.
	if extra := openFiles(t) - before - 2*n; extra > 20 {
		t.Errorf("%d descriptors beyond the sockets for %d paced viewers", extra, n)
	}
	if te.counter("throttled", "default") != n {
		t.Errorf("throttled sessions %v, want %d", te.counter("throttled", "default"), n)
	}
}

func openFiles(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestLiveBurstIsTheBoost: a live viewer's burst is the boost of its vhost,
// rule or query, and the vhost's cap holds live viewers too.
func TestLiveBurstIsTheBoost(t *testing.T) {
	te := newTestEdge(t, `
[edge.vhosts.default]
throttling = true
unit = "kbps"
bandwidth = 128
boost = 3
rules_file = "rules.txt"
query_string = true
[edge.vhosts.plain]
hosts = ["plain.test"]
boost = 6
[edge.vhosts.capped]
hosts = ["capped.test"]
boost = 20
traffic_cap = 0.016
`, map[string]string{"rules.txt": "$HEADER[x-long], , , 8\n$HEADER[x-no], no\n"})
	te.st.liveStream(t, "live/radio.mp3", 30)
	for _, tc := range []struct {
		name   string
		host   string
		header []string
		query  string
		want   time.Duration
	}{
		{"the vhost's boost", "", nil, "", 3 * time.Second},
		{"a rule's boost", "", []string{"X-Long", "1"}, "", 8 * time.Second},
		{"the query's boost", "", nil, "?myboost=5", 5 * time.Second},
		{"no: the vhost's boost", "", []string{"X-No", "1"}, "", 3 * time.Second},
		{"throttling off: the vhost's boost", "plain.test", nil, "", 6 * time.Second},
		{"no longer than the relay keeps a viewer (its lag limit)", "", nil, "?myboost=30", maxLiveBurst},
	} {
		te.st.mu.Lock()
		te.st.bursts = nil
		te.st.mu.Unlock()
		tr := fetchTimedHost(t, te.addr(), tc.host, "/live/radio.mp3"+tc.query, 400*time.Millisecond, tc.header...)
		te.st.mu.Lock()
		got := te.st.bursts
		te.st.mu.Unlock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: burst %v, want %v", tc.name, got, tc.want)
		}
		// 1,000 bytes a second of stream, at once.
		if n := len(tr.body); n < int(tc.want.Seconds())*1000-100 || n > int(tc.want.Seconds())*1000+200 {
			t.Errorf("%s: %d bytes at once, want about %d", tc.name, n, int(tc.want.Seconds())*1000)
		}
	}
	// 0.016 Mbps = 2,000 B/s: a burst of 8,000 bytes takes 4 s.
	tr := fetchTimedHost(t, te.addr(), "capped.test", "/live/radio.mp3", 1100*time.Millisecond)
	if n := len(tr.body); n > 3500 || n < 1000 {
		t.Errorf("capped live viewer: %d bytes in 1.1 s, want about 2,000", n)
	}
	waitUntil(t, "the capped live session to end", func() bool { return te.counter("active", "capped") == 0 })
	if te.counter("bytes", "capped") < float64(len(tr.body)) {
		t.Errorf("live bytes not counted: %v", te.counter("bytes", "capped"))
	}
}

// TestSampleConfigs: the commented sample configs load, rules file and
// all.
func TestSampleConfigs(t *testing.T) {
	for _, path := range []string{"../testdata/configs/node.toml", "../testdata/configs/node.ini"} {
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		ec, err := LoadConfig(cfg)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ec.VHosts["www"].Rules.Len() == 0 {
			t.Errorf("%s: the www vhost has no rules", path)
		}
	}
}

// TestNodeCapAcrossVHosts: node_traffic_cap holds over every vhost, shared
// fairly between their sessions.
func TestNodeCapAcrossVHosts(t *testing.T) {
	// 0.32 Mbps = 40,000 B/s for the node; neither vhost has a cap.
	te := newTestEdge(t, "[edge]\nnode_traffic_cap = 0.32\n[edge.vhosts.default]\n[edge.vhosts.b]\nhosts = [\"b.test\"]\n", nil)
	te.file("vod/a.bin", "", 1<<20)
	var wg sync.WaitGroup
	got := make([]int, 2)
	for i, host := range []string{"", "b.test"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := fetchTimedHost(t, te.addr(), host, "/vod/a.bin", 1300*time.Millisecond)
			got[i] = tr.bytesBy(1200*time.Millisecond) - tr.bytesBy(200*time.Millisecond)
		}()
	}
	wg.Wait()
	if sum := got[0] + got[1]; sum < 34000 || sum > 46000 || got[0] < 14000 || got[1] < 14000 {
		t.Errorf("node cap 40,000 B/s over two vhosts: %v bytes in a second", got)
	}
}

// TestRulesFilePath: a relative rules_file is found beside the config, or
// else in the working directory; a missing one is an error naming it.
func TestRulesFilePath(t *testing.T) {
	confDir, cwd := t.TempDir(), t.TempDir()
	conf := filepath.Join(confDir, "node.toml")
	os.WriteFile(conf, []byte("[edge.vhosts.default]\nrules_file = \"rules.txt\"\n"), 0o644)
	os.WriteFile(filepath.Join(cwd, "rules.txt"), []byte("$HEADER[x-cwd], no\n"), 0o644)
	t.Chdir(cwd)
	load := func() (*Config, error) {
		cfg, err := config.Load(conf)
		if err != nil {
			t.Fatal(err)
		}
		return LoadConfig(cfg)
	}
	ec, err := load()
	if err != nil || ec.VHosts["default"].Rules.Len() != 1 {
		t.Fatalf("from the working directory: %v", err)
	}
	os.WriteFile(filepath.Join(confDir, "rules.txt"), []byte("$HEADER[x-a], no\n$HEADER[x-b], no\n"), 0o644)
	if ec, err = load(); err != nil || ec.VHosts["default"].Rules.Len() != 2 {
		t.Fatalf("beside the config: %v", err)
	}
	os.Remove(filepath.Join(confDir, "rules.txt"))
	os.Remove(filepath.Join(cwd, "rules.txt"))
	if _, err := load(); err == nil || !strings.Contains(err.Error(), filepath.Join(confDir, "rules.txt")) {
		t.Fatalf("missing rules file: %v", err)
	}
}
