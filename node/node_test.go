package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castmesh/castmesh/config"
)

const testPassword = "s3cret-test"

// testCluster is n real nodes (memberlist + raft on 127.0.0.1) in this
// process, with short timings.
type testCluster struct {
	t     *testing.T
	cfgs  []config.Config
	nodes []*Node
}

func testConfig(name, dir string) config.Config {
	cfg := config.Default()
	cfg.Node.Name = name
	cfg.Node.DataDir = dir
	cfg.Cluster.GossipPort, cfg.Cluster.RaftPort, cfg.API.EWSPort, cfg.Edge.Port, cfg.Ingest.Port = 0, 0, 0, 0, 0
	cfg.API.Password = testPassword
	cfg.Cluster.Timings = config.Timings{
		RaftHeartbeat: 100 * time.Millisecond, RaftElection: 100 * time.Millisecond,
		RaftLease: 50 * time.Millisecond, RaftCommit: 5 * time.Millisecond,
		GossipProbe: 100 * time.Millisecond, GossipProbeWait: 50 * time.Millisecond,
		GossipInterval: 30 * time.Millisecond, SuspicionMult: 2,
	}
	return cfg
}

func newTestCluster(t *testing.T, n int) *testCluster { return newTestClusterWith(t, n, nil) }

// newTestClusterWith is newTestCluster with tweak applied to node i's
// config before it starts.
func newTestClusterWith(t *testing.T, n int, tweak func(i int, cfg *config.Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	for i := range n {
		cfg := testConfig("n"+strconv.Itoa(i+1), filepath.Join(t.TempDir(), "data"))
		cfg.Cluster.BootstrapExpect = n
		if tweak != nil {
			tweak(i, &cfg)
		}
		if i > 0 {
			cfg.Cluster.Join = []string{tc.nodes[0].Cluster().Self().Addr}
		}
		tc.cfgs = append(tc.cfgs, cfg)
		tc.nodes = append(tc.nodes, nil)
		tc.start(i)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	tc.waitLeader()
	return tc
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start (re)starts node i. After its first start, a node keeps its ports so
// that a restart looks like the same node to raft and gossip.
func (tc *testCluster) start(i int) {
	tc.t.Helper()
	nd, err := New(tc.cfgs[i], quiet)
	if err != nil {
		tc.t.Fatalf("start %s: %v", tc.cfgs[i].Node.Name, err)
	}
	tc.nodes[i] = nd
	self := nd.Cluster().Self()
	c := &tc.cfgs[i]
	c.Cluster.GossipPort = portOf(tc.t, self.Addr)
	c.Cluster.RaftPort = portOf(tc.t, self.Meta.Raft)
	c.API.EWSPort = portOf(tc.t, self.Meta.API)
	c.Edge.Port = portOf(tc.t, self.Meta.Edge)
}

func (tc *testCluster) stop(i int) {
	tc.nodes[i].Close()
	tc.nodes[i] = nil
}

func portOf(t *testing.T, hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func (tc *testCluster) waitLeader() *Node {
	tc.t.Helper()
	var leader *Node
	waitFor(tc.t, 10*time.Second, "a leader known to every running node", func() bool {
		leader = nil
		for _, nd := range tc.nodes {
			if nd == nil {
				continue
			}
			m, ok := nd.Cluster().Leader()
			if !ok {
				return false
			}
			for _, x := range tc.nodes {
				if x != nil && x.Name() == m.Name {
					leader = x
				}
			}
		}
		return leader != nil
	})
	return leader
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// source is an HTTP origin of a media file that counts its requests.
type source struct {
	*httptest.Server
	body     []byte
	sum      [32]byte
	requests atomic.Int64
}

func newSource(t *testing.T, size int) *source {
	s := &source{body: make([]byte, size)}
	rand.Read(s.body)
	s.sum = sha256.Sum256(s.body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		http.ServeContent(w, r, "", time.Unix(1, 0), strings.NewReader(string(s.body)))
	}))
	t.Cleanup(s.Close)
	return s
}

type envelope struct {
	Data        json.RawMessage `json:"data"`
	Description string          `json:"description"`
	Status      string          `json:"status"`
}

// ems calls an API command the way EMS clients do: base64 params, basic auth.
func ems(t *testing.T, nd *Node, user, pass, cmd, params string) (int, envelope) {
	t.Helper()
	u := nd.APIURL() + "/" + cmd
	if params != "" {
		u += "?params=" + base64.StdEncoding.EncodeToString([]byte(params))
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	return resp.StatusCode, env
}

func mustSucceed(t *testing.T, nd *Node, cmd, params string) envelope {
	t.Helper()
	code, env := ems(t, nd, "admin", testPassword, cmd, params)
	if code != http.StatusOK || env.Status != "SUCCESS" {
		t.Fatalf("%s %q on %s: HTTP %d %s: %s", cmd, params, nd.Name(), code, env.Status, env.Description)
	}
	return env
}

func edgeGet(nd *Node, path string, hdr ...string) (*http.Response, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, nd.EdgeURL()+"/"+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// waitServed waits until nd's edge serves name with the given content.
func waitServed(t *testing.T, nd *Node, name string, sum [32]byte, within time.Duration) {
	t.Helper()
	waitFor(t, within, nd.Name()+" serving "+name, func() bool {
		resp, b, err := edgeGet(nd, name)
		return err == nil && resp.StatusCode == 200 && sha256.Sum256(b) == sum
	})
}

type listConfig struct {
	Pull []struct {
		ConfigID        uint64 `json:"configId"`
		LocalStreamName string `json:"localStreamName"`
		Origin          string `json:"origin"`
		Nodes           map[string]struct {
			Current struct{ State string } `json:"current"`
		} `json:"nodes"`
	} `json:"pull"`
}

func getListConfig(t *testing.T, nd *Node) listConfig {
	var lc listConfig
	env := mustSucceed(t, nd, "listConfig", "")
	if err := json.Unmarshal(env.Data, &lc); err != nil {
		t.Fatal(err)
	}
	return lc
}

func TestThreeNodesReplicateAPulledFile(t *testing.T) {
	tc := newTestCluster(t, 3)
	src := newSource(t, 300<<10)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]

	env := mustSucceed(t, n2, "pullStream", "uri="+src.URL+"/a.mp4 localStreamName=vod/a.mp4 ")
	var pulled struct {
		ConfigID      uint64 `json:"configId"`
		OperationType int    `json:"operationType"`
		Origin        string `json:"origin"`
	}
	json.Unmarshal(env.Data, &pulled)
	if pulled.ConfigID == 0 || pulled.OperationType != 1 || pulled.Origin != "n2" {
		t.Fatalf("pullStream data %s", env.Data)
	}
	for _, nd := range tc.nodes {
		waitServed(t, nd, "vod/a.mp4", src.sum, 5*time.Second)
	}

	// Every node is active in listConfig, asked of node 3.
	waitFor(t, 5*time.Second, "listConfig on n3 to show active everywhere", func() bool {
		lc := getListConfig(t, n3)
		if len(lc.Pull) != 1 || lc.Pull[0].ConfigID != pulled.ConfigID || len(lc.Pull[0].Nodes) != 3 {
			return false
		}
		for _, st := range lc.Pull[0].Nodes {
			if st.Current.State != "active" {
				return false
			}
		}
		return true
	})

	// Wrong or missing credentials: 401 and nothing changes.
	for _, creds := range [][2]string{{"admin", "wrong"}, {"", ""}, {"root", testPassword}} {
		code, _ := ems(t, n1, creds[0], creds[1], "pullStream", "uri="+src.URL+"/b.mp4 localStreamName=vod/b.mp4")
		if code != http.StatusUnauthorized {
			t.Errorf("credentials %q: HTTP %d, want 401", creds, code)
		}
	}
	// Refused commands: duplicate, names that could escape or are not allowed.
	for _, name := range []string{"vod/a.mp4", "../x.mp4", "/abs.mp4", "a b.mp4", "vod/..", "x%41.mp4"} {
		code, env := ems(t, n1, "admin", testPassword, "pullStream", "uri="+src.URL+"/x.mp4 localStreamName="+name)
		if code != 200 || env.Status != "FAIL" || env.Description == "" {
			t.Errorf("pullStream %q: HTTP %d %s %q, want FAIL with a reason", name, code, env.Status, env.Description)
		}
	}
	if lc := getListConfig(t, n1); len(lc.Pull) != 1 {
		t.Fatalf("refused commands changed the set: %+v", lc)
	}

	// The edge: Range, conditional, HEAD, 404.
	resp, b, _ := edgeGet(n3, "vod/a.mp4", "Range", "bytes=100-199")
	if resp.StatusCode != 206 || string(b) != string(src.body[100:200]) || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	resp, _, _ = edgeGet(n3, "vod/a.mp4", "If-None-Match", resp.Header.Get("ETag"))
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp, _, _ = edgeGet(n3, "vod/a.mp4", "Range", "bytes=999999999-")
	if resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range: %d", resp.StatusCode)
	}
	if resp, _, _ := edgeGet(n3, "vod/none.mp4"); resp.StatusCode != 404 {
		t.Fatalf("unknown stream: %d", resp.StatusCode)
	}
	if src.requests.Load() > 3 { // pullStream's probe, the download, slack for one retry
		t.Errorf("the source was asked %d times; peers must pull from the origin", src.requests.Load())
	}

	// removeConfig removes it from every node, files included.
	mustSucceed(t, n1, "removeConfig", fmt.Sprintf("id=%d", pulled.ConfigID))
	for i, nd := range tc.nodes {
		waitFor(t, 5*time.Second, nd.Name()+" to drop vod/a.mp4", func() bool {
			resp, _, err := edgeGet(nd, "vod/a.mp4")
			_, statErr := os.Stat(filepath.Join(tc.cfgs[i].Node.DataDir, "streams", "media", "vod", "a.mp4"))
			return err == nil && resp.StatusCode == 404 && os.IsNotExist(statErr)
		})
	}
}

func TestLeaderCrashThenCatchUp(t *testing.T) {
	tc := newTestCluster(t, 3)
	src := newSource(t, 64<<10)
	leader := tc.waitLeader()
	li := 0
	for i, nd := range tc.nodes {
		if nd == leader {
			li = i
		}
	}
	tc.stop(li)
	var survivors []*Node
	for _, nd := range tc.nodes {
		if nd != nil {
			survivors = append(survivors, nd)
		}
	}
	start := time.Now()
	waitFor(t, 3*time.Second, "a pullStream to succeed on a survivor", func() bool {
		code, env := ems(t, survivors[0], "admin", testPassword, "pullStream", "uri="+src.URL+"/after.mp3 localStreamName=after.mp3")
		return code == 200 && env.Status == "SUCCESS"
	})
	t.Logf("pullStream committed %v after the leader stopped", time.Since(start))
	waitServed(t, survivors[1], "after.mp3", src.sum, 5*time.Second)

	tc.start(li)
	waitServed(t, tc.nodes[li], "after.mp3", src.sum, 10*time.Second)
}

func TestRestartAllKeepsStreamsWithoutRefetching(t *testing.T) {
	tc := newTestCluster(t, 3)
	src := newSource(t, 128<<10)
	mustSucceed(t, tc.nodes[0], "pullStream", "uri="+src.URL+"/k.m4a localStreamName=keep/k.m4a")
	for _, nd := range tc.nodes {
		waitServed(t, nd, "keep/k.m4a", src.sum, 5*time.Second)
	}
	before := src.requests.Load()
	for i := range tc.nodes {
		tc.stop(i)
	}
	for i := range tc.nodes {
		tc.start(i)
	}
	tc.waitLeader()
	for _, nd := range tc.nodes {
		waitServed(t, nd, "keep/k.m4a", src.sum, 10*time.Second)
	}
	if after := src.requests.Load(); after != before {
		t.Fatalf("the source was asked %d more times after the restart", after-before)
	}
	waitFor(t, 5*time.Second, "every node healthy", func() bool {
		for _, nd := range tc.nodes {
			if ok, _ := nd.Health(); !ok {
				return false
			}
		}
		return true
	})
}

func TestNoConfigFileRunsSingleNode(t *testing.T) {
	cfg := testConfig("solo", t.TempDir())
	nd, err := New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nd.Cluster().WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "health 200", func() bool {
		resp, _, err := edgeGet(nd, "health")
		return err == nil && resp.StatusCode == 200
	})
}
