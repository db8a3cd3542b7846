// Command edgebench runs castmesh's edge and nginx (limit_rate +
// limit_rate_after, sendfile on) on the same files in the same run, and
// prints how castmesh compares:
//
//	(a) unthrottled throughput of a 1 MiB file, with wrk;
//	(b) N paced sessions (default 10,000) at 16 KiB/s after a 64 KiB boost:
//	    server CPU and memory per session, failed sessions, each session's
//	    rate over 60 s after its boost, 1 s windows, time to first byte idle
//	    and under the load; the sessions come from pacedclient, a separate
//	    process that times every read by the kernel's receive timestamp;
//	(c) a vhost cap under 3x demand (castmesh only: nginx has no
//	    per-host cap): the mean against the cap, 1 s windows, Jain's
//	    fairness;
//	(d) header + boost: the bytes that arrive before pacing starts, against
//	    the media header + boost x rate.
//
// Run it from the repository root under the shared benchmark lock:
//
//	flock /tmp/castmesh-bench.lock go run ./bench/edgebench
//	flock /tmp/castmesh-bench.lock go run ./bench/edgebench -sessions 2000 -measure 20s -parts b
//
// It needs nginx and wrk (Debian packages nginx-light and wrk; .ci/run
// installs them) and, for an MP4 in (d), ffmpeg. Everything listens on
// 127.0.0.1.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/castmesh/castmesh/media"
)

type options struct {
	sessions   int
	ramp       float64
	measure    time.Duration
	parts      string
	budgets    string
	wrkTime    time.Duration
	wrkConns   int
	wrkRuns    int
	capN       int
	rounds     int
	capMeasure time.Duration
	keep       bool
	out        string
}

const (
	pacedRate  = 16 << 10 // limit_rate 16k; castmesh: bandwidth 16, unit kb
	pacedBoost = 64 << 10 // limit_rate_after 64k; castmesh: boost 4 s
	chunkSec   = 0.22     // shaping's default grant period at low load
)

func main() {
	var o options
	flag.IntVar(&o.sessions, "sessions", 10000, "paced sessions in (b)")
	flag.Float64Var(&o.ramp, "ramp", 1000, "sessions started per second in (b)")
	flag.DurationVar(&o.measure, "measure", 60*time.Second, "how long each session of (b) is measured after its boost")
	flag.StringVar(&o.parts, "parts", "a,b,c,d", "which parts to run")
	flag.StringVar(&o.budgets, "budgets", "default", "castmesh pacer grant budgets for (b), comma-separated: default, or a number of grants per second (CASTMESH_PACER_MAX_GRANTS_PER_SEC; -1: always 220 ms grants)")
	flag.DurationVar(&o.wrkTime, "wrk-time", 10*time.Second, "each wrk run in (a)")
	flag.IntVar(&o.wrkConns, "wrk-conns", 32, "wrk connections in (a)")
	flag.IntVar(&o.wrkRuns, "wrk-runs", 5, "wrk runs per server in (a), alternating")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of (b), nginx and castmesh alternating")
	flag.IntVar(&o.capN, "cap-sessions", 300, "sessions under the vhost cap in (c)")
	flag.DurationVar(&o.capMeasure, "cap-measure", 30*time.Second, "measurement of (c)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.out, "out", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "edgebench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o        options
	dir      string
	bin      string
	www      string
	nginx    *proc
	cm       *proc
	nginxURL string
	edgeURL  string
	apiURL   string
	mediaHdr int64
	starts   int // castmeshd starts, for a fresh data dir each
	results  map[string]any
}

type proc struct {
	cmd  *exec.Cmd
	name string
	done chan struct{}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "edgebench: "+format+"\n", args...) }

func run(o options) error {
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (Debian: nginx-light, wrk; .ci/run installs them)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "castmesh-bench-")
	if err != nil {
		return err
	}
	os.Chmod(dir, 0o755) // nginx's workers run as nobody
	b := &bench{o: o, dir: dir, bin: filepath.Join(dir, "bin"), www: filepath.Join(dir, "www"), results: map[string]any{}}
	defer func() {
		b.stopAll()
		if !o.keep {
			os.RemoveAll(dir)
		} else {
			logf("kept %s", dir)
		}
	}()
	if err := b.build(); err != nil {
		return err
	}
	if err := b.files(); err != nil {
		return err
	}
	if err := b.startNginx(); err != nil {
		return err
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(o.parts, ",") {
		parts[strings.TrimSpace(p)] = true
	}
	budgets := strings.Split(o.budgets, ",")
	if err := b.startCastmesh(strings.TrimSpace(budgets[0])); err != nil {
		return err
	}
	fmt.Printf("castmesh edge vs nginx %s, same files, same run (%s, %d cores)\n\n", nginxVersion(), time.Now().Format(time.RFC3339), numCPU())
	for _, part := range []struct {
		name string
		run  func() error
	}{{"a", b.partA}, {"b", func() error { return b.partB(budgets) }}, {"c", b.partC}, {"d", b.partD}} {
		if !parts[part.name] {
			continue
		}
		err := part.run()
		if o.out != "" { // what was measured so far
			j, _ := json.MarshalIndent(b.results, "", "  ")
			os.WriteFile(o.out, j, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) build() error {
	os.MkdirAll(b.bin, 0o755)
	for _, pkg := range []string{"cmd/castmeshd", "bench/pacedclient"} {
		cmd := exec.Command("go", "build", "-o", b.bin, "./"+pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s (run from the repository root): %w", pkg, err)
		}
	}
	return nil
}

// files writes the served files: a 1 MiB file for wrk, a 2 MiB one for
// paced sessions (16 KiB/s x 60 s + 64 KiB fits), and a media file with a
// header for (d).
func (b *bench) files() error {
	paced := filepath.Join(b.www, "paced")
	os.MkdirAll(paced, 0o755)
	rnd := func(n int) []byte {
		buf := make([]byte, n)
		x := uint64(0x9e3779b97f4a7c15)
		for i := range buf {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[i] = byte(x)
		}
		return buf
	}
	if err := os.WriteFile(filepath.Join(b.www, "1mib.bin"), rnd(1<<20), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(paced, "paced.bin"), rnd(2<<20), 0o644); err != nil {
		return err
	}
	mp4 := filepath.Join(paced, "media.mp4")
	if ff, err := exec.LookPath("ffmpeg"); err == nil {
		logf("making a 60 s fast-start MP4 with ffmpeg")
		cmd := exec.Command(ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=60",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=60",
			"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "120k", "-g", "50", "-c:a", "aac", "-b:a", "48k",
			"-movflags", "+faststart", mp4)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ffmpeg: %w", err)
		}
	} else {
		logf("no ffmpeg: (d) uses an MP3 with a 30 KB ID3 tag")
		mp4 = filepath.Join(paced, "media.mp3")
		if err := os.WriteFile(mp4, longMP3(), 0o644); err != nil {
			return err
		}
	}
	info, err := media.ProbeFile(mp4)
	if err != nil {
		return fmt.Errorf("probe %s: %w", mp4, err)
	}
	b.mediaHdr = info.HeaderBytes()
	return nil
}

// longMP3 is the 128 kbps fixture's frames repeated behind a 30 KB tag.
func longMP3() []byte {
	src, err := os.ReadFile("testdata/media/mp3-cbr128.mp3")
	if err != nil {
		return nil
	}
	info, err := media.Probe(bytes.NewReader(src), int64(len(src)))
	if err != nil {
		return nil
	}
	var out bytes.Buffer
	size := 30000 - 10
	out.WriteString("ID3\x03\x00\x00")
	out.Write([]byte{byte(size >> 21 & 0x7f), byte(size >> 14 & 0x7f), byte(size >> 7 & 0x7f), byte(size & 0x7f)})
	out.Write(make([]byte, size))
	for range 20 {
		out.Write(src[info.HeaderEnd():info.AudioEnd])
	}
	return out.Bytes()
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (b *bench) start(name string, env []string, argv ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, name: name, done: make(chan struct{})}
	go func() { cmd.Wait(); log.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (b *bench) stopAll() {
	b.cm.stop()
	b.nginx.stop()
}

func (b *bench) startNginx() error {
	port := freePort()
	conf := fmt.Sprintf(`# nginx for edgebench: 2 workers, sendfile, limit_rate for /paced/
worker_processes 2;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
daemon off;
events { worker_connections 12000; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  types { video/mp4 mp4; audio/mpeg mp3; }
  server {
    listen 127.0.0.1:%[2]d backlog=4096;
    root %[3]s;
    location /paced/ { limit_rate_after 64k; limit_rate 16k; }
    location /origin/ { alias %[3]s/; }  # castmesh pulls its copies here, unthrottled
  }
}
`, b.dir, port, b.www)
	path := filepath.Join(b.dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := b.start("nginx", nil, "nginx", "-p", b.dir, "-e", filepath.Join(b.dir, "nginx-error.log"), "-c", path)
	if err != nil {
		return err
	}
	b.nginx = p
	b.nginxURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitHTTP(b.nginxURL+"/1mib.bin", "", 10*time.Second)
}

func (b *bench) startCastmesh(budget string) error {
	b.cm.stop()
	b.starts++
	edge, api := freePort(), freePort()
	capMbps := float64(b.o.capN) * pacedRate * 8 / 3 / 1e6
	conf := fmt.Sprintf(`# castmeshd for edgebench
[node]
name = "bench"
data_dir = %[1]q
bind_addr = "127.0.0.1"
[cluster]
gossip_port = %[2]d
raft_port = %[3]d
[api]
ews_port = %[4]d
password = "bench"
[edge]
port = %[5]d
[edge.vhosts.default]
# unthrottled, as nginx's root location
[edge.vhosts.paced]
hosts = ["paced.bench"]
throttling = true
unit = "kb"
bandwidth = 16
ratio = 100
boost = 4
[edge.vhosts.capped]
hosts = ["capped.bench"]
throttling = true
unit = "kb"
bandwidth = 16
boost = 0
traffic_cap = %[6]g
`, filepath.Join(b.dir, fmt.Sprintf("cm-data-%d", b.starts)), freePort(), freePort(), api, edge, capMbps)
	path := filepath.Join(b.dir, "node.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	var env []string
	if budget != "" && budget != "default" {
		env = append(env, "CASTMESH_PACER_MAX_GRANTS_PER_SEC="+budget)
	}
	p, err := b.start("castmeshd-"+strings.ReplaceAll(budget, "-", "m"), env, filepath.Join(b.bin, "castmeshd"), "--config", path)
	if err != nil {
		return err
	}
	b.cm = p
	b.edgeURL = fmt.Sprintf("http://127.0.0.1:%d", edge)
	b.apiURL = fmt.Sprintf("http://127.0.0.1:%d/apiproxy", api)
	if err := waitHTTP(b.edgeURL+"/health", "", 30*time.Second); err != nil {
		return err
	}
	// The same files, pulled from nginx (the origin here) into the node.
	for _, name := range []string{"1mib.bin", "paced/paced.bin", b.mediaName()} {
		q := url.Values{"uri": {b.nginxURL + "/origin/" + name}, "localStreamName": {"bench/" + name}}
		req, _ := http.NewRequest(http.MethodGet, b.apiURL+"/pullStream?"+q.Encode(), nil)
		req.SetBasicAuth("admin", "bench")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte(`"SUCCESS"`)) {
			return fmt.Errorf("pullStream %s: %s", name, body)
		}
		if err := waitHTTP(b.edgeURL+"/bench/"+name, "", 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) mediaName() string {
	if _, err := os.Stat(filepath.Join(b.www, "paced", "media.mp4")); err == nil {
		return "paced/media.mp4"
	}
	return "paced/media.mp3"
}

func waitHTTP(u, host string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequest(http.MethodHead, u, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 after %v (%v)", u, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- (a) unthrottled throughput ---

var reqsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func wrk(o options, u string) (float64, error) {
	out, err := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(o.wrkConns), "-d"+strconv.Itoa(int(o.wrkTime.Seconds()))+"s", u).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m := reqsRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec: %s", out)
	}
	if bytes.Contains(out, []byte("Non-2xx")) || bytes.Contains(out, []byte("Socket errors")) {
		logf("wrk %s: %s", u, bytes.TrimSpace(out))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func (b *bench) partA() error {
	logf("(a) wrk -t2 -c%d, %v per run, nginx and castmesh alternating, %d runs each", b.o.wrkConns, b.o.wrkTime, b.o.wrkRuns)
	var ng, cm []float64
	for range b.o.wrkRuns {
		r, err := wrk(b.o, b.nginxURL+"/1mib.bin")
		if err != nil {
			return err
		}
		ng = append(ng, r)
		r, err = wrk(b.o, b.edgeURL+"/bench/1mib.bin")
		if err != nil {
			return err
		}
		cm = append(cm, r)
	}
	// Medians: the machine is shared, and one run can be hit by others.
	n, c := median(ng), median(cm)
	ratio := c / n
	fmt.Printf("(a) unthrottled 1 MiB file, wrk -t2 -c%d, %d x %v each, medians\n", b.o.wrkConns, b.o.wrkRuns, b.o.wrkTime)
	fmt.Printf("    nginx    %8.0f req/s  %5.2f GiB/s  (runs %v)\n", n, n/1024, round(ng))
	fmt.Printf("    castmesh %8.0f req/s  %5.2f GiB/s  (runs %v)\n", c, c/1024, round(cm))
	fmt.Printf("    castmesh / nginx = %.2f   target >= 0.90  %s\n\n", ratio, verdict(ratio >= 0.9))
	b.results["a"] = map[string]any{"nginx_rps": ng, "castmesh_rps": cm, "ratio": ratio}
	return nil
}

// --- (b) paced sessions ---

type stats struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P1   float64 `json:"p1"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type clientSummary struct {
	Sessions      int      `json:"sessions"`
	Failed        int      `json:"failed"`
	FailedWhy     []string `json:"failed_examples"`
	RampS         float64  `json:"ramp_s"`
	TTFBms        stats    `json:"ttfb_ms"`
	ProbeTTFBms   stats    `json:"probe_ttfb_ms"`
	ProbeFailed   int      `json:"probe_failed"`
	BurstBytes    stats    `json:"burst_bytes"`
	RateErrPct    stats    `json:"rate_err_pct"`
	WinAligned    stats    `json:"window_aligned_x"`
	WinSliding    stats    `json:"window_sliding_x"`
	AggMeanBps    float64  `json:"agg_mean_bps"`
	AggMaxWinBps  float64  `json:"agg_max_window_bps"`
	AggMaxSlideBp float64  `json:"agg_max_sliding_window_bps"`
	Jain          float64  `json:"jain"`
	AggSpanS      float64  `json:"agg_span_s"`
}

// client runs pacedclient with args and parses its summary.
func (b *bench) client(args ...string) (*clientSummary, error) {
	cmd := exec.Command(filepath.Join(b.bin, "pacedclient"), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pacedclient: %w", err)
	}
	var s clientSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return nil, fmt.Errorf("pacedclient printed %q: %w", out.String(), err)
	}
	return &s, nil
}

// target is one server under test: its paced URL, Host and processes.
type target struct {
	name string
	url  string
	host string
	pids func() []int
}

func (b *bench) nginxTarget() target {
	return target{name: "nginx", url: b.nginxURL + "/paced/paced.bin", pids: func() []int { return withChildren(b.nginx.cmd.Process.Pid) }}
}

func (b *bench) castmeshTarget(label string) target {
	return target{name: label, url: b.edgeURL + "/bench/paced/paced.bin", host: "paced.bench", pids: func() []int { return []int{b.cm.cmd.Process.Pid} }}
}

type pacedResult struct {
	Name        string         `json:"name"`
	CPUPct      float64        `json:"cpu_pct_of_a_core"`
	CPUWindowS  float64        `json:"cpu_window_s"`
	RSSIdleMB   float64        `json:"rss_idle_mib"`
	RSSLoadMB   float64        `json:"rss_loaded_mib"`
	KBPerSess   float64        `json:"kib_per_session"`
	IdleTTFB    stats          `json:"idle_ttfb_ms"`
	Client      *clientSummary `json:"client"`
	GrantBudget string         `json:"grant_budget,omitempty"`
}

func (b *bench) paced(t target) (*pacedResult, error) {
	o := b.o
	res := &pacedResult{Name: t.name}
	common := []string{"-url", t.url, "-boost-bytes", strconv.Itoa(pacedBoost), "-rate", strconv.Itoa(pacedRate)}
	if t.host != "" {
		common = append(common, "-host", t.host)
	}
	idle, err := b.client(append(common, "-n", "0", "-probes", "200", "-probe-every", "10ms")...)
	if err != nil {
		return nil, err
	}
	res.IdleTTFB = idle.ProbeTTFBms
	time.Sleep(time.Second)
	res.RSSIdleMB = rssMB(t.pids())

	rampS := float64(o.sessions) / o.ramp
	// CPU is measured while every session is past its boost and none has
	// finished: from the end of the ramp + 5 s, for the measure - 10 s.
	window := o.measure - 10*time.Second
	if window < 5*time.Second {
		window = o.measure / 2
	}
	type cpuSample struct {
		pct, rss float64
		err      error
	}
	cpuc := make(chan cpuSample, 1)
	go func() {
		time.Sleep(time.Duration((rampS + 5) * float64(time.Second)))
		pids := t.pids()
		c0 := cpuTicks(pids)
		t0 := time.Now()
		time.Sleep(window)
		c1 := cpuTicks(t.pids())
		el := time.Since(t0).Seconds()
		cpuc <- cpuSample{pct: (c1 - c0) / clockTicks / el * 100, rss: rssMB(t.pids())}
	}()
	logf("(b) %s: %d sessions at %d B/s after %d B, ramp %.0f/s, measured %v each", t.name, o.sessions, pacedRate, pacedBoost, o.ramp, o.measure)
	args := append(common, "-n", strconv.Itoa(o.sessions), "-ramp", fmt.Sprint(o.ramp), "-measure", o.measure.String(),
		"-probes", "100", "-probe-every", "150ms", "-probe-after", "5s")
	cs, err := b.client(args...)
	if err != nil {
		return nil, err
	}
	s := <-cpuc
	res.CPUPct, res.CPUWindowS, res.RSSLoadMB, res.Client = s.pct, window.Seconds(), s.rss, cs
	if o.sessions > 0 {
		res.KBPerSess = (res.RSSLoadMB - res.RSSIdleMB) * 1024 / float64(o.sessions)
	}
	return res, nil
}

func (b *bench) partB(budgets []string) error {
	o := b.o
	// Rounds alternate the servers, so that what else the machine does
	// falls on both; the ratios use the medians.
	var ngs []*pacedResult
	cms := make([][]*pacedResult, len(budgets))
	for round := range o.rounds {
		if round > 0 {
			// A fresh nginx: its workers keep the memory of the last round.
			b.nginx.stop()
			if err := b.startNginx(); err != nil {
				return err
			}
		}
		ng, err := b.paced(b.nginxTarget())
		if err != nil {
			return err
		}
		ngs = append(ngs, ng)
		for i, budget := range budgets {
			budget = strings.TrimSpace(budget)
			if len(budgets) > 1 || round > 0 {
				if err := b.startCastmesh(budget); err != nil {
					return err
				}
			}
			label := "castmesh"
			if budget != "default" {
				label = "castmesh (grant budget " + budget + "/s)"
			}
			r, err := b.paced(b.castmeshTarget(label))
			if err != nil {
				return err
			}
			r.GrantBudget = budget
			cms[i] = append(cms[i], r)
		}
	}
	fmt.Printf("(b) %d paced sessions at 16 KiB/s after a 64 KiB boost, each measured %v after its boost, %d round(s); client: pacedclient (own process, kernel receive timestamps)\n", o.sessions, o.measure, o.rounds)
	fmt.Printf("    %-30s %6s %8s %6s %16s %16s %18s %18s %8s %8s %8s\n", "server", "CPU%", "KiB/ses", "failed", "rate err p1..p99", "rate err min..max", "win(start) p50/99/max", "win(slide) p50/99/max", "TTFBidle", "TTFBload", "TTFBramp")
	row := func(r *pacedResult) {
		c := r.Client
		fmt.Printf("    %-30s %5.1f%% %8.1f %6d %+7.2f..%+6.2f%% %+7.2f..%+6.2f%% %5.2f/%4.2f/%4.2fx %5.2f/%4.2f/%4.2fx %6.2fms %6.2fms %6.2fms\n",
			r.Name, r.CPUPct, r.KBPerSess, c.Failed, c.RateErrPct.P1, c.RateErrPct.P99, c.RateErrPct.Min, c.RateErrPct.Max,
			c.WinAligned.P50, c.WinAligned.P99, c.WinAligned.Max, c.WinSliding.P50, c.WinSliding.P99, c.WinSliding.Max, r.IdleTTFB.P99, c.ProbeTTFBms.P99, c.TTFBms.P99)
	}
	for round := range o.rounds {
		row(ngs[round])
		for i := range budgets {
			row(cms[i][round])
		}
	}
	fmt.Printf("    (win(start): largest bytes in a 1 s window counted from the session's boost end, as a multiple of the rate; win(slide): in any 1 s window; TTFB p99 over probes idle, probes under the load, and the sessions' own during the ramp)\n")
	cpu := func(rs []*pacedResult) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, r.CPUPct)
		}
		return median(v)
	}
	ngCPU := cpu(ngs)
	for i := range budgets {
		ratio := cpu(cms[i]) / ngCPU
		for _, r := range cms[i] {
			c := r.Client
			load := math.Max(c.ProbeTTFBms.P99, c.TTFBms.P99)
			fmt.Printf("    %s: failed %d %s; rate p1..p99 within ±1%% %s; 1 s windows <= 1.25x: from the boost end %s, sliding %s; TTFB p99 idle %.2f ms < 10 %s, under load %.2f ms < 100 %s; memory %.1f KiB/session (nginx %.1f)\n",
				r.Name, c.Failed, verdict(c.Failed == 0),
				verdict(math.Abs(c.RateErrPct.P1) <= 1 && math.Abs(c.RateErrPct.P99) <= 1),
				verdict(c.WinAligned.Max <= 1.25), verdict(c.WinSliding.Max <= 1.25),
				r.IdleTTFB.P99, verdict(r.IdleTTFB.P99 < 10), load, verdict(load < 100), r.KBPerSess, ngs[0].KBPerSess)
			if c.Failed > 0 {
				fmt.Printf("      failures: %v\n", c.FailedWhy)
			}
		}
		fmt.Printf("    %s: median CPU / nginx's = %.1f%% / %.1f%% = %.2f (target <= 1.5, stretch 1.0) %s\n", cms[i][0].Name, cpu(cms[i]), ngCPU, ratio, verdict(ratio <= 1.5))
	}
	for _, ng := range ngs {
		if ng.Client.Failed > 0 {
			fmt.Printf("      nginx failures: %v\n", ng.Client.FailedWhy)
		}
	}
	fmt.Println()
	b.results["b"] = map[string]any{"nginx": ngs, "castmesh": cms}
	if len(budgets) > 1 {
		// Leave the default budget running for (c) and (d).
		return b.startCastmesh(strings.TrimSpace(budgets[0]))
	}
	return nil
}

// --- (c) vhost cap ---

func (b *bench) partC() error {
	n := b.o.capN
	capBps := float64(n) * pacedRate / 3
	logf("(c) %d sessions at 16 KiB/s under a vhost cap of %.0f B/s (3x demand), measured %v", n, capBps, b.o.capMeasure)
	cs, err := b.client("-url", b.edgeURL+"/bench/paced/paced.bin", "-host", "capped.bench", "-n", strconv.Itoa(n), "-ramp", strconv.Itoa(n),
		"-boost-bytes", "0", "-rate", fmt.Sprint(capBps/float64(n)), "-measure", b.o.capMeasure.String(), "-aggregate")
	if err != nil {
		return err
	}
	meanErr := (cs.AggMeanBps/capBps - 1) * 100
	win := cs.AggMaxWinBps / capBps
	slide := cs.AggMaxSlideBp / capBps
	fmt.Printf("(c) vhost cap %.3f Mbps (%.0f B/s) under 3x demand: %d sessions at 16 KiB/s, %v (castmesh only: nginx has no per-host cap)\n", capBps*8/1e6, capBps, n, b.o.capMeasure)
	fmt.Printf("    mean %.0f B/s = %+.2f%% of the cap (target ±2%%) %s; largest 1 s window %.3fx the cap (target <= 1.1) %s, sliding %.3fx; Jain %.4f (target >= 0.95) %s; failed %d; per-session rate err p1..p99 %+.2f..%+.2f%%\n\n",
		cs.AggMeanBps, meanErr, verdict(math.Abs(meanErr) <= 2), win, verdict(win <= 1.1), slide, cs.Jain, verdict(cs.Jain >= 0.95), cs.Failed, cs.RateErrPct.P1, cs.RateErrPct.P99)
	b.results["c"] = map[string]any{"cap_bps": capBps, "client": cs}
	return nil
}

// --- (d) header + boost ---

func (b *bench) partD() error {
	name := b.mediaName()
	want := b.mediaHdr + pacedBoost
	chunk := pacedRate * chunkSec
	logf("(d) %s: header %d B + boost %d B", name, b.mediaHdr, pacedBoost)
	cs, err := b.client("-url", b.edgeURL+"/bench/"+name, "-host", "paced.bench", "-n", "50", "-ramp", "20",
		"-boost-bytes", strconv.FormatInt(want, 10), "-rate", strconv.Itoa(pacedRate), "-measure", "10s", "-probes", "100", "-probe-every", "20ms")
	if err != nil {
		return err
	}
	off := []float64{cs.BurstBytes.Min - float64(want), cs.BurstBytes.Max - float64(want)}
	ok := math.Abs(off[0]) <= chunk && math.Abs(off[1]) <= chunk
	fmt.Printf("(d) header + boost before pacing, %s (header %d B, boost 4 s x 16 KiB/s = %d B): 50 sessions\n", name, b.mediaHdr, pacedBoost)
	fmt.Printf("    first burst %.0f..%.0f B, want %d: off by %+.0f..%+.0f B; one chunk is %.0f B %s; TTFB p99 %.2f ms (probes %.2f ms) %s; rate err over 10 s p1..p99 %+.2f..%+.2f%%\n\n",
		cs.BurstBytes.Min, cs.BurstBytes.Max, want, off[0], off[1], chunk, verdict(ok), cs.TTFBms.P99, cs.ProbeTTFBms.P99, verdict(cs.ProbeTTFBms.P99 < 10), cs.RateErrPct.P1, cs.RateErrPct.P99)
	b.results["d"] = map[string]any{"want": want, "client": cs}
	return nil
}

// --- /proc ---

var clockTicks = 100.0 // USER_HZ on Linux

func cpuTicks(pids []int) float64 {
	var sum float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the ")" of the command name: state is 3, utime 14, stime 15.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		sum += u + st
	}
	return sum
}

func rssMB(pids []int) float64 {
	var kb float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				kb += v
			}
		}
	}
	return kb / 1024
}

// withChildren is pid and its child processes (nginx's master and workers).
func withChildren(pid int) []int {
	out := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

func nginxVersion() string {
	out, _ := exec.Command("nginx", "-v").CombinedOutput()
	return strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(b), "processor\t:"))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round(v []float64) []float64 {
	out := slices.Clone(v)
	for i := range out {
		out[i] = math.Round(out[i])
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}
