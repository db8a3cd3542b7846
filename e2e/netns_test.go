package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netLab is a small network of test hosts (FACTS.md): a "switch"
// namespace holding a bridge, a namespace per node with a veth leg into
// it, and a leg from the test's own namespace so the test reaches every
// node. Addresses come from 198.18.0.0/15, reserved for benchmarking.
type netLab struct {
	t      testing.TB
	prefix string
	sw     string
}

// requireRoot skips (or, in CI, fails) when namespaces cannot be made.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CASTMESH_REQUIRE_ALL_TESTS") != "" {
			t.Fatal("network-namespace tests need root and CASTMESH_REQUIRE_ALL_TESTS is set")
		}
		t.Skip("network-namespace fault tests need root (ip netns); .ci/run runs them as root")
	}
	requireTool(t, "ip")
}

func newNetLab(t testing.TB) *netLab {
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	l := &netLab{t: t, prefix: "cm" + hex.EncodeToString(b)}
	l.sw = l.prefix + "sw"
	t.Cleanup(l.destroy)
	l.ip("netns", "add", l.sw)
	l.ip("-n", l.sw, "link", "set", "lo", "up")
	l.ip("-n", l.sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.sw, "link", "set", "br0", "up")
	// The test's own leg.
	host, peer := l.prefix+"h", l.prefix+"hs"
	l.ip("link", "add", host, "type", "veth", "peer", "name", peer)
	l.ip("link", "set", peer, "netns", l.sw)
	l.ip("-n", l.sw, "link", "set", peer, "master", "br0", "up")
	l.ip("addr", "add", "198.18.0.1/24", "dev", host)
	l.ip("link", "set", host, "up")
	return l
}

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addHost makes namespace <prefix>n<i> with address 198.18.0.<10+i>.
func (l *netLab) addHost(i int) (ns, addr string) {
	ns = fmt.Sprintf("%sn%d", l.prefix, i)
	leg, sw := ns+"a", ns+"s"
	addr = fmt.Sprintf("198.18.0.%d", 10+i)
	l.ip("netns", "add", ns)
	l.ip("-n", ns, "link", "set", "lo", "up")
	l.ip("link", "add", leg, "type", "veth", "peer", "name", sw)
	l.ip("link", "set", leg, "netns", ns)
	l.ip("link", "set", sw, "netns", l.sw)
	l.ip("-n", l.sw, "link", "set", sw, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", addr+"/24", "dev", leg)
	l.ip("-n", ns, "link", "set", leg, "up")
	return ns, addr
}

// cut disconnects host i from everyone; heal reconnects it.
func (l *netLab) cut(i int) {
	l.ip("-n", l.sw, "link", "set", fmt.Sprintf("%sn%ds", l.prefix, i), "down")
}
func (l *netLab) heal(i int) {
	l.ip("-n", l.sw, "link", "set", fmt.Sprintf("%sn%ds", l.prefix, i), "up")
}

func (l *netLab) destroy() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, l.prefix) {
			exec.Command("ip", "netns", "delete", name).Run()
		}
	}
	exec.Command("ip", "link", "delete", l.prefix+"h").Run()
}

// startNetCluster starts n castmeshd processes, each in its own namespace
// on the default ports.
func startNetCluster(t testing.TB, l *netLab, n int) *procCluster {
	root := t.TempDir()
	var procs []*proc
	for i := 1; i <= n; i++ {
		ns, addr := l.addHost(i)
		procs = append(procs, &proc{t: t, name: fmt.Sprintf("n%d", i), host: addr, netns: ns,
			dir: filepath.Join(root, fmt.Sprintf("n%d", i)), gossip: 7946, api: 8888, edge: 8080, ingest: 8000})
	}
	return launch(t, procs, func() int { return 8300 })
}

// healthInNS asks p for its health from inside its namespace, to reach a node that is cut off.
func healthInNS(p *proc) string {
	out, _ := exec.Command("ip", "netns", "exec", p.netns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", p.edgeURL()+"/health").Output()
	return string(out)
}

func TestPartitionedNodeRefusesViewersAndCatchesUp(t *testing.T) {
	l := newNetLab(t)
	requireTool(t, "curl")
	pc := startNetCluster(t, l, 3)
	src := newSourceOn(t, "198.18.0.1:0", 100<<10) // reachable from the namespaces
	srcURL := src.URL

	pullStream(t, pc.procs[0], srcURL+"/before.mp4", "before.mp4")
	for _, p := range pc.procs {
		waitEdge(t, p, "before.mp4", src.sum, 10*time.Second, pc)
	}

	// Cut the leader off: the two others elect a new leader and take writes.
	leader := pc.leader(pc.procs[0])
	if leader == nil {
		t.Fatal("no leader")
	}
	li := 0
	for i, p := range pc.procs {
		if p == leader {
			li = i
		}
	}
	l.cut(li + 1)
	var majority []*proc
	for _, p := range pc.procs {
		if p != leader {
			majority = append(majority, p)
		}
	}
	cutAt := time.Now()
	var last string
	waitFor(t, 10*time.Second, "a write on the majority side", func() bool {
		env, err := call(majority[0], "pullStream", "uri="+srcURL+"/during.mp4 localStreamName=during.mp4")
		last = fmt.Sprint(err, env.Description)
		return err == nil && env.Status == "SUCCESS"
	}, func() string { return "\nlast answer: " + last })
	t.Logf("majority committed %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	waitEdge(t, majority[1], "during.mp4", src.sum, 10*time.Second, pc)

	// The cut-off node has no leader and misses a stream: a load balancer
	// must stop sending it viewers.
	waitFor(t, 15*time.Second, "the cut-off node's health to turn 503", func() bool {
		return healthInNS(leader) == "503"
	}, pc.logs)

	l.heal(li + 1)
	waitEdge(t, leader, "during.mp4", src.sum, 20*time.Second, pc)
	pc.waitHealthy(20 * time.Second)
}
