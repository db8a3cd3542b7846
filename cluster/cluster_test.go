package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/castmesh/castmesh/config"
)

// testTimings are short raft and gossip timings for in-process clusters.
var testTimings = config.Timings{
	RaftHeartbeat: 100 * time.Millisecond, RaftElection: 100 * time.Millisecond,
	RaftLease: 50 * time.Millisecond, RaftCommit: 5 * time.Millisecond,
	GossipProbe: 100 * time.Millisecond, GossipProbeWait: 50 * time.Millisecond,
	GossipInterval: 30 * time.Millisecond, SuspicionMult: 2,
}

// testLogger discards logs unless CLUSTER_TEST_LOG is set.
func testLogger(name string) *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// errRejected is what kvFSM answers to a "fail" command.
var errRejected = errors.New("rejected by the FSM")

// kvFSM is a tiny replicated map: "set k=v" stores v and answers it,
// "fail" answers an error.
type kvFSM struct {
	mu sync.Mutex
	m  map[string]string
}

func newKV() *kvFSM { return &kvFSM{m: map[string]string{}} }

func (f *kvFSM) Apply(l *raft.Log) any {
	cmd := string(l.Data)
	switch {
	case strings.HasPrefix(cmd, "set "):
		k, v, _ := strings.Cut(strings.TrimPrefix(cmd, "set "), "=")
		f.mu.Lock()
		f.m[k] = v
		f.mu.Unlock()
		return []byte(v)
	case strings.HasPrefix(cmd, "fail"):
		return fmt.Errorf("%w: %s", errRejected, cmd)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func (f *kvFSM) get(k string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[k]
	return v, ok
}

func (f *kvFSM) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.m)
	return kvSnapshot(b), err
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	m := map[string]string{}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return err
	}
	f.mu.Lock()
	f.m = m
	f.mu.Unlock()
	return nil
}

type kvSnapshot []byte

func (s kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (kvSnapshot) Release() {}

// testNode is one node of a testCluster; c is nil while it is stopped.
type testNode struct {
	name string
	cfg  config.Config
	fsm  *kvFSM
	c    *Cluster
	reg  *prometheus.Registry
}

// testCluster runs nodes in this process on 127.0.0.1 with free ports.
// Its Forward calls the leader's ApplyLocal directly.
type testCluster struct {
	t        *testing.T
	mu       sync.Mutex
	nodes    []*testNode
	forwards atomic.Int64
}

func newTestCluster(t *testing.T) *testCluster {
	tc := &testCluster{t: t}
	// The first TempDir registers the removal of all of them; registered
	// before the nodes' Close, it runs after it.
	t.TempDir()
	t.Cleanup(func() {
		for _, n := range tc.running() {
			n.c.Close()
		}
	})
	return tc
}

func testConfig(t *testing.T, name string, expect int, join ...string) config.Config {
	cfg := config.Default()
	cfg.Node.Name = name
	cfg.Node.DataDir = t.TempDir()
	cfg.Cluster.GossipPort, cfg.Cluster.RaftPort = 0, 0
	cfg.Cluster.BootstrapExpect = expect
	cfg.Cluster.Join = join
	cfg.Cluster.Timings = testTimings
	return cfg
}

// add starts a new node.
func (tc *testCluster) add(name string, expect int, join ...string) *testNode {
	tc.t.Helper()
	n := &testNode{name: name, cfg: testConfig(tc.t, name, expect, join...)}
	tc.mu.Lock()
	tc.nodes = append(tc.nodes, n)
	tc.mu.Unlock()
	tc.start(n)
	return n
}

// start (re)starts n on its config with an empty FSM, as a new process would.
func (tc *testCluster) start(n *testNode) {
	tc.t.Helper()
	fsm, reg := newKV(), prometheus.NewRegistry()
	c, err := New(Options{
		Config:     n.cfg,
		Meta:       Meta{API: "127.0.0.1:1", APIScheme: "http", PseudoDomain: "apiproxy", Edge: "127.0.0.1:2", Replicates: true},
		FSM:        fsm,
		Forward:    tc.forward,
		Logger:     testLogger(n.name),
		Registerer: reg,
	})
	if err != nil {
		tc.t.Fatalf("start %s: %v", n.name, err)
	}
	tc.mu.Lock()
	n.c, n.fsm, n.reg = c, fsm, reg
	tc.mu.Unlock()
}

// stop closes n abruptly, as a crash would look to the others.
func (tc *testCluster) stop(n *testNode) {
	tc.t.Helper()
	tc.mu.Lock()
	c := n.c
	n.c = nil
	tc.mu.Unlock()
	if err := c.Close(); err != nil {
		tc.t.Logf("close %s: %v", n.name, err)
	}
}

func (tc *testCluster) forward(ctx context.Context, leader Member, cmd []byte) ([]byte, error) {
	tc.forwards.Add(1)
	tc.mu.Lock()
	var target *Cluster
	for _, n := range tc.nodes {
		if n.name == leader.Name {
			target = n.c
		}
	}
	tc.mu.Unlock()
	if target == nil {
		// What an HTTP client sees when the leader's process is gone.
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return target.ApplyLocal(ctx, cmd)
}

func (tc *testCluster) running() []*testNode {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []*testNode
	for _, n := range tc.nodes {
		if n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader waits until every running node knows the same leader, which is
// one of them, and returns it.
func (tc *testCluster) leader(d time.Duration) *testNode {
	tc.t.Helper()
	var leader *testNode
	waitFor(tc.t, d, "one leader known to every running node", func() bool {
		leader = nil
		var name string
		for _, n := range tc.running() {
			m, ok := n.c.Leader()
			if !ok || (name != "" && m.Name != name) {
				return false
			}
			name = m.Name
		}
		for _, n := range tc.running() {
			if n.name == name && n.c.IsLeader() {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

func (tc *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, n := range tc.running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// waitServers waits until n's raft configuration has the given voters and
// non-voters (by name, any order).
func waitServers(t *testing.T, n *testNode, d time.Duration, voters, nonvoters []string) {
	t.Helper()
	slices.Sort(voters)
	slices.Sort(nonvoters)
	var got []Server
	waitFor(t, d, fmt.Sprintf("%s's raft configuration to be voters %v, non-voters %v", n.name, voters, nonvoters), func() bool {
		var err error
		got, err = n.c.Servers()
		if err != nil {
			return false
		}
		var v, nv []string
		for _, s := range got {
			if s.Voter {
				v = append(v, s.ID)
			} else {
				nv = append(nv, s.ID)
			}
		}
		return slices.Equal(v, voters) && slices.Equal(nv, nonvoters)
	}, func() string { return fmt.Sprintf("have %+v", got) })
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %v waiting for %s", d, what)
			for _, f := range detail {
				msg += ": " + f()
			}
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func names(nodes ...*testNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.name)
	}
	return out
}

func apply(t *testing.T, n *testNode, cmd string) string {
	t.Helper()
	resp, err := n.c.Apply(ctxT(t, 5*time.Second), []byte(cmd))
	if err != nil {
		t.Fatalf("apply %q on %s: %v", cmd, n.name, err)
	}
	return string(resp)
}

// waitValue waits until every given node's FSM has k = v.
func waitValue(t *testing.T, d time.Duration, k, v string, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, d, fmt.Sprintf("%s=%s on %s", k, v, n.name), func() bool {
			got, ok := n.fsm.get(k)
			return ok && got == v
		})
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Raft: "10.0.0.1:8300", API: "10.0.0.1:8888", APIScheme: "https", PseudoDomain: "apiproxy",
		Edge: "10.0.0.1:8080", Ingest: "10.0.0.1:8000", Zone: "eu-1", Replicates: true,
		BootstrapExpect: 3, InCluster: true, Leaving: true}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxMetaSize {
		t.Fatalf("meta is %d bytes", len(b))
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{", `{"raft":"x"}`, "null"} {
		if _, err := decodeMeta([]byte(bad)); err == nil {
			t.Errorf("decodeMeta(%q) accepted", bad)
		}
	}
	if _, err := encodeMeta(Meta{Zone: strings.Repeat("z", 600)}); err == nil {
		t.Error("oversized meta accepted")
	}
}

func TestTimings(t *testing.T) {
	d := timings(config.Timings{})
	if d.RaftHeartbeat != defaultRaftHeartbeat || d.RaftCommit != defaultRaftCommit || d.SuspicionMult != defaultSuspicionMult {
		t.Fatalf("defaults: %+v", d)
	}
	// A partial override stays valid for raft.
	p := timings(config.Timings{RaftHeartbeat: time.Second})
	if p.RaftElection < p.RaftHeartbeat || p.RaftLease > p.RaftHeartbeat {
		t.Fatalf("inconsistent: %+v", p)
	}
	if o := timings(testTimings); o != testTimings {
		t.Fatalf("overrides changed: %+v", o)
	}
}

func TestSingleNodeBootstrapsAlone(t *testing.T) {
	tc := newTestCluster(t)
	start := time.Now()
	n := tc.add("solo", 1)
	m, err := n.c.WaitForLeader(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("single node: leader after %v", time.Since(start))
	if m.Name != "solo" || !n.c.IsLeader() {
		t.Fatalf("leader %+v", m)
	}
	waitFor(t, 2*time.Second, "healthy", n.c.Healthy)
	if got := apply(t, n, "set a=1"); got != "1" {
		t.Fatalf("apply answered %q", got)
	}
	_, err = n.c.Apply(ctxT(t, time.Second), []byte("fail please"))
	if !errors.Is(err, errRejected) {
		t.Fatalf("FSM error came back as %v", err)
	}
	waitServers(t, n, time.Second, []string{"solo"}, nil)
	self := n.c.Self()
	if self.State != StateAlive || self.Meta.Raft == "" || !self.Meta.InCluster || self.Meta.API != "127.0.0.1:1" || self.Addr == "" {
		t.Fatalf("self %+v", self)
	}
	if ms := n.c.Members(); len(ms) != 1 || ms[0].Name != "solo" {
		t.Fatalf("members %+v", ms)
	}
	select {
	case <-n.c.Changes():
	case <-time.After(2 * time.Second):
		t.Fatal("no change signalled for gaining leadership")
	}
	if g := gauge(t, n.reg, "castmesh_raft_is_leader"); g != 1 {
		t.Errorf("castmesh_raft_is_leader = %v", g)
	}
	if g := gauge(t, n.reg, "castmesh_cluster_members", "state", "alive"); g != 1 {
		t.Errorf("castmesh_cluster_members{alive} = %v", g)
	}
	if g := gauge(t, n.reg, "castmesh_raft_applied_index"); g < 2 {
		t.Errorf("castmesh_raft_applied_index = %v", g)
	}
	if g := gauge(t, n.reg, "castmesh_raft_apply_duration_seconds"); g != 2 {
		t.Errorf("apply duration samples = %v, want 2", g)
	}

	// ApplyLocal on the leader; Close is idempotent; afterwards ErrClosed.
	if _, err := n.c.ApplyLocal(ctxT(t, time.Second), []byte("set b=2")); err != nil {
		t.Fatal(err)
	}
	c := n.c
	tc.stop(n)
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Apply(ctxT(t, time.Second), []byte("set c=3")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}

	// Restart on the same data dir: no second bootstrap, the data is back.
	tc.start(n)
	if _, err := n.c.WaitForLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitValue(t, 2*time.Second, "b", "2", n)
	waitServers(t, n, time.Second, []string{"solo"}, nil)
}

func TestHalfFailedNewReleasesEverything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t, "n1", 1)
	cfg.Cluster.RaftPort = busy.Addr().(*net.TCPAddr).Port
	if _, err := New(Options{Config: cfg, FSM: newKV(), Logger: testLogger("n1")}); err == nil {
		t.Fatal("New succeeded on a busy raft port")
	}
	// The raft log was opened and must be closed again: New on the same
	// data dir works at once (bolt would wait for the file lock).
	cfg.Cluster.RaftPort = 0
	start := time.Now()
	c, err := New(Options{Config: cfg, FSM: newKV(), Logger: testLogger("n1")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("New took %v: the first one left the raft log locked", d)
	}
	if _, err := New(Options{Config: testConfig(t, "", 1), FSM: newKV()}); err == nil {
		t.Fatal("New accepted an empty node name")
	}
}

func TestBootstrapExpectThree(t *testing.T) {
	tc := newTestCluster(t)
	n1 := tc.add("n1", 3)
	n2 := tc.add("n2", 3, n1.c.Self().Addr)
	waitFor(t, 5*time.Second, "n1 to see n2", func() bool { _, ok := n1.c.Member("n2"); return ok })
	for _, n := range []*testNode{n1, n2} {
		if _, ok := n.c.Leader(); ok || n.c.raft.LastIndex() != 0 {
			t.Fatalf("%s bootstrapped with 2 of 3 expected servers", n.name)
		}
	}
	start := time.Now()
	n3 := tc.add("n3", 3, n1.c.Self().Addr)
	leader := tc.leader(10 * time.Second)
	t.Logf("bootstrap_expect=3: leader %s elected %v after the third node started", leader.name, time.Since(start))
	for _, n := range tc.running() {
		waitServers(t, n, 5*time.Second, names(n1, n2, n3), nil)
		waitFor(t, 2*time.Second, n.name+" healthy", n.c.Healthy)
	}

	// A follower forwards to the leader.
	f := tc.followers(leader)[0]
	before := tc.forwards.Load()
	if got := apply(t, f, "set k=v"); got != "v" {
		t.Fatalf("forwarded apply answered %q", got)
	}
	if tc.forwards.Load() == before {
		t.Fatal("the follower did not forward")
	}
	waitValue(t, 2*time.Second, "k", "v", n1, n2, n3)
	// An FSM error comes back through forwarding as the error.
	if _, err := f.c.Apply(ctxT(t, 2*time.Second), []byte("fail from a follower")); !errors.Is(err, errRejected) {
		t.Fatalf("forwarded FSM error came back as %v", err)
	}
	// ApplyLocal refuses on a follower.
	if _, err := f.c.ApplyLocal(ctxT(t, time.Second), []byte("set x=y")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ApplyLocal on a follower: %v", err)
	}

	// Replication: time until an entry applied through a follower is in
	// every FSM.
	var lat []time.Duration
	for i := range 20 {
		k := "r" + strconv.Itoa(i)
		start := time.Now()
		apply(t, tc.followers(leader)[i%2], "set "+k+"=x")
		for _, n := range tc.running() {
			for {
				if _, ok := n.fsm.get(k); ok {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("%s never applied %s", n.name, k)
				}
				time.Sleep(time.Millisecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	t.Logf("apply through a follower until on all 3 FSMs: p50 %v p99 %v", percentile(lat, 0.5), percentile(lat, 0.99))
	for _, n := range tc.running() {
		if g := gauge(t, n.reg, "castmesh_cluster_members", "state", "alive"); g != 3 {
			t.Errorf("%s: castmesh_cluster_members{alive} = %v", n.name, g)
		}
	}
}

func TestJoinExistingClusterNoSplitBrain(t *testing.T) {
	tc := newTestCluster(t)
	n1 := tc.add("n1", 1)
	if _, err := n1.c.WaitForLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	n2 := tc.add("n2", 1, n1.c.Self().Addr)
	n3 := tc.add("n3", 1, n1.c.Self().Addr)
	leader := tc.leader(10 * time.Second)
	if leader != n1 {
		t.Fatalf("leader is %s, want n1", leader.name)
	}
	waitServers(t, n1, 5*time.Second, names(n1, n2, n3), nil)
	for _, n := range tc.running() {
		if n != n1 && n.c.IsLeader() {
			t.Fatalf("%s is a leader too", n.name)
		}
		waitServers(t, n, 5*time.Second, names(n1, n2, n3), nil)
	}
	apply(t, n3, "set j=1")
	waitValue(t, 2*time.Second, "j", "1", n1, n2, n3)
}

func TestJoinTargetDownDoesNotBootstrap(t *testing.T) {
	// A port for n1 that is free now; n2 is told to join it before n1 exists.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tc := newTestCluster(t)
	n2 := tc.add("n2", 1, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	waitFor(t, 5*time.Second, "n2 to retry its join", func() bool { return n2.c.joinTries.Load() >= 2 })
	if n2.c.hasState.Load() || n2.c.raft.LastIndex() != 0 {
		t.Fatal("n2 bootstrapped alone although its join target was unreachable")
	}

	cfg := testConfig(t, "n1", 1)
	cfg.Cluster.GossipPort = port
	n1 := &testNode{name: "n1", cfg: cfg}
	tc.mu.Lock()
	tc.nodes = append(tc.nodes, n1)
	tc.mu.Unlock()
	tc.start(n1)
	if leader := tc.leader(10 * time.Second); leader != n1 {
		t.Fatalf("leader is %s, want n1", leader.name)
	}
	waitServers(t, n1, 10*time.Second, names(n1, n2), nil)
	waitServers(t, n2, 5*time.Second, names(n1, n2), nil)
}

// threeNodes starts n1..n3 with bootstrap_expect 3 and waits for a leader.
func threeNodes(t *testing.T) (*testCluster, []*testNode) {
	tc := newTestCluster(t)
	n1 := tc.add("n1", 3)
	n2 := tc.add("n2", 3, n1.c.Self().Addr)
	n3 := tc.add("n3", 3, n1.c.Self().Addr)
	tc.leader(10 * time.Second)
	for _, n := range tc.running() {
		waitServers(t, n, 5*time.Second, names(n1, n2, n3), nil)
	}
	return tc, []*testNode{n1, n2, n3}
}

// pinPorts makes n's next start reuse the ports it has now.
func pinPorts(t *testing.T, n *testNode) {
	self := n.c.Self()
	n.cfg.Cluster.GossipPort = portOf(t, self.Addr)
	n.cfg.Cluster.RaftPort = portOf(t, self.Meta.Raft)
}

func portOf(t *testing.T, hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestLeaderCrashFailoverAndRestart(t *testing.T) {
	tc, nodes := threeNodes(t)
	apply(t, nodes[0], "set before=1")
	waitValue(t, 2*time.Second, "before", "1", nodes...)

	// Crash the leader five times over (restarting it on its own ports in
	// between), measuring the time until a survivor commits again.
	var failovers []time.Duration
	for round := range 5 {
		old := tc.leader(10 * time.Second)
		pinPorts(t, old)
		survivor := tc.followers(old)[0]
		start := time.Now()
		tc.stop(old)
		k := "after" + strconv.Itoa(round)
		if got := apply(t, survivor, "set "+k+"=1"); got != "1" {
			t.Fatalf("apply after failover answered %q", got)
		}
		failovers = append(failovers, time.Since(start))
		leader := tc.leader(5 * time.Second)
		if leader == old {
			t.Fatal("crashed node is leader")
		}

		// Restart on the same data dir and ports: it rejoins and catches up
		// with what was committed while it was down.
		tc.start(old)
		waitValue(t, 15*time.Second, k, "1", old)
		waitValue(t, 2*time.Second, "before", "1", old)
		if old.c.IsLeader() && leader.c.IsLeader() {
			t.Fatal("two leaders")
		}
		waitFor(t, 5*time.Second, old.name+" alive on the leader", func() bool {
			m, ok := tc.leader(5 * time.Second).c.Member(old.name)
			return ok && m.State == StateAlive
		})
	}
	t.Logf("leader crash → next commit on a survivor: %v (p50 %v, max %v)", failovers, percentile(failovers, 0.5), slices.Max(failovers))
	if slices.Max(failovers) > 3*time.Second {
		t.Errorf("failover took %v", slices.Max(failovers))
	}

	// A follower that crashes and comes back on new ports: its raft
	// address is updated and it catches up.
	leader := tc.leader(5 * time.Second)
	f := tc.followers(leader)[0]
	oldRaft := f.c.Self().Meta.Raft
	tc.stop(f)
	apply(t, leader, "set moved=1")
	// A crashed member is dead in gossip but stays in raft: it may come back.
	waitFor(t, 5*time.Second, f.name+" dead on the leader", func() bool {
		m, ok := leader.c.Member(f.name)
		return ok && m.State == StateDead
	})
	if servers, _ := leader.c.Servers(); len(servers) != 3 {
		t.Fatalf("servers after a crash: %+v", servers)
	}
	f.cfg.Cluster.GossipPort, f.cfg.Cluster.RaftPort = 0, 0
	f.cfg.Cluster.Join = []string{leader.c.Self().Addr}
	tc.start(f)
	newRaft := f.c.Self().Meta.Raft
	if newRaft == oldRaft {
		t.Fatalf("the restart reused %s", oldRaft)
	}
	waitValue(t, 15*time.Second, "moved", "1", f)
	waitFor(t, 10*time.Second, "raft address of "+f.name+" updated", func() bool {
		servers, _ := leader.c.Servers()
		for _, s := range servers {
			if s.ID == f.name {
				return s.Address == newRaft
			}
		}
		return false
	})
	apply(t, f, "set last=1")
	waitValue(t, 2*time.Second, "last", "1", tc.running()...)
}

func TestGracefulLeave(t *testing.T) {
	tc, nodes := threeNodes(t)
	leader := tc.leader(5 * time.Second)
	f := tc.followers(leader)[0]

	// A follower leaves: removed from raft, "left" in gossip.
	tc.mu.Lock()
	fc := f.c
	f.c = nil
	tc.mu.Unlock()
	if err := fc.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != f {
			rest = append(rest, n)
		}
	}
	for _, n := range rest {
		waitServers(t, n, 5*time.Second, names(rest...), nil)
		waitFor(t, 5*time.Second, f.name+" left on "+n.name, func() bool {
			m, ok := n.c.Member(f.name)
			return ok && m.State == StateLeft
		})
	}
	if g := gauge(t, leader.reg, "castmesh_cluster_members", "state", "left"); g != 1 {
		t.Errorf("castmesh_cluster_members{left} = %v", g)
	}

	// The leader leaves: it hands leadership over first, so the last node
	// carries on alone.
	var last *testNode
	for _, n := range rest {
		if n != leader {
			last = n
		}
	}
	tc.mu.Lock()
	lc := leader.c
	leader.c = nil
	tc.mu.Unlock()
	start := time.Now()
	if err := lc.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("leader leave: %v", err)
	}
	t.Logf("leader leave took %v", time.Since(start))
	waitServers(t, last, 5*time.Second, []string{last.name}, nil)
	if got := tc.leader(5 * time.Second); got != last {
		t.Fatalf("leader is %s", got.name)
	}
	apply(t, last, "set alone=1")
}

func TestSixNodesFiveVoters(t *testing.T) {
	tc := newTestCluster(t)
	n1 := tc.add("n1", 1)
	if _, err := n1.c.WaitForLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	all := []*testNode{n1}
	for i := 2; i <= 6; i++ {
		all = append(all, tc.add("n"+strconv.Itoa(i), 1, n1.c.Self().Addr))
	}
	var voters, nonvoters []string
	waitFor(t, 20*time.Second, "6 servers in the configuration", func() bool {
		servers, err := n1.c.Servers()
		if err != nil || len(servers) != 6 {
			return false
		}
		voters, nonvoters = nil, nil
		for _, s := range servers {
			if s.Voter {
				voters = append(voters, s.ID)
			} else {
				nonvoters = append(nonvoters, s.ID)
			}
		}
		return true
	})
	if len(voters) != 5 || len(nonvoters) != 1 {
		t.Fatalf("voters %v, non-voters %v", voters, nonvoters)
	}
	apply(t, all[5], "set six=1")
	waitValue(t, 5*time.Second, "six", "1", all...)

	// A voter leaves: the non-voter is promoted.
	leader := tc.leader(5 * time.Second)
	var leaving *testNode
	for _, n := range all {
		if n != leader && slices.Contains(voters, n.name) {
			leaving = n
			break
		}
	}
	tc.mu.Lock()
	lc := leaving.c
	leaving.c = nil
	tc.mu.Unlock()
	if err := lc.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, v := range voters {
		if v != leaving.name {
			want = append(want, v)
		}
	}
	waitServers(t, leader, 10*time.Second, append(want, nonvoters...), nil)
}

// TestProductionTimings measures elections, replication and failover with
// the default (production) timings, on loopback.
func TestProductionTimings(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: production timings")
	}
	tc := newTestCluster(t)
	add := func(name string, join ...string) *testNode {
		n := &testNode{name: name, cfg: testConfig(t, name, 3, join...)}
		n.cfg.Cluster.Timings = config.Timings{}
		tc.mu.Lock()
		tc.nodes = append(tc.nodes, n)
		tc.mu.Unlock()
		tc.start(n)
		return n
	}
	n1 := add("n1")
	add("n2", n1.c.Self().Addr)
	start := time.Now()
	add("n3", n1.c.Self().Addr)
	leader := tc.leader(10 * time.Second)
	t.Logf("production timings: leader elected %v after the third node started", time.Since(start))

	var lat []time.Duration
	for i := range 20 {
		k := "p" + strconv.Itoa(i)
		start := time.Now()
		apply(t, tc.followers(leader)[i%2], "set "+k+"=x")
		for _, n := range tc.running() {
			for {
				if _, ok := n.fsm.get(k); ok {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("%s never applied %s", n.name, k)
				}
				time.Sleep(time.Millisecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	t.Logf("production timings: apply through a follower until on all 3 FSMs: p50 %v p99 %v", percentile(lat, 0.5), percentile(lat, 0.99))

	var failovers []time.Duration
	for round := range 3 {
		old := tc.leader(10 * time.Second)
		pinPorts(t, old)
		survivor := tc.followers(old)[0]
		start := time.Now()
		tc.stop(old)
		k := "after" + strconv.Itoa(round)
		apply(t, survivor, "set "+k+"=1")
		failovers = append(failovers, time.Since(start))
		tc.start(old)
		waitValue(t, 20*time.Second, k, "1", old)
	}
	t.Logf("production timings: leader crash → next commit on a survivor: %v", failovers)
	if slices.Max(failovers) > 2*time.Second {
		t.Errorf("failover took %v", slices.Max(failovers))
	}
}

func TestGossipEncryption(t *testing.T) {
	key := "8T8lNL0eIB8X6HqpCzNWU2lmIm8jj2ig1YSJk4N6pnA=" // 32 bytes
	tc := newTestCluster(t)
	n1 := &testNode{name: "n1", cfg: testConfig(t, "n1", 1)}
	n1.cfg.Cluster.GossipKey = key
	n2 := &testNode{name: "n2", cfg: testConfig(t, "n2", 1)}
	n2.cfg.Cluster.GossipKey = key
	tc.nodes = append(tc.nodes, n1, n2)
	tc.start(n1)
	n2.cfg.Cluster.Join = []string{n1.c.Self().Addr}
	tc.start(n2)
	waitServers(t, n1, 10*time.Second, names(n1, n2), nil)

	// A node without the key cannot join.
	cfg := testConfig(t, "n3", 1, n1.c.Self().Addr)
	c, err := New(Options{Config: cfg, FSM: newKV(), Logger: testLogger("n3")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Join([]string{n1.c.Self().Addr}); err == nil || n != 0 {
		t.Fatalf("join without the key: contacted %d, err %v", n, err)
	}

	bad := testConfig(t, "n4", 1)
	bad.Cluster.GossipKey = "not base64"
	if _, err := New(Options{Config: bad, FSM: newKV()}); err == nil || !strings.Contains(err.Error(), "gossip_key") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestLogAdapters(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	l := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHCLog(l, "raft")
	h.Info("entering follower state", "servers", hclog.Fmt("%d servers", 3))
	h.Trace("too chatty")
	h.Warn("heartbeat timeout reached")
	newStdLogger(l, "memberlist").Printf("[ERR] memberlist: Failed to send ping: boom")
	newStdLogger(l, "memberlist").Printf("[DEBUG] memberlist: Stream connection")
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="entering follower state" component=raft servers="3 servers"`,
		`level=WARN msg="heartbeat timeout reached"`,
		`level=ERROR msg="Failed to send ping: boom" component=memberlist`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "too chatty") || strings.Contains(out, "Stream connection") {
		t.Errorf("trace/debug chatter shown at Debug:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
