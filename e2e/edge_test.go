package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/castmesh/castmesh/media"
)

// The edge's bandwidth model, end to end: a real castmeshd with vhosts and
// a throttling.txt, files pulled from a local origin, and a socket client
// that times every read of every response.

const edgeRules = `# throttling.txt for the e2e node (unit = "bytes")
$HEADER[x-vip], no
$IP[198.51.100.0/24], no
$HEADER[user-agent: *Mobile*], 10000, 100, 0
/music/*.mp3, x, 150, 2
/files/*, 8000x, 100, 1
`

// The vhosts: the default one paces at 20,000 B/s after a 1 s boost;
// "capped.test" is not throttled but shares 0.64 Mbps = 80,000 B/s.
const edgeVHosts = `trusted_proxies = ["127.0.0.1"]

[edge.vhosts.default]
throttling = true
unit = "bytes"
bandwidth = 20000
ratio = 100
boost = 1
rules_file = "throttling.txt"
query_string = true

[edge.vhosts.capped]
hosts = ["capped.test", "*.capped.test"]
traffic_cap = 0.64
`

// cbrMP3 builds a long constant-rate MP3 with a large ID3v2 tag (the
// header sent first): the frames of the 128 kbps fixture, repeated.
func cbrMP3(t *testing.T, tagBytes, repeat int) []byte {
	t.Helper()
	src, err := os.ReadFile("../testdata/media/mp3-cbr128.mp3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := media.Probe(bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	frames := src[info.HeaderEnd():info.AudioEnd]
	var b bytes.Buffer
	b.WriteString("ID3\x03\x00\x00")
	size := tagBytes - 10
	b.Write([]byte{byte(size >> 21 & 0x7f), byte(size >> 14 & 0x7f), byte(size >> 7 & 0x7f), byte(size & 0x7f)})
	b.Write(make([]byte, size)) // padding only
	for range repeat {
		b.Write(frames)
	}
	return b.Bytes()
}

// reads is what one response looked like to the socket client.
type reads struct {
	status string
	length int64
	at     []float64 // seconds from the request to each read
	cum    []int64   // body bytes after each read
}

func (r *reads) by(sec float64) int64 {
	var n int64
	for i, at := range r.at {
		if at > sec {
			break
		}
		n = r.cum[i]
	}
	return n
}

// rate is the least-squares slope of the bytes received over [from, to]
// seconds: the pacing rate, without the error of where a grant falls.
func (r *reads) rate(from, to float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for i, at := range r.at {
		if at < from || at > to {
			continue
		}
		x, y := at, float64(r.cum[i])
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	if n < 3 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// fetch sends raw (a whole request but its final CRLF, or a prefix such as
// a PROXY header and then the request) and reads the response for d.
func fetch(t *testing.T, addr, raw string, d time.Duration) *reads {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, raw+"\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(start.Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	r := &reads{status: resp.Status, length: resp.ContentLength}
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			r.at = append(r.at, time.Since(start).Seconds())
			r.cum = append(r.cum, total)
		}
		if err != nil {
			return r
		}
	}
}

func get(path, host string, header ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", header[i], header[i+1])
	}
	return b.String()
}

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

func TestEdgeThrottlingEndToEnd(t *testing.T) {
	requireTool(t, "curl")
	mp3 := cbrMP3(t, 30000, 20) // 30 KB header, ~100 s at 128 kbps
	info, err := media.Probe(bytes.NewReader(mp3), int64(len(mp3)))
	if err != nil {
		t.Fatal(err)
	}
	hdr := info.HeaderBytes()
	mediaRate := info.BitrateBPS / 8 // bytes/s, what "x" takes
	if hdr != 30000 || !within(mediaRate, 16000, 0.01) {
		t.Fatalf("fixture: header %d, rate %.0f B/s", hdr, mediaRate)
	}
	bin := bytes.Repeat([]byte("castmesh"), 200000) // 1.6 MB, not media

	origin := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := mp3
		if strings.HasSuffix(r.URL.Path, ".bin") {
			body = bin
		}
		http.ServeContent(w, r, "", time.Unix(1, 0), bytes.NewReader(body))
	}))

	root := t.TempDir()
	dir := filepath.Join(root, "n1")
	os.MkdirAll(dir, 0o755)
	rulesPath := filepath.Join(dir, "throttling.txt")
	if err := os.WriteFile(rulesPath, []byte(edgeRules), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: "n1", host: "127.0.0.1", dir: dir, gossip: freePort(t), api: freePort(t), edge: freePort(t), extraConfig: edgeVHosts}
	pc := launch(t, []*proc{p}, func() int { return freePort(t) })
	names := []string{"vod/a.mp3", "music/a.mp3", "files/a.bin", "vod/a.bin"}
	for _, name := range names {
		pullStream(t, p, origin.URL+"/"+name, name)
	}
	for _, name := range names {
		waitServed(t, pc, name, 10*time.Second)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", p.edge)
	host := addr

	// Each case: the request, the rate after the boost (0: not throttled,
	// everything at once) and the boost in bytes. Header is the media
	// header (the MP3's ID3 tag, 0 for the .bin).
	type paced struct {
		name   string
		raw    string
		header int64
		rate   float64
		boost  float64
	}
	cases := []paced{
		{"settings", get("/vod/a.mp3", host), hdr, 20000, 20000},
		{"x: the file's own rate x 150 %, boost 2 s", get("/music/a.mp3", host), hdr, mediaRate * 1.5, 2 * mediaRate * 1.5},
		{"NNNx: no rate in a non-media file, so 8000", get("/files/a.bin", host), 0, 8000, 8000},
		{"header condition", get("/vod/a.mp3", host, "User-Agent", "Player Mobile/1.0"), hdr, 10000, 0},
		{"query overrides every figure", get("/vod/a.mp3?mybandwidth=40000&myratio=50&myboost=0.5&keep=1", host), hdr, 20000, 10000},
		{"partial query: the rule fills the rest", get("/music/a.mp3?myratio=50", host), hdr, mediaRate * 0.5, 2 * mediaRate * 0.5},
		{"partial query: the settings fill the rest", get("/vod/a.bin?myboost=0", host), 0, 20000, 0},
		{"no", get("/vod/a.mp3", host, "X-VIP", "1"), 0, 0, 0},
		{"query cannot beat no", get("/vod/a.mp3?mybandwidth=100", host, "X-VIP", "1"), 0, 0, 0},
		{"IP condition via X-Forwarded-For from a trusted proxy", get("/vod/a.bin", host, "X-Forwarded-For", "203.0.113.1, 198.51.100.7"), 0, 0, 0},
		{"IP condition via the PROXY protocol", "PROXY TCP4 198.51.100.8 127.0.0.1 40000 80\r\n" + get("/vod/a.bin", host), 0, 0, 0},
		{"X-Forwarded-For hop left of an untrusted one is not believed", get("/vod/a.bin", host, "X-Forwarded-For", "198.51.100.7, 203.0.113.1"), 0, 20000, 20000},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := fetch(t, addr, tc.raw, 3500*time.Millisecond)
			if r.status != "200 OK" {
				t.Errorf("%s: %s", tc.name, r.status)
				return
			}
			first := float64(r.by(0.5))
			t.Logf("%s: %.0f bytes in 0.5 s (%d in 50 ms), %.0f B/s after", tc.name, first, r.by(0.05), r.rate(0.75, 3.4))
			if tc.rate == 0 {
				if first != float64(r.length) {
					t.Errorf("%s: %.0f of %d bytes in the first 0.5 s, want all (not throttled)", tc.name, first, r.length)
				}
				return
			}
			// Header and boost at once, then half a second of pacing
			// (grants are about a fifth of a second of the rate).
			atOnce := float64(tc.header) + tc.boost
			if first < atOnce || first > atOnce+tc.rate*0.5+tc.rate*0.3 {
				t.Errorf("%s: %.0f bytes in the first 0.5 s, want header %d + boost %.0f + about %.0f paced", tc.name, first, tc.header, tc.boost, tc.rate*0.5)
			}
			if got := float64(r.by(0.05)); got < atOnce {
				t.Errorf("%s: %.0f bytes in the first 50 ms, want header + boost = %.0f at once", tc.name, got, atOnce)
			}
			if got := r.rate(0.75, 3.4); !within(got, tc.rate, 0.05) {
				t.Errorf("%s: %.0f B/s after the boost, want %.0f", tc.name, got, tc.rate)
			}
		}()
	}

	// The capped vhost: three unthrottled sessions share 80,000 B/s.
	const capBps = 80000
	capped := make([]*reads, 3)
	for i := range capped {
		wg.Add(1)
		go func() {
			defer wg.Done()
			capped[i] = fetch(t, addr, get("/vod/a.bin", fmt.Sprintf("v%d.capped.test", i)), 3500*time.Millisecond)
		}()
	}
	wg.Wait()
	var sum float64
	for i, r := range capped {
		got := r.rate(0.5, 3.4)
		t.Logf("capped session %d: %.0f B/s", i, got)
		sum += got
		if !within(got, capBps/3, 0.15) {
			t.Errorf("capped session %d: %.0f B/s, want a fair third of %d", i, got, capBps)
		}
	}
	if !within(sum, capBps, 0.05) {
		t.Errorf("capped vhost: %.0f B/s over its sessions, want the cap %d", sum, capBps)
	}

	// Range under throttling: 206 with the right bytes, the header range
	// of the MP3 (its ID3 tag) at once.
	r := fetch(t, addr, get("/vod/a.mp3", host, "Range", "bytes=0-29999"), 2*time.Second)
	if r.status != "206 Partial Content" || r.by(0.1) != 30000 {
		t.Errorf("header range: %s, %d bytes in 0.1 s", r.status, r.by(0.1))
	}

	// Metrics on the API: per vhost.
	metrics := apiMetrics(t, p)
	for _, want := range []string{`castmesh_edge_bytes_sent_total{vhost="capped"}`, `castmesh_edge_bytes_sent_total{vhost="default"}`, `castmesh_edge_sessions_active{vhost="default"}`, `castmesh_edge_sessions_dropped_total{vhost="default"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGHUP with a bad rules file: logged with its line and column, the
	// old rules stay (X-VIP is still "no").
	os.WriteFile(rulesPath, []byte("$HEADER[x-new], no\n$IP[10.0.0.1, 5\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the reload error in the log", func() bool {
		return strings.Contains(p.logTail(), rulesPath+":2:")
	}, pc.logs)
	if r := fetch(t, addr, get("/vod/a.bin", host, "X-VIP", "1"), 2*time.Second); r.by(0.5) != r.length {
		t.Errorf("after a bad reload: the old rule no longer applies (%d of %d bytes)", r.by(0.5), r.length)
	}
	// A good one replaces them.
	os.WriteFile(rulesPath, []byte("$HEADER[x-new], no\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the new rule", func() bool {
		r := fetch(t, addr, get("/vod/a.bin", host, "X-New", "1"), 2*time.Second)
		return r.by(0.5) == r.length
	}, pc.logs)
	if r := fetch(t, addr, get("/vod/a.bin", host, "X-VIP", "1"), 700*time.Millisecond); r.by(0.5) == r.length {
		t.Error("after the reload the old rule still applies")
	}
}

// apiMetrics is p's /metrics on its API port.
func apiMetrics(t *testing.T, p *proc) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/metrics", p.host, p.api), nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics of %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics of %s: %s, %v", p.name, resp.Status, err)
	}
	return string(b)
}

// TestEdgeBadRulesFileStopsStart: a node does not start on a rules file
// it cannot parse, and says where the error is.
func TestEdgeBadRulesFileStopsStart(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "throttling.txt")
	os.WriteFile(rules, []byte("# ok\n$URL[/vod/*.mp4], 500kbps\n"), 0o644)
	cfg := filepath.Join(dir, "node.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[node]
name = "bad"
data_dir = %q
[cluster]
gossip_port = %d
raft_port = %d
[api]
ews_port = %d
password = "x"
[edge]
port = %d
[edge.vhosts.default]
rules_file = %q
`, filepath.Join(dir, "data"), freePort(t), freePort(t), freePort(t), freePort(t), rules)), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "castmeshd"), "--config", cfg)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("castmeshd with a bad rules file did not exit")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("castmeshd exited with %v: %s", err, out)
	}
	if want := rules + ":2:"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "unit") {
		t.Errorf("the error does not name %s and the problem: %s", want, out)
	}
}
