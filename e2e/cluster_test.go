package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

type configEntryJSON struct {
	ConfigID        uint64 `json:"configId"`
	LocalStreamName string `json:"localStreamName"`
	Nodes           map[string]struct {
		Current struct {
			State string `json:"state"`
		} `json:"current"`
	} `json:"nodes"`
}

type listConfigJSON struct {
	Status string `json:"status"`
	Data   struct {
		Push []configEntryJSON `json:"push"`
		Pull []configEntryJSON `json:"pull"`
	} `json:"data"`
}

// listconfigJSON runs the real listconfig --json against p.
func listconfigJSON(t testing.TB, p *proc) listConfigJSON {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "listconfig"), "--json", "--api", p.apiURL(), "--user", "admin")
	cmd.Env = append(os.Environ(), "CASTMESH_PASSWORD="+password)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listconfig --json: %v", err)
	}
	var lc listConfigJSON
	if err := json.Unmarshal(out, &lc); err != nil {
		t.Fatalf("listconfig --json printed %s: %v", out, err)
	}
	return lc
}

func pullStream(t testing.TB, p *proc, uri, name string) uint64 {
	t.Helper()
	code, env := curlAPI(t, p, "admin", password, "pullStream", "uri="+uri+" localStreamName="+name+" ")
	if code != 200 || env.Status != "SUCCESS" {
		t.Fatalf("pullStream %s on %s: HTTP %d %s %s", name, p.name, code, env.Status, env.Description)
	}
	var d struct{ ConfigID uint64 }
	json.Unmarshal(env.Data, &d)
	return d.ConfigID
}

func waitEdge(t testing.TB, p *proc, name string, sum [32]byte, within time.Duration, pc *procCluster) {
	t.Helper()
	waitFor(t, within, p.name+" serving "+name, func() bool {
		code, got := edgeSum(t, p, name)
		return code == 200 && got == sum
	}, pc.logs)
}

func TestProcessesReplicateKillRestartRemove(t *testing.T) {
	requireTool(t, "curl")
	pc := startCluster(t, 3)
	n1, n2, n3 := pc.procs[0], pc.procs[1], pc.procs[2]
	src := newSource(t, 256<<10)

	id := pullStream(t, n2, src.URL+"/a.mp4", "vod/a.mp4")
	for _, p := range pc.procs {
		waitEdge(t, p, "vod/a.mp4", src.sum, 5*time.Second, pc)
	}
	waitFor(t, 5*time.Second, "listconfig --json on n3 to show vod/a.mp4 active on all three", func() bool {
		lc := listconfigJSON(t, n3)
		if lc.Status != "SUCCESS" || len(lc.Data.Pull) != 1 || lc.Data.Pull[0].ConfigID != id || len(lc.Data.Pull[0].Nodes) != 3 {
			return false
		}
		for _, st := range lc.Data.Pull[0].Nodes {
			if st.Current.State != "active" {
				return false
			}
		}
		return true
	})

	// Wrong credentials: 401, and nothing changes.
	if code, _ := curlAPI(t, n1, "admin", "nope", "pullStream", "uri="+src.URL+"/b.mp4 localStreamName=b.mp4"); code != 401 {
		t.Fatalf("wrong password: HTTP %d", code)
	}
	if code, env := curlAPI(t, n1, "admin", password, "pullStream", "uri="+src.URL+"/a.mp4 localStreamName=vod/a.mp4"); env.Status != "FAIL" {
		t.Fatalf("duplicate: HTTP %d %s", code, env.Status)
	}

	// kill -9 the leader: a pullStream on a survivor commits within 3 s and
	// reaches the other survivor; the killed node, restarted, catches up.
	leader := pc.leader(n1)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.kill()
	var alive []*proc
	for _, p := range pc.procs {
		if p != leader {
			alive = append(alive, p)
		}
	}
	killed := time.Now()
	waitFor(t, 3*time.Second, "pullStream on a survivor after kill -9 of the leader", func() bool {
		env, err := call(alive[0], "pullStream", "uri="+src.URL+"/c.mp3 localStreamName=after/c.mp3")
		return err == nil && env.Status == "SUCCESS"
	}, pc.logs)
	t.Logf("committed %v after kill -9 of leader %s", time.Since(killed).Round(time.Millisecond), leader.name)
	waitEdge(t, alive[1], "after/c.mp3", src.sum, 5*time.Second, pc)
	leader.start()
	waitEdge(t, leader, "after/c.mp3", src.sum, 10*time.Second, pc)
	pc.waitHealthy(10 * time.Second)

	// Stop all three and start them again: the set and the files are still
	// there and nothing is fetched from the source again.
	before := src.requests.Load()
	for _, p := range pc.procs {
		p.stop()
	}
	for _, p := range pc.procs {
		p.start()
	}
	pc.waitHealthy(15 * time.Second)
	for _, p := range pc.procs {
		waitEdge(t, p, "vod/a.mp4", src.sum, 5*time.Second, pc)
		waitEdge(t, p, "after/c.mp3", src.sum, 5*time.Second, pc)
	}
	if after := src.requests.Load(); after != before {
		t.Fatalf("the source was asked %d more times after a full restart", after-before)
	}

	// removeConfig removes it everywhere: edge 404, files deleted.
	copyPath := func(p *proc) string { return filepath.Join(p.dir, "data", "streams", "media", "vod", "a.mp4") }
	for _, p := range pc.procs {
		if _, err := os.Stat(copyPath(p)); err != nil {
			t.Fatalf("%s: the stored copy is not where this test looks: %v", p.name, err)
		}
	}
	if code, env := curlAPI(t, n3, "admin", password, "removeConfig", fmt.Sprintf("id=%d", id)); env.Status != "SUCCESS" {
		t.Fatalf("removeConfig: HTTP %d %s %s", code, env.Status, env.Description)
	}
	for _, p := range pc.procs {
		waitFor(t, 5*time.Second, p.name+" to delete vod/a.mp4", func() bool {
			code, _ := edgeSum(t, p, "vod/a.mp4")
			_, err := os.Stat(copyPath(p))
			return code == 404 && os.IsNotExist(err)
		}, pc.logs)
	}
}

// An https source is pulled with the system's trust store (here the test
// server's certificate through SSL_CERT_FILE, as an operator would add a
// private CA); the other nodes copy it from the origin as usual.
func TestProcessesPullHTTPSSource(t *testing.T) {
	requireTool(t, "curl")
	body := make([]byte, 100<<10)
	rand.Read(body)
	sum := sha256.Sum256(body)
	src := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Unix(1, 0), bytes.NewReader(body))
	}))
	src.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	src.StartTLS()
	defer src.Close()
	pemPath := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: src.Certificate().Raw})
	if err := os.WriteFile(pemPath, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", pemPath) // inherited by the castmeshd processes

	pc := startCluster(t, 3)
	pullStream(t, pc.procs[1], src.URL+"/tls.mp4", "vod/tls.mp4")
	for _, p := range pc.procs {
		waitEdge(t, p, "vod/tls.mp4", sum, 5*time.Second, pc)
	}
	// Without the certificate trusted, the pull is refused with the reason.
	t.Setenv("SSL_CERT_FILE", filepath.Join(t.TempDir(), "empty.pem"))
	os.WriteFile(os.Getenv("SSL_CERT_FILE"), nil, 0o644)
	p := pc.procs[0]
	p.stop()
	p.start()
	pc.waitHealthy(15 * time.Second)
	code, env := curlAPI(t, p, "admin", password, "pullStream", "uri="+src.URL+"/untrusted.mp4 localStreamName=vod/untrusted.mp4")
	if code != 200 || env.Status != "FAIL" || !strings.Contains(env.Description, "certificate") {
		t.Fatalf("untrusted https source: HTTP %d %s %q, want FAIL naming the certificate", code, env.Status, env.Description)
	}
}

// BenchmarkReplication measures the time from pullStream SUCCESS to every
// edge of 3 processes serving the file, over 20 runs.
func BenchmarkReplication(b *testing.B) {
	requireTool(b, "curl")
	pc := startCluster(b, 3)
	src := newSource(b, 64<<10)
	var samples []time.Duration
	for run := range 20 * b.N {
		name := fmt.Sprintf("bench/r%d.mp4", run)
		pullStream(b, pc.procs[run%3], src.URL+"/r.mp4", name)
		start := time.Now()
		for _, p := range pc.procs {
			waitFor(b, 10*time.Second, name+" on "+p.name, func() bool {
				code, sum := edgeSum(b, p, name)
				return code == 200 && sum == src.sum
			}, pc.logs)
		}
		samples = append(samples, time.Since(start))
	}
	reportPercentiles(b, "replication", samples)
}

// BenchmarkLeaderFailover measures the time from kill -9 of the leader to
// the next committed pullStream on a survivor, over 10 runs.
func BenchmarkLeaderFailover(b *testing.B) {
	requireTool(b, "curl")
	pc := startCluster(b, 3)
	src := newSource(b, 1<<10)
	var samples []time.Duration
	for run := range 10 * b.N {
		leader := pc.leader(pc.procs[0])
		for leader == nil {
			time.Sleep(20 * time.Millisecond)
			leader = pc.leader(pc.procs[run%3])
		}
		var survivor *proc
		for _, p := range pc.procs {
			if p != leader {
				survivor = p
				break
			}
		}
		leader.kill()
		start := time.Now()
		name := fmt.Sprintf("failover/f%d.mp3", run)
		waitFor(b, 10*time.Second, "pullStream after leader kill", func() bool {
			env, err := call(survivor, "pullStream", "uri="+src.URL+"/f.mp3 localStreamName="+name)
			return err == nil && env.Status == "SUCCESS"
		}, pc.logs)
		samples = append(samples, time.Since(start))
		leader.start()
		pc.waitHealthy(20 * time.Second)
	}
	reportPercentiles(b, "failover", samples)
}

func reportPercentiles(b *testing.B, what string, samples []time.Duration) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(p float64) time.Duration { return samples[int(p*float64(len(samples)-1)+0.5)] }
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, what+"-p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, what+"-p99-ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, what+"-max-ms")
	b.Logf("%s over %d runs: p50 %v p99 %v max %v", what, len(samples), pct(0.5), pct(0.99), samples[len(samples)-1])
}
