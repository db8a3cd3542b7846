// Command live measures castmesh's live streams and compares their fan-out
// with Icecast 2.4.4 in the same run:
//
//	(a) lag from ingest to viewers on another node: a 2-node cluster of
//	    real castmeshd processes, a 128 kbps MP3 source pushed to n1's
//	    ingest (PUT, as ffmpeg's icecast:// does), viewers on n2 (and, for
//	    reference, on n1); every frame carries the time it was sent
//	    (streams/livestamp), so each frame's lag is measured at the viewer;
//	(b) viewers per core: a single node relaying the same stream to N
//	    viewers (default 9,000) held by a separate client process (the
//	    open-files limit is per process): the server's CPU from
//	    /proc/PID/stat over the measurement window, its memory per viewer
//	    (RSS with the viewers minus RSS before them), and the fraction of
//	    viewers that stayed within 1 s of the live edge for the whole
//	    window; then the same for Icecast 2.4.4 (Debian package icecast2,
//	    installed when missing) fed by the same source.
//
// Run it from the repository root under the shared benchmark lock:
//
//	flock /tmp/castmesh-bench.lock go run ./bench/live
//	flock /tmp/castmesh-bench.lock go run ./bench/live -viewers 5000 -measure 20s -parts b
//
// Everything listens on 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/castmesh/castmesh/streams/livestamp"
)

const (
	apiPassword    = "bench-api"
	sourcePassword = "bench-source"
	mount          = "live/bench.mp3"
)

type options struct {
	parts     string
	viewers   int
	ramp      int
	measure   time.Duration
	lagViews  int
	noIcecast bool
	keep      bool
	coalesce  time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "viewers" {
		os.Exit(viewersMain(os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.parts, "parts", "ab", "which parts to run: a (lag), b (viewers per core)")
	flag.IntVar(&o.viewers, "viewers", 9000, "viewers in part b")
	flag.IntVar(&o.ramp, "ramp", 500, "viewers connecting per second in part b")
	flag.DurationVar(&o.measure, "measure", 30*time.Second, "measurement window, after every viewer joined")
	flag.IntVar(&o.lagViews, "lag-viewers", 50, "viewers per node in part a")
	flag.BoolVar(&o.noIcecast, "no-icecast", false, "skip Icecast in part b")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, configs)")
	flag.DurationVar(&o.coalesce, "coalesce", 100*time.Millisecond, "part b: a viewer that read less than 2 KiB waits this long before reading again, so that a server writing small pieces does not saturate the client (adds at most this to the measured lag)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "live bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	work, err := os.MkdirTemp("", "castmesh-livebench")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := filepath.Join(work, "castmeshd")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/castmeshd").CombinedOutput(); err != nil {
		return fmt.Errorf("build castmeshd (run from the repository root): %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("castmesh live benchmark, %d CPUs, %s\n", runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	if strings.Contains(o.parts, "a") {
		if err := partA(o, work, bin, self); err != nil {
			return fmt.Errorf("part a: %w", err)
		}
	}
	if strings.Contains(o.parts, "b") {
		if err := partB(o, work, bin, self); err != nil {
			return fmt.Errorf("part b: %w", err)
		}
	}
	return nil
}

// ---- the nodes

type node struct {
	name                    string
	dir                     string
	gossip, raft, api, edge int
	ingest                  int
	cmd                     *exec.Cmd
	exited                  chan struct{}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNodes starts n castmeshd processes forming one cluster and waits
// until each is healthy.
func startNodes(work, bin string, n int) ([]*node, error) {
	var nodes []*node
	for i := range n {
		nd := &node{name: "n" + strconv.Itoa(i+1), gossip: freePort(), raft: freePort(), api: freePort(), edge: freePort(), ingest: freePort()}
		nd.dir = filepath.Join(work, nd.name)
		os.MkdirAll(nd.dir, 0o755)
		join := ""
		if i > 0 {
			join = fmt.Sprintf(`"127.0.0.1:%d"`, nodes[0].gossip)
		}
		cfg := fmt.Sprintf(`[node]
name = %q
data_dir = %q
bind_addr = "127.0.0.1"
[cluster]
gossip_port = %d
raft_port = %d
join = [%s]
bootstrap_expect = %d
[api]
ews_port = %d
password = %q
[ingest]
port = %d
source_password = %q
[edge]
port = %d
`, nd.name, filepath.Join(nd.dir, "data"), nd.gossip, nd.raft, join, n, nd.api, apiPassword, nd.ingest, sourcePassword, nd.edge)
		conf := filepath.Join(nd.dir, "node.toml")
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		log, err := os.Create(filepath.Join(nd.dir, "castmeshd.log"))
		if err != nil {
			return nil, err
		}
		nd.cmd = exec.Command(bin, "--config", conf)
		nd.cmd.Stdout, nd.cmd.Stderr = log, log
		nd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := nd.cmd.Start(); err != nil {
			return nil, err
		}
		nd.exited = make(chan struct{})
		go func() { nd.cmd.Wait(); log.Close(); close(nd.exited) }()
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/health", nd.edge), 30*time.Second); err != nil {
			stopNodes(nodes)
			return nil, fmt.Errorf("%s: %w (log in %s)", nd.name, err, nd.dir)
		}
	}
	return nodes, nil
}

func stopNodes(nodes []*node) {
	for _, nd := range nodes {
		nd.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, nd := range nodes {
		select {
		case <-nd.exited:
		case <-time.After(10 * time.Second):
			nd.cmd.Process.Kill()
			<-nd.exited
		}
	}
}

func waitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v", url, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- the source

// source pushes stamped 128 kbps MP3 frames to a mount the way ffmpeg's
// icecast:// client does (PUT, Expect: 100-continue, then the bytes
// unframed), each frame when it is due.
type source struct {
	cancel context.CancelFunc
	done   chan error
}

func pushSource(addr, path, user, pass string) (*source, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: audio/mpeg\r\nIce-Name: bench\r\nIce-Public: 0\r\nExpect: 100-continue\r\n\r\n", path, addr, auth)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !(strings.Contains(status, " 100 ") || strings.Contains(status, " 200 ")) {
		conn.Close()
		return nil, fmt.Errorf("source refused at %s: %q %v", addr, status, err)
	}
	conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	s := &source{cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer conn.Close()
		src := livestamp.NewSource(0)
		start := time.Now()
		var sent uint64
		var buf []byte
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				s.done <- nil
				return
			case <-tick.C:
			}
			buf = buf[:0]
			for due := uint64(time.Since(start)/livestamp.FrameDuration) + 1; sent < due; sent++ {
				buf = src.Frame(buf, time.Now())
			}
			if len(buf) == 0 {
				continue
			}
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				s.done <- err
				return
			}
		}
	}()
	return s, nil
}

func (s *source) stop() error {
	s.cancel()
	return <-s.done
}

// ---- part a

func partA(o options, work, bin, self string) error {
	fmt.Printf("\n(a) lag from ingest to viewers, 2-node cluster, 128 kbps MP3 pushed to n1, %d viewers on each node\n", o.lagViews)
	nodes, err := startNodes(filepath.Join(work, "a"), bin, 2)
	if err != nil {
		return err
	}
	defer stopNodes(nodes)
	src, err := pushSource(fmt.Sprintf("127.0.0.1:%d", nodes[0].ingest), mount, "source", sourcePassword)
	if err != nil {
		return err
	}
	defer src.stop()
	for _, nd := range nodes {
		if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/%s", nd.edge, mount)+"?probe", 15*time.Second); err != nil {
			return err
		}
	}
	measure := min(o.measure, 20*time.Second)
	results := make([]viewersResult, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = runViewers(self, fmt.Sprintf("127.0.0.1:%d", nd.edge), "/"+mount, o.lagViews, 200, 3*time.Second, measure)
		}()
	}
	wg.Wait()
	for i, r := range results {
		role := "origin (ingest node)"
		if i > 0 {
			role = "another node"
		}
		if r.Error != "" {
			return fmt.Errorf("viewers on %s: %s", nodes[i].name, r.Error)
		}
		fmt.Printf("  viewers on %s, %-21s frame lag p50 %4.0f ms  p99 %4.0f ms  max %4.0f ms  (%d frames, %d viewers connected, %d failed, duplicates %d)\n",
			nodes[i].name, role+":", r.LagP50MS, r.LagP99MS, r.LagMaxMS, r.Frames, r.Connected, r.Failed, r.Duplicates)
	}
	r := results[1]
	verdict := "met"
	if r.LagP99MS >= 500 {
		verdict = "NOT met"
	}
	fmt.Printf("  target p99 < 500 ms on another node: %s (p99 %.0f ms)\n", verdict, r.LagP99MS)
	return nil
}

// ---- part b

type serverRun struct {
	name      string
	pid       int
	edge      string // host:port viewers connect to
	path      string
	stop      func()
	sourceTo  string // host:port of the source endpoint
	srcPath   string
	srcUser   string
	srcPass   string
	procNames []string // extra: for display
}

func partB(o options, work, bin, self string) error {
	fmt.Printf("\n(b) viewers per core: one node, 128 kbps MP3, %d viewers in a separate process joining at %d/s, %v measured (client coalesces reads under 2 KiB by %v)\n", o.viewers, o.ramp, o.measure, o.coalesce)
	var runs []serverRun
	nodes, err := startNodes(filepath.Join(work, "b"), bin, 1)
	if err != nil {
		return err
	}
	runs = append(runs, serverRun{name: "castmesh", pid: nodes[0].cmd.Process.Pid, edge: fmt.Sprintf("127.0.0.1:%d", nodes[0].edge), path: "/" + mount,
		stop: func() { stopNodes(nodes) }, sourceTo: fmt.Sprintf("127.0.0.1:%d", nodes[0].ingest), srcPath: mount, srcUser: "source", srcPass: sourcePassword})
	if !o.noIcecast {
		ic, err := startIcecast(o.viewers, o.keep)
		if err != nil {
			fmt.Println("  icecast:", err, "(skipped)")
		} else {
			runs = append(runs, *ic)
		}
	}
	type row struct {
		name                  string
		res                   viewersResult
		cpu                   float64 // cores
		rssIdle, rssLoaded    int64
		wall                  time.Duration
		sysCPU, clientCPU     float64
		serverThreadsOrGorout string
	}
	var rows []row
	for _, sr := range runs {
		src, err := pushSource(sr.sourceTo, sr.srcPath, sr.srcUser, sr.srcPass)
		if err != nil {
			sr.stop()
			return fmt.Errorf("%s: %w", sr.name, err)
		}
		if err := waitHTTP("http://"+sr.edge+sr.path, 15*time.Second); err != nil {
			src.stop()
			sr.stop()
			return fmt.Errorf("%s: %w", sr.name, err)
		}
		time.Sleep(2 * time.Second)
		rssIdle := rss(sr.pid)
		var cpu0, cpu1 procCPU
		var sys0, sys1 sysCPU
		var rssLoaded int64
		// The client process reports when every viewer has joined and when
		// the window ends; the server is measured between the two.
		res, err := runViewersWithHooks(self, sr.edge, sr.path, o.viewers, o.ramp, 5*time.Second, o.measure, o.coalesce,
			func() { cpu0, sys0 = readProcCPU(sr.pid), readSysCPU() },
			func() { cpu1, sys1 = readProcCPU(sr.pid), readSysCPU(); rssLoaded = rss(sr.pid) })
		src.stop()
		sr.stop()
		if err != nil {
			return fmt.Errorf("%s viewers: %w", sr.name, err)
		}
		wall := cpu1.at.Sub(cpu0.at)
		r := row{name: sr.name, res: res, wall: wall, rssIdle: rssIdle, rssLoaded: rssLoaded,
			cpu:    (cpu1.seconds - cpu0.seconds) / wall.Seconds(),
			sysCPU: sys1.busy(sys0) / wall.Seconds()}
		rows = append(rows, r)
	}
	fmt.Println()
	fmt.Println("  server    viewers  CPU (cores)  viewers/core  RSS idle→loaded   per viewer  within 1 s  failed  dropped  lag p50/p99/max (ms)   TTFB p50/p99 (ms)  machine busy (cores)")
	for _, r := range rows {
		perCore := float64(r.res.Connected) / math.Max(r.cpu, 1e-9)
		per := float64(r.rssLoaded-r.rssIdle) / float64(max(r.res.Connected, 1))
		fmt.Printf("  %-9s %7d  %11.3f  %12.0f  %5.1f→%6.1f MB  %7.1f KB  %9.2f%%  %6d  %7d  %5.0f/%5.0f/%5.0f     %6.0f/%6.0f       %.2f\n",
			r.name, r.res.Connected, r.cpu, perCore, float64(r.rssIdle)/1e6, float64(r.rssLoaded)/1e6, per/1024,
			100*float64(r.res.Within1s)/float64(max(r.res.Viewers, 1)), r.res.Failed, r.res.Disconnected,
			r.res.LagP50MS, r.res.LagP99MS, r.res.LagMaxMS, r.res.TTFBP50MS, r.res.TTFBP99MS, r.sysCPU)
	}
	if len(rows) == 2 && rows[1].cpu > 0 {
		a, b := rows[0], rows[1]
		fmt.Printf("\n  castmesh / icecast: CPU per viewer %.2fx, memory per viewer %.2fx\n",
			(a.cpu/float64(a.res.Connected))/(b.cpu/float64(b.res.Connected)),
			(float64(a.rssLoaded-a.rssIdle)/float64(a.res.Connected))/(float64(b.rssLoaded-b.rssIdle)/float64(b.res.Connected)))
	}
	if len(rows) > 0 {
		r := rows[0]
		perCore := float64(r.res.Connected) / math.Max(r.cpu, 1e-9)
		verdict := "met"
		if perCore < 10000 || r.res.Within1s < r.res.Viewers {
			verdict = "NOT met"
		}
		fmt.Printf("  target 10,000 viewers per core, every viewer within 1 s of the live edge: %s (%.0f per core, %d of %d within 1 s)\n",
			verdict, perCore, r.res.Within1s, r.res.Viewers)
	}
	return nil
}

// startIcecast runs Icecast 2.4 (installing the Debian package when
// missing) on a free port, configured like castmesh: a burst on connect,
// room for every viewer.
func startIcecast(viewers int, keep bool) (*serverRun, error) {
	if _, err := exec.LookPath("icecast2"); err != nil {
		if os.Geteuid() != 0 {
			return nil, errors.New("icecast2 is not installed and this is not root")
		}
		fmt.Println("  installing icecast2 (Debian package)")
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "icecast2")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get install icecast2: %v: %s", err, out)
		}
	}
	// Its own directory: icecast drops root for the icecast2 user, which
	// must reach its logs.
	dir, err := os.MkdirTemp("", "castmesh-livebench-icecast")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o777)
	if keep {
		fmt.Println("  icecast directory:", dir)
	}
	port := freePort()
	owner := ""
	if os.Geteuid() == 0 {
		owner = "<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
	}
	cfg := fmt.Sprintf(`<icecast>
  <location>bench</location><admin>bench@localhost</admin>
  <limits>
    <clients>%d</clients><sources>2</sources>
    <queue-size>524288</queue-size><client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout><source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect><burst-size>65536</burst-size>
  </limits>
  <authentication>
    <source-password>%s</source-password><relay-password>%s</relay-password>
    <admin-user>admin</admin-user><admin-password>%s</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>%d</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir><logdir>%s</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>%s</security>
</icecast>
`, viewers+100, sourcePassword, sourcePassword, apiPassword, port, dir, owner)
	conf := filepath.Join(dir, "icecast.xml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	out, _ := os.Create(filepath.Join(dir, "stdout.log"))
	cmd := exec.Command("icecast2", "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if !keep {
			os.RemoveAll(dir)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitHTTP("http://"+addr+"/status-json.xsl", 15*time.Second); err != nil {
		stop()
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return nil, fmt.Errorf("icecast did not start: %v\n%s", err, b)
	}
	v, _ := exec.Command("icecast2", "-v").CombinedOutput()
	fmt.Printf("  peer: %s\n", strings.TrimSpace(string(v)))
	return &serverRun{name: "icecast", pid: cmd.Process.Pid, edge: addr, path: "/bench.mp3", stop: stop,
		sourceTo: addr, srcPath: "bench.mp3", srcUser: "source", srcPass: sourcePassword}, nil
}

// ---- /proc

type procCPU struct {
	seconds float64
	at      time.Time
}

const clockTicks = 100 // USER_HZ on Linux

func readProcCPU(pid int) procCPU {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	now := time.Now()
	if err != nil {
		return procCPU{at: now}
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return procCPU{seconds: (utime + stime) / clockTicks, at: now}
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// sysCPU is the whole machine's busy time (all but idle and iowait), to
// see the softirq and client work a process's own figure leaves out.
type sysCPU struct{ busyTicks, totalTicks float64 }

func readSysCPU() sysCPU {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	var s sysCPU
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		s.totalTicks += v
		if i != 3 && i != 4 {
			s.busyTicks += v
		}
	}
	return s
}

func (s sysCPU) busy(before sysCPU) float64 { return (s.busyTicks - before.busyTicks) / clockTicks }

// ---- the viewers (a separate process)

// viewersResult is what the client process reports, as JSON on stdout.
type viewersResult struct {
	Viewers      int     `json:"viewers"`
	Connected    int     `json:"connected"`
	Failed       int     `json:"failed"`       // could not connect or no 200
	Disconnected int     `json:"disconnected"` // the server closed during the window
	Within1s     int     `json:"within_1s"`    // never more than 1 s behind the live edge in the window
	Frames       int64   `json:"frames"`
	Duplicates   int64   `json:"duplicates"` // frames received twice or out of order
	LagP50MS     float64 `json:"lag_p50_ms"`
	LagP99MS     float64 `json:"lag_p99_ms"`
	LagMaxMS     float64 `json:"lag_max_ms"`
	TTFBP50MS    float64 `json:"ttfb_p50_ms"`
	TTFBP99MS    float64 `json:"ttfb_p99_ms"`
	Error        string  `json:"error,omitempty"`
}

func runViewers(self, addr, path string, n, ramp int, warm, measure time.Duration) (viewersResult, error) {
	return runViewersWithHooks(self, addr, path, n, ramp, warm, measure, 0, nil, nil)
}

// runViewersWithHooks runs the client process; onStart is called when the
// window opens (every viewer joined and warmed up), onEnd when it closes.
func runViewersWithHooks(self, addr, path string, n, ramp int, warm, measure, coalesce time.Duration, onStart, onEnd func()) (viewersResult, error) {
	cmd := exec.Command(self, "viewers", "-addr", addr, "-path", path, "-n", strconv.Itoa(n), "-ramp", strconv.Itoa(ramp),
		"-warm", warm.String(), "-measure", measure.String(), "-coalesce", coalesce.String())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return viewersResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return viewersResult{}, err
	}
	var res viewersResult
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "WINDOW START":
			if onStart != nil {
				onStart()
			}
		case line == "WINDOW END":
			if onEnd != nil {
				onEnd()
			}
		case strings.HasPrefix(line, "{"):
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				return res, err
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("client process: %w", err)
	}
	return res, nil
}

type viewer struct {
	mu        sync.Mutex
	latest    time.Time // Sent of the newest frame received
	lastCount uint64
	worst     time.Duration // in the window: most behind the live edge
	ok        bool
	closed    bool
	ttfb      time.Duration
}

func viewersMain(args []string) int {
	fs := flag.NewFlagSet("viewers", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/", "path")
	n := fs.Int("n", 100, "viewers")
	ramp := fs.Int("ramp", 500, "viewers joining per second")
	warm := fs.Duration("warm", 5*time.Second, "after the last viewer joined, before the window")
	measure := fs.Duration("measure", 30*time.Second, "window")
	coalesce := fs.Duration("coalesce", 0, "after a read of less than 2 KiB, wait this long before the next: spares the client's CPU when a server writes small pieces; adds at most this to the measured lag")
	fs.Parse(args)

	var (
		viewers  = make([]*viewer, *n)
		inWindow atomic.Bool
		frames   atomic.Int64
		dups     atomic.Int64
		lagMu    sync.Mutex
		lags     []float64 // ms, frames received in the window
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for i := range viewers {
		viewers[i] = &viewer{}
	}
	watch := func(v *viewer) {
		defer wg.Done()
		start := time.Now()
		conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		go func() { <-stop; conn.Close() }()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: castmesh-livebench\r\n\r\n", *path, *addr)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		br := bufio.NewReaderSize(conn, 4096)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			return
		}
		conn.SetReadDeadline(time.Time{})
		body := resp.Body
		var rd livestamp.Reader
		buf := make([]byte, 8192)
		var local []float64
		first := true
		for {
			k, err := body.Read(buf)
			now := time.Now()
			if k > 0 && first {
				first = false
				v.mu.Lock()
				v.ok, v.ttfb = true, now.Sub(start)
				v.mu.Unlock()
			}
			win := inWindow.Load()
			rd.Write(buf[:k], func(s livestamp.Stamp) {
				frames.Add(1)
				v.mu.Lock()
				if s.Count <= v.lastCount && !v.latest.IsZero() {
					dups.Add(1)
				}
				v.lastCount = s.Count
				if s.Sent.After(v.latest) {
					v.latest = s.Sent
				}
				v.mu.Unlock()
				if win {
					local = append(local, float64(now.Sub(s.Sent))/1e6)
				}
			})
			if len(local) > 256 {
				lagMu.Lock()
				lags = append(lags, local...)
				lagMu.Unlock()
				local = local[:0]
			}
			if err == nil && k < 2048 && *coalesce > 0 {
				time.Sleep(*coalesce)
			}
			if err != nil {
				lagMu.Lock()
				lags = append(lags, local...)
				lagMu.Unlock()
				v.mu.Lock()
				v.closed = true
				v.mu.Unlock()
				return
			}
		}
	}
	interval := time.Second / time.Duration(max(*ramp, 1))
	for _, v := range viewers {
		wg.Add(1)
		go watch(v)
		time.Sleep(interval)
	}
	time.Sleep(*warm)
	// The window: every 100 ms, how far behind the live edge each viewer's
	// newest frame is; a viewer's worst over the window decides.
	inWindow.Store(true)
	fmt.Println("WINDOW START")
	end := time.Now().Add(*measure)
	var disconnected atomic.Int64
	for tick := time.NewTicker(100 * time.Millisecond); time.Now().Before(end); <-tick.C {
		now := time.Now()
		for _, v := range viewers {
			v.mu.Lock()
			if v.ok && !v.latest.IsZero() {
				// The newest frame received was sent at v.latest, so the
				// viewer is at least now-v.latest behind the edge.
				if d := now.Sub(v.latest); d > v.worst {
					v.worst = d
				}
			}
			v.mu.Unlock()
		}
	}
	inWindow.Store(false)
	fmt.Println("WINDOW END")
	res := viewersResult{Viewers: *n}
	var ttfb []float64
	for _, v := range viewers {
		v.mu.Lock()
		switch {
		case !v.ok:
			res.Failed++
		default:
			res.Connected++
			ttfb = append(ttfb, float64(v.ttfb)/1e6)
			if v.closed {
				disconnected.Add(1)
			} else if v.worst <= time.Second {
				res.Within1s++
			}
		}
		v.mu.Unlock()
	}
	close(stop)
	wg.Wait()
	res.Disconnected = int(disconnected.Load())
	res.Frames, res.Duplicates = frames.Load(), dups.Load()
	res.LagP50MS, res.LagP99MS, res.LagMaxMS = pct(lags, 50), pct(lags, 99), pct(lags, 100)
	res.TTFBP50MS, res.TTFBP99MS = pct(ttfb, 50), pct(ttfb, 99)
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[min(max(i, 0), len(v)-1)]
}
