package streams

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/castmesh/castmesh/streams/livestamp"
)

// sharedLog applies every command to the FSMs of all the test's nodes at
// once, as raft would once it committed it. No node leads, so none moves
// a stream's origin on its own (failover).
type sharedLog struct {
	mu    sync.Mutex
	fsms  []*FSM
	index uint64
}

func (l *sharedLog) Apply(_ context.Context, cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	var out any
	for _, f := range l.fsms {
		out = f.Apply(&raft.Log{Index: l.index, Data: cmd})
	}
	if err, ok := out.(error); ok {
		return nil, err
	}
	return out.([]byte), nil
}

func (l *sharedLog) IsLeader() bool { return false }

// liveNodes are in-process Managers that relay from each other over real
// HTTP, each behind its own server (cut a node's peer links with
// servers[i].CloseClientConnections).
type liveNodes struct {
	managers []*Manager
	servers  []*httptest.Server
}

func (n *liveNodes) Peer(name string) (Peer, bool) {
	for i, m := range n.managers {
		if m.opts.Self == name {
			return Peer{Name: name, Alive: true, Replicates: true, StreamsURL: n.servers[i].URL + "/streams/"}, true
		}
	}
	return Peer{}, false
}

func (n *liveNodes) Peers() []Peer {
	var out []Peer
	for _, m := range n.managers {
		p, _ := n.Peer(m.opts.Self)
		out = append(out, p)
	}
	return out
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newLiveNodes(t *testing.T, count int) *liveNodes {
	n := &liveNodes{}
	log := &sharedLog{}
	for i := range count {
		name := "n" + strconv.Itoa(i+1)
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fsm := NewFSM()
		log.fsms = append(log.fsms, fsm)
		m := NewManager(Options{Self: name, Replicates: true, FSM: fsm, Store: store, Cluster: log, Peers: n,
			Logger: quietLog()})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := strings.TrimPrefix(r.URL.Path, "/streams/")
			from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
			m.ServeRelay(w, r, name, from)
		}))
		n.managers, n.servers = append(n.managers, m), append(n.servers, srv)
	}
	for _, m := range n.managers {
		m.Run(nil)
	}
	t.Cleanup(func() {
		for i, m := range n.managers {
			n.servers[i].CloseClientConnections()
			m.Close()
			n.servers[i].Close()
		}
	})
	return n
}

// stampedFeed is a source client feeding stamped frames to a node's ingest.
type stampedFeed struct {
	pw   *io.PipeWriter
	src  *livestamp.Source
	done chan error
}

func feedTo(t *testing.T, m *Manager, name string, first uint64) *stampedFeed {
	t.Helper()
	in, err := m.OpenIngest(context.Background(), name, "audio/mpeg", http.Header{"Ice-Name": {"test"}})
	if err != nil {
		t.Fatalf("%s: open ingest: %v", m.opts.Self, err)
	}
	pr, pw := io.Pipe()
	f := &stampedFeed{pw: pw, src: livestamp.NewSource(first), done: make(chan error, 1)}
	go func() { f.done <- in.Feed(context.Background(), pr, nil) }()
	t.Cleanup(func() { pw.Close() })
	return f
}

// frames writes n frames; the splitter holds the last unit back until the
// frame after it starts.
func (f *stampedFeed) frames(t *testing.T, n int) {
	t.Helper()
	var b []byte
	for range n {
		b = f.src.Frame(b[:0], time.Now())
		if _, err := f.pw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *stampedFeed) close(t *testing.T) {
	f.pw.Close()
	if err := <-f.done; err != nil {
		t.Fatalf("feed: %v", err)
	}
}

// stampViewer reads a node's relay and collects the frame counts it gets.
type stampViewer struct {
	mu     sync.Mutex
	counts []uint64
}

func watchStamps(t *testing.T, m *Manager, name string) *stampViewer {
	t.Helper()
	var v *LiveView
	waitUntil(t, name+" on "+m.opts.Self, func() bool {
		var err error
		v, err = m.OpenLive(name, 0)
		return err == nil
	})
	sv := &stampViewer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer v.Close()
		var r livestamp.Reader
		for {
			u, err := v.Next(ctx)
			if err != nil {
				return
			}
			r.Write(u.Data, func(s livestamp.Stamp) {
				sv.mu.Lock()
				sv.counts = append(sv.counts, s.Count)
				sv.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sv
}

// waitCount waits until the viewer got the frame numbered last.
func (sv *stampViewer) waitCount(t *testing.T, what string, last uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sv.mu.Lock()
		n := len(sv.counts)
		got := n > 0 && sv.counts[n-1] >= last
		sv.mu.Unlock()
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for frame %d; got %d frames", what, last, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exactly checks that the viewer got every frame from its first (at most
// firstBy) to last, each once, in order.
func (sv *stampViewer) exactly(t *testing.T, what string, firstBy, last uint64) {
	t.Helper()
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if len(sv.counts) == 0 || sv.counts[0] > firstBy {
		t.Fatalf("%s: first frame %v, want one by %d", what, sv.counts[:min(1, len(sv.counts))], firstBy)
	}
	first := sv.counts[0]
	want := first
	for i, c := range sv.counts {
		if c > last {
			break
		}
		if c != want {
			t.Fatalf("%s: frame %d is number %d, want %d (a %s)", what, i, c, want, map[bool]string{true: "duplicate", false: "gap"}[c < want])
		}
		want++
	}
	if want != last+1 {
		t.Fatalf("%s: got frames %d..%d, want up to %d", what, first, want-1, last)
	}
}

// A peer whose link to the origin is cut resumes where it stopped: every
// frame the origin still buffers arrives once, in order.
func TestPeerResumesAfterCutWithoutGapOrDuplicate(t *testing.T) {
	n := newLiveNodes(t, 2)
	origin, peer := n.managers[0], n.managers[1]
	feed := feedTo(t, origin, "live/cut.mp3", 0)
	feed.frames(t, 20)
	v := watchStamps(t, peer, "live/cut.mp3")
	for cut := range 3 {
		feed.frames(t, 40)
		v.waitCount(t, "before cut "+strconv.Itoa(cut), uint64(20+40*(cut+1)-8))
		n.servers[0].CloseClientConnections() // the peer's relay connection
		feed.frames(t, 40)                    // published while the peer is away
	}
	feed.frames(t, 40)
	v.waitCount(t, "after the cuts", 20+40*7-8)
	v.exactly(t, "peer viewer", 24, 20+40*7-8)
	feed.close(t)
}

// A pushed stream's source reconnects to another node: that node becomes
// the origin, the third node switches its upstream to it, and viewers on
// both see every frame once, in order, across the switch.
func TestSourceMovesToAnotherNodeAndPeersSwitchUpstream(t *testing.T) {
	n := newLiveNodes(t, 3)
	a, b, c := n.managers[0], n.managers[1], n.managers[2]
	const name = "live/move.mp3"
	feed := feedTo(t, a, name, 0)
	feed.frames(t, 10)
	vb, vc := watchStamps(t, b, name), watchStamps(t, c, name)
	feed.frames(t, 50)
	vb.waitCount(t, "b before the move", 50)
	vc.waitCount(t, "c before the move", 50)
	feed.close(t) // the last frames go out at the close
	vb.waitCount(t, "b", 59)
	vc.waitCount(t, "c", 59)

	// A second source while the first is connected is refused; now the
	// first is gone, the source may come back on b.
	feed2 := feedTo(t, b, name, 60)
	if s, _ := b.Stream(name); s.Origin != "n2" {
		t.Fatalf("origin after the source moved: %q, want n2", s.Origin)
	}
	if _, err := c.OpenIngest(context.Background(), name, "audio/mpeg", nil); err == nil {
		t.Fatal("a second source on a live mount was accepted")
	}
	feed2.frames(t, 60)
	vb.waitCount(t, "b after the move", 110)
	vc.waitCount(t, "c after the move", 110)
	vb.exactly(t, "b", 14, 110)
	vc.exactly(t, "c", 14, 110)
	waitUntil(t, "c to show b as its upstream", func() bool {
		for _, st := range c.Statuses() {
			if st.Name == name {
				return st.Upstream == "n2" && st.Current.State == StateLive
			}
		}
		return false
	})
	feed2.close(t)
}

func TestLiveMetricsPerStream(t *testing.T) {
	n := newLiveNodes(t, 2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newLiveCollector(n.managers[1]))
	feed := feedTo(t, n.managers[0], "live/m.mp3", 0)
	feed.frames(t, 10)
	v := watchStamps(t, n.managers[1], "live/m.mp3")
	feed.frames(t, 40)
	v.waitCount(t, "peer", 40)
	values := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != "live/m.mp3" {
				t.Fatalf("label %v", m.GetLabel())
			}
			values[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if values["castmesh_live_ingest_bytes_total"] < 40*417 || values["castmesh_live_viewers"] != 1 || values["castmesh_live_up"] != 1 ||
		values["castmesh_live_bitrate_bps"] < 100e3 {
		t.Fatalf("metrics %v", values)
	}
	for _, name := range []string{"castmesh_live_viewers_dropped_total", "castmesh_live_relay_lag_seconds"} {
		if _, ok := values[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	feed.close(t)
}
