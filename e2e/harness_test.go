package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const password = "e2e-s3cret"

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "castmesh-e2e-bin")
	if err != nil {
		panic(err)
	}
	for _, cmd := range []string{"castmeshd", "listconfig"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "github.com/castmesh/castmesh/cmd/"+cmd).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", cmd, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool skips when a client program is missing, unless the run must
// be complete (CI as root sets CASTMESH_REQUIRE_ALL_TESTS).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CASTMESH_REQUIRE_ALL_TESTS") != "" {
			t.Fatalf("%s is not installed and CASTMESH_REQUIRE_ALL_TESTS is set (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed; run .ci/run to install the test tools", name)
	}
	return p
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port free now and not handed out before in this run:
// the kernel may give a just-closed port again, and two nodes of one
// cluster must not be told to bind the same one.
func freePort(t testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsUsed[p] {
			portsUsed[p] = true
			return p
		}
	}
}

// proc is one castmeshd process with its own config file and data dir.
type proc struct {
	t       testing.TB
	name    string
	host    string // address it binds; 127.0.0.1 unless in a network namespace
	netns   string // network namespace it runs in, "" for the test's own
	dir     string
	config  string
	gossip  int
	api     int
	edge    int
	ingest  int
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	// extraConfig is appended to the written node.toml, after [edge]'s
	// port: more [edge] keys, then tables such as [edge.vhosts.NAME].
	extraConfig string
}

func (p *proc) apiURL() string  { return fmt.Sprintf("http://%s:%d/apiproxy", p.host, p.api) }
func (p *proc) edgeURL() string { return fmt.Sprintf("http://%s:%d", p.host, p.edge) }

// sourceURL is where a source client pushes mount (with the source password).
func (p *proc) sourceURL(scheme, mount string) string {
	return fmt.Sprintf("%s://source:%s@%s:%d/%s", scheme, sourcePassword, p.host, p.ingest, mount)
}

const sourcePassword = "e2e-source"

type procCluster struct {
	t     testing.TB
	procs []*proc
}

// startCluster starts n castmeshd processes on 127.0.0.1 that form one cluster.
func startCluster(t testing.TB, n int) *procCluster {
	t.Helper()
	root := t.TempDir()
	var procs []*proc
	for i := range n {
		procs = append(procs, &proc{t: t, name: "n" + strconv.Itoa(i+1), host: "127.0.0.1",
			dir: filepath.Join(root, "n"+strconv.Itoa(i+1)), gossip: freePort(t), api: freePort(t), edge: freePort(t)})
	}
	return launch(t, procs, func() int { return freePort(t) })
}

// launch writes each process's config, starts them and waits until the
// cluster is healthy; port gives the ports nobody connects to directly.
func launch(t testing.TB, procs []*proc, port func() int) *procCluster {
	t.Helper()
	pc := &procCluster{t: t, procs: procs}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			p.kill()
		}
	})
	for i, p := range procs {
		os.MkdirAll(p.dir, 0o755)
		if p.ingest == 0 {
			p.ingest = port()
		}
		join := ""
		if i > 0 {
			join = fmt.Sprintf(`"%s:%d"`, procs[0].host, procs[0].gossip)
		}
		p.config = filepath.Join(p.dir, "node.toml")
		cfg := fmt.Sprintf(`# e2e node %[1]s
[node]
name = "%[1]s"
data_dir = "%[2]s"
bind_addr = "%[11]s"

[cluster]
gossip_port = %[3]d
raft_port = %[4]d
join = [%[5]s]
bootstrap_expect = %[6]d

[api]
ews_port = %[7]d
password = "%[8]s"

[ingest]
port = %[9]d
source_password = "%[12]s"

[edge]
port = %[10]d
`, p.name, filepath.Join(p.dir, "data"), p.gossip, port(), join, len(procs), p.api, password, p.ingest, p.edge, p.host, sourcePassword) + p.extraConfig
		if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		p.start()
	}
	pc.waitHealthy(20 * time.Second)
	return pc
}

func (p *proc) start() {
	p.t.Helper()
	p.logPath = filepath.Join(p.dir, fmt.Sprintf("castmeshd-%d.log", time.Now().UnixNano()))
	log, err := os.Create(p.logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	argv := []string{filepath.Join(binDir, "castmeshd"), "--config", p.config, "--log-level", "debug"}
	if p.netns != "" {
		argv = append([]string{"ip", "netns", "exec", p.netns}, argv...)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// A test binary that dies (timeout, SIGQUIT) takes its nodes with it
	// rather than leaving them running on the machine.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); log.Close(); close(p.exited) }()
}

// kill is kill -9.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		p.cmd = nil
	}
}

// stop is a clean SIGTERM.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	p.cmd = nil
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (pc *procCluster) waitHealthy(d time.Duration) {
	pc.t.Helper()
	waitFor(pc.t, d, "every process healthy", func() bool {
		for _, p := range pc.procs {
			if p.cmd == nil {
				continue
			}
			resp, err := http.Get(p.edgeURL() + "/health")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return false
			}
		}
		return true
	}, pc.logs)
}

func (pc *procCluster) logs() string {
	var b strings.Builder
	for _, p := range pc.procs {
		fmt.Fprintf(&b, "\n--- %s log tail ---\n%s", p.name, p.logTail())
	}
	return b.String()
}

// leader asks p which process leads.
func (pc *procCluster) leader(via *proc) *proc {
	var m struct{ Name string }
	if env, err := call(via, "leader", ""); err == nil && env.Status == "SUCCESS" {
		json.Unmarshal(env.Data, &m)
	}
	for _, p := range pc.procs {
		if p.name == m.Name {
			return p
		}
	}
	return nil
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool, diag ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, f := range diag {
				msg += f()
			}
			t.Fatalf("timed out after %v waiting for %s%s", d, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type envelope struct {
	Data        json.RawMessage `json:"data"`
	Description string          `json:"description"`
	Status      string          `json:"status"`
}

// curlAPI runs an EMS command with curl: base64 params and basic auth.
func curlAPI(t testing.TB, p *proc, user, pass, cmd, params string) (int, envelope) {
	t.Helper()
	curl := requireTool(t, "curl")
	u := p.apiURL() + "/" + cmd
	if params != "" {
		u += "?params=" + base64.URLEncoding.EncodeToString([]byte(params))
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "30", "-u", user+":"+pass, "-w", "\n%{http_code}", u).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", cmd, err)
	}
	i := bytes.LastIndexByte(out, '\n')
	body := out[:max(i, 0)]
	code, _ := strconv.Atoi(strings.TrimSpace(string(out[i+1:])))
	var env envelope
	if code == 200 {
		json.Unmarshal(body, &env)
	}
	return code, env
}

// call runs a command with Go's client, for polling loops.
func call(p *proc, cmd, params string) (envelope, error) {
	u := p.apiURL() + "/" + cmd
	if params != "" {
		u += "?params=" + base64.StdEncoding.EncodeToString([]byte(params))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return envelope{}, err
	}
	defer resp.Body.Close()
	var env envelope
	err = json.NewDecoder(resp.Body).Decode(&env)
	return env, err
}

// edgeSum fetches a stream from p's edge with curl and returns its digest.
func edgeSum(t testing.TB, p *proc, name string) (int, [32]byte) {
	curl := requireTool(t, "curl")
	out, err := exec.Command(curl, "-s", "--max-time", "10", "-w", "%{http_code}", "-o", "-", p.edgeURL()+"/"+name).Output()
	if err != nil || len(out) < 3 {
		return 0, [32]byte{}
	}
	code, _ := strconv.Atoi(string(out[len(out)-3:]))
	return code, sha256.Sum256(out[:len(out)-3])
}

// source is a local HTTP origin of a file that counts its requests.
type source struct {
	*httptest.Server
	body     []byte
	sum      [32]byte
	requests atomic.Int64
}

func newSource(t testing.TB, size int) *source { return newSourceOn(t, "127.0.0.1:0", size) }

func newSourceOn(t testing.TB, addr string, size int) *source {
	s := &source{body: make([]byte, size)}
	rand.Read(s.body)
	s.sum = sha256.Sum256(s.body)
	s.Server = serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		http.ServeContent(w, r, "", time.Unix(1, 0), bytes.NewReader(s.body))
	}))
	return s
}

// serveOn runs h on a real HTTP server at addr until the test ends.
func serveOn(t testing.TB, addr string, h http.Handler) *httptest.Server {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	// Close alone waits for every request to end, and a live source's
	// never does while a node still reads it.
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}
