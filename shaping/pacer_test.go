package shaping

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func newFakePacer(cfg PacerConfig) (*Pacer, *fakeClock) {
	clk := &fakeClock{}
	clk.t.Store(int64(time.Hour)) // not zero, to catch absolute-time mistakes
	return newPacer(cfg, clk), clk
}

// sample is bytes a simulated viewer got at a time.
type sample struct {
	t int64 // ns
	n int64
}

// viewer is a simulated viewer that always reads: it takes every byte the
// session allows as soon as it is allowed (what a handler blocked in Next
// does when the tick wakes it).
type viewer struct {
	s       *Session
	left    int64 // bytes still to send (the file size)
	log     []sample
	pacedAt int64 // when the boost was over
	grants  int
}

func (v *viewer) take(now int64) {
	for v.left > 0 {
		n := v.s.tryNext(v.left)
		if n == 0 {
			return
		}
		v.left -= n
		v.log = append(v.log, sample{now, n})
		v.grants++
	}
}

// bytesIn returns the bytes received in (from, to].
func (v *viewer) bytesIn(from, to int64) int64 {
	var sum int64
	for _, s := range v.log {
		if s.t > from && s.t <= to {
			sum += s.n
		}
	}
	return sum
}

// maxWindow returns the most bytes in any closed window [t, t+w] that
// starts at or after from.
func maxWindow(log []sample, from int64, w time.Duration) int64 {
	var best, sum int64
	j := 0
	for i := range log {
		if log[i].t < from {
			continue
		}
		if j < i {
			j = i
			sum = 0
		}
		for j < len(log) && log[j].t <= log[i].t+int64(w) {
			sum += log[j].n
			j++
		}
		best = max(best, sum)
		sum -= log[i].n
	}
	return best
}

// merge returns the samples of all viewers in time order.
func merge(vs []*viewer) []sample {
	var all []sample
	for _, v := range vs {
		all = append(all, v.log...)
	}
	slices.SortStableFunc(all, func(a, b sample) int { return int(a.t - b.t) })
	return all
}

// maxDrift returns how far (in bytes) the bytes a viewer got after pacedAt
// strayed from rate × time, just before and just after each grant from
// from on.
func maxDrift(v *viewer, rate float64, from int64) (behind, ahead float64) {
	var cum float64
	for _, s := range v.log {
		if s.t <= v.pacedAt {
			continue
		}
		if s.t < from {
			cum += float64(s.n)
			continue
		}
		want := rate * float64(s.t-v.pacedAt) / 1e9
		behind = max(behind, want-cum)
		cum += float64(s.n)
		ahead = max(ahead, cum-want)
	}
	return behind, ahead
}

func jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// run ticks the pacer for d with ticks of about tick (± jitter), letting
// every viewer take what it may after each tick.
func run(p *Pacer, clk *fakeClock, vs []*viewer, d, tick, jitter time.Duration, rng *rand.Rand) {
	end := clk.now() + int64(d)
	for clk.now() < end {
		step := tick
		if jitter > 0 {
			step += time.Duration(rng.Int64N(int64(2*jitter))) - jitter
		}
		clk.advance(step)
		p.tick(clk.now())
		for _, v := range vs {
			v.take(clk.now())
		}
	}
}

const kib = 1024

// TestPacerAccuracy is the target at small scale: sessions at
// 16 KiB/s after a 64 KiB boost, ticks with ±10 % jitter. The boost goes at
// once, each session's rate over 60 s is within ±1 % and no 1 s window
// exceeds 1.25 × the rate.
func TestPacerAccuracy(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 0)
	rng := rand.New(rand.NewPCG(1, 2))
	const rate, boost = 16 * kib, 64 * kib
	var vs []*viewer
	for i := range 100 {
		// Sessions join over the first second, between ticks.
		if i%5 == 0 {
			run(p, clk, vs, 50*time.Millisecond, 50*time.Millisecond, 5*time.Millisecond, rng)
		}
		clk.advance(time.Duration(rng.Int64N(int64(10 * time.Millisecond))))
		v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: boost}, 0), left: 1 << 40}
		v.take(clk.now())
		if got := v.bytesIn(0, clk.now()); got != boost {
			t.Fatalf("session %d: %d bytes at once, want the %d boost", i, got, boost)
		}
		v.pacedAt = clk.now()
		vs = append(vs, v)
	}
	run(p, clk, vs, 62*time.Second, 50*time.Millisecond, 5*time.Millisecond, rng)
	worstRate, worstWindow := 0.0, 0.0
	for i, v := range vs {
		got := float64(v.bytesIn(v.pacedAt, v.pacedAt+int64(60*time.Second))) / 60
		errRate := got/rate - 1
		if math.Abs(errRate) > 0.01 {
			t.Errorf("session %d: %.1f B/s over 60 s, want %d ±1 %%", i, got, rate)
		}
		win := float64(maxWindow(v.log, v.pacedAt+1, time.Second)) / rate
		if win > 1.25 {
			t.Errorf("session %d: a 1 s window carries %.3f × the rate", i, win)
		}
		// Centred: at most half a chunk ahead of rate × time (and half a
		// tick), and behind by at most that and a grant that came a tick
		// late after one that came early; once all have joined (while
		// they joined, ticks were late).
		c := 0.22 * rate
		if behind, ahead := maxDrift(v, rate, v.pacedAt+int64(2*time.Second)); behind > c/2+0.06*rate || ahead > c/2+0.03*rate {
			t.Errorf("session %d: up to %.0f bytes behind and %.0f ahead of the rate", i, behind, ahead)
		}
		worstRate = max(worstRate, math.Abs(errRate))
		worstWindow = max(worstWindow, win)
		// About five grants a second (ChunkPeriod 200 ms).
		if perSec := float64(v.grants-1) / 62; perSec < 4 || perSec > 6 {
			t.Errorf("session %d: %.1f grants a second", i, perSec)
		}
	}
	t.Logf("worst rate error %.3f %%, worst 1 s window %.3f × rate", 100*worstRate, worstWindow)
}

// TestPacerAccuracyRates checks other rates and tick settings for the
// exact long-run rate (the chunk bounds change the grant sizes).
func TestPacerAccuracyRates(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		cfg  PacerConfig
	}{
		{100, PacerConfig{}},    // below MinChunk a second
		{1000, PacerConfig{}},   // MinChunk grants
		{125000, PacerConfig{}}, // 1 Mbps
		{50e6, PacerConfig{}},   // above MaxChunk per ChunkPeriod
		{16 * kib, PacerConfig{Tick: 100 * time.Millisecond, ChunkPeriod: 250 * time.Millisecond}},
		{16 * kib, PacerConfig{Tick: 10 * time.Millisecond, ChunkPeriod: 100 * time.Millisecond}},
	} {
		p, clk := newFakePacer(tc.cfg)
		g := p.NewGroup("g", 0)
		v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: tc.rate}, 0), left: 1 << 50}
		start := clk.now()
		tick := p.cfg.Tick
		run(p, clk, []*viewer{v}, 60*time.Second, tick, tick/10, rand.New(rand.NewPCG(3, 4)))
		elapsed := float64(clk.now()-start) / 1e9
		got := float64(v.bytesIn(0, clk.now())) / elapsed
		// Within one chunk of exact.
		slack := p.chunk(tc.rate) / elapsed / tc.rate
		if math.Abs(got/tc.rate-1) > max(slack, 0.001) {
			t.Errorf("rate %v %+v: got %.2f B/s", tc.rate, tc.cfg, got)
		}
	}
}

// TestPacerVhostCap is the cap target: 30 sessions wanting 3 × the
// vhost's cap share it within ±2 %, fairly (Jain ≥ 0.95), with no 1 s
// window above 1.1 × the cap.
func TestPacerVhostCap(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	const n, rate = 30, 40000.0
	capBps := n * rate / 3
	g := p.NewGroup("www", capBps)
	other := p.NewGroup("other", 0) // an uncapped neighbour is not held back
	rng := rand.New(rand.NewPCG(5, 6))
	var vs []*viewer
	for range n {
		v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: int64(2 * rate)}, 0), left: 1 << 40}
		v.take(clk.now())
		vs = append(vs, v)
	}
	free := &viewer{s: other.NewSession(Policy{Throttled: true, RateBytesPerSec: rate}, 0), left: 1 << 40}
	run(p, clk, append(slices.Clone(vs), free), 70*time.Second, 50*time.Millisecond, 5*time.Millisecond, rng)
	from := clk.now() - int64(60*time.Second)
	var total float64
	shares := make([]float64, n)
	for i, v := range vs {
		shares[i] = float64(v.bytesIn(from, clk.now()))
		total += shares[i]
	}
	mean := total / 60
	if math.Abs(mean/capBps-1) > 0.02 {
		t.Errorf("group mean %.0f B/s, cap %.0f", mean, capBps)
	}
	if j := jain(shares); j < 0.95 {
		t.Errorf("Jain fairness %.4f", j)
	}
	win := float64(maxWindow(merge(vs), from, time.Second)) / capBps
	if win > 1.1 {
		t.Errorf("a 1 s window carries %.3f × the cap", win)
	}
	if got := float64(free.bytesIn(from, clk.now())) / 60; math.Abs(got/rate-1) > 0.01 {
		t.Errorf("uncapped neighbour got %.0f B/s, want %.0f", got, rate)
	}
	t.Logf("mean %.4f × cap, Jain %.5f, worst 1 s window %.3f × cap", mean/capBps, jain(shares), win)

	// The boost was under the cap too: nothing above the cap in the first
	// seconds either.
	if w := float64(maxWindow(merge(vs), 0, time.Second)) / capBps; w > 1.1 {
		t.Errorf("with the boosts, a 1 s window carries %.3f × the cap", w)
	}
}

// TestPacerMaxMin: sessions that want less than the fair share get all
// they want; the others split the rest equally.
func TestPacerMaxMin(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	const capBps = 100000.0
	g := p.NewGroup("www", capBps)
	var vs []*viewer
	for range 2 {
		vs = append(vs, &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: 10000}, 0), left: 1 << 40})
	}
	for range 3 {
		vs = append(vs, &viewer{s: g.NewSession(Policy{}, 0), left: 1 << 40}) // unthrottled
	}
	vs = append(vs, &viewer{s: g.NewSession(Policy{}, 20000), left: 1 << 40}) // unthrottled, session cap
	run(p, clk, vs, 30*time.Second, 50*time.Millisecond, 0, nil)
	from, to := clk.now()-int64(20*time.Second), clk.now()
	want := []float64{10000, 10000, 20000, 20000, 20000, 20000}
	for i, v := range vs {
		got := float64(v.bytesIn(from, to)) / 20
		if math.Abs(got/want[i]-1) > 0.02 {
			t.Errorf("session %d: %.0f B/s, want %.0f", i, got, want[i])
		}
	}
	// Raise the cap: the unthrottled sessions take all of it.
	g.SetCap(200000)
	run(p, clk, vs, 30*time.Second, 50*time.Millisecond, 0, nil)
	from, to = clk.now()-int64(20*time.Second), clk.now()
	want = []float64{10000, 10000, 160000. / 3, 160000. / 3, 160000. / 3, 20000}
	for i, v := range vs {
		got := float64(v.bytesIn(from, to)) / 20
		if math.Abs(got/want[i]-1) > 0.02 {
			t.Errorf("after SetCap, session %d: %.0f B/s, want %.0f", i, got, want[i])
		}
	}
}

// TestPacerNodeCap: the node cap is shared max-min over all sessions, with
// each group's own cap still binding.
func TestPacerNodeCap(t *testing.T) {
	const nodeCap = 400000.0
	p, clk := newFakePacer(PacerConfig{NodeCap: nodeCap})
	a := p.NewGroup("a", 0)
	b := p.NewGroup("b", 50000) // its 4 sessions get 12,500 each
	var vs []*viewer
	for range 4 {
		vs = append(vs, &viewer{s: a.NewSession(Policy{}, 0), left: 1 << 40})
	}
	for range 4 {
		vs = append(vs, &viewer{s: b.NewSession(Policy{}, 0), left: 1 << 40})
	}
	// A paced session below its fair share gets its rate.
	vs = append(vs, &viewer{s: a.NewSession(Policy{Throttled: true, RateBytesPerSec: 30000}, 0), left: 1 << 40})
	run(p, clk, vs, 30*time.Second, 50*time.Millisecond, 5*time.Millisecond, rand.New(rand.NewPCG(7, 8)))
	from, to := clk.now()-int64(20*time.Second), clk.now()
	aShare := (nodeCap - 50000 - 30000) / 4
	want := []float64{aShare, aShare, aShare, aShare, 12500, 12500, 12500, 12500, 30000}
	var total float64
	for i, v := range vs {
		got := float64(v.bytesIn(from, to)) / 20
		total += got
		if math.Abs(got/want[i]-1) > 0.02 {
			t.Errorf("session %d: %.0f B/s, want %.0f", i, got, want[i])
		}
	}
	if math.Abs(total/nodeCap-1) > 0.02 {
		t.Errorf("node total %.0f B/s, cap %.0f", total, nodeCap)
	}
	if w := float64(maxWindow(merge(vs), from, time.Second)) / nodeCap; w > 1.1 {
		t.Errorf("a 1 s window carries %.3f × the node cap", w)
	}
	// No node cap: the uncapped group's sessions are not limited at all.
	p.SetNodeCap(0)
	if p.NodeCap() != 0 {
		t.Fatal("node cap not cleared")
	}
	if n := vs[0].s.tryNext(1 << 30); n != 1<<30 {
		t.Errorf("uncapped unthrottled session got %d", n)
	}
}

// TestPacerSessionCap: session_cap bounds a session, throttled or not, and
// its boost.
func TestPacerSessionCap(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 0)
	const sessionCap = 20000.0
	vs := []*viewer{
		{s: g.NewSession(Policy{}, sessionCap), left: 1 << 40},                                                            // unthrottled
		{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: 50000, BoostBytes: 100000}, sessionCap), left: 1 << 40}, // rate above the cap
		{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: 10000, BoostBytes: 50000}, sessionCap), left: 1 << 40},  // below the cap
	}
	for _, v := range vs {
		v.take(clk.now())
		if got := v.bytesIn(0, clk.now()); got != 0 {
			t.Errorf("%d bytes at once under a session cap", got)
		}
	}
	if vs[1].s.RateBytesPerSec() != sessionCap || !vs[1].s.Throttled() {
		t.Errorf("rate %v", vs[1].s.RateBytesPerSec())
	}
	run(p, clk, vs, 40*time.Second, 50*time.Millisecond, 0, nil)
	end := clk.now()
	// The third session's boost went at the cap: 50,000 B in 2.5 s, then
	// 10,000 B/s: 50,000 + 37.5 s × 10,000 in all.
	want := []float64{40 * sessionCap, 40 * sessionCap, 50000 + 37.5*10000}
	for i, v := range vs {
		got := float64(v.bytesIn(0, end))
		if math.Abs(got/want[i]-1) > 0.01 {
			t.Errorf("session %d: %.0f bytes in 40 s, want %.0f", i, got, want[i])
		}
		if w := float64(maxWindow(v.log, 0, time.Second)); w > 1.25*sessionCap {
			t.Errorf("session %d: a 1 s window carries %.0f bytes", i, w)
		}
	}
}

// TestPacerFreeSessions: an unthrottled session under no cap gets what it
// asks at once, without the scheduler and without allocating.
func TestPacerFreeSessions(t *testing.T) {
	p, _ := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 0)
	s := g.NewSession(Policy{}, 0)
	defer s.Close()
	ctx := context.Background()
	if n, err := s.Next(ctx, 1<<40); n != 1<<40 || err != nil {
		t.Fatalf("Next = %d, %v", n, err)
	}
	allocs := testing.AllocsPerRun(1000, func() { s.Next(ctx, 4096) })
	if allocs != 0 {
		t.Errorf("%v allocations per Next", allocs)
	}
	// A boost under no cap goes at once too, then pacing starts.
	th := g.NewSession(Policy{Throttled: true, RateBytesPerSec: 1000, BoostBytes: 5000}, 0)
	defer th.Close()
	if n := th.tryNext(3000); n != 3000 {
		t.Fatalf("first boost grant %d", n)
	}
	if n := th.tryNext(1 << 20); n != 2000 {
		t.Fatalf("rest of the boost %d", n)
	}
	if n := th.tryNext(1 << 20); n != 0 {
		t.Fatalf("%d bytes after the boost before any tick", n)
	}
	if st := g.Stats(); st.Sessions != 2 || st.Throttled != 1 || st.Granted != 1<<40+4096*1001+5000 {
		t.Errorf("stats %+v", st)
	}
}

// TestPacerBlockingNext drives real goroutines blocked in Next with the
// fake clock: each tick wakes exactly the sessions whose grant is due.
func TestPacerBlockingNext(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 0)
	const n, rate, size = 20, 10000.0, 30000
	var wg sync.WaitGroup
	got := make([]int64, n)
	sessions := make([]*Session, n)
	for i := range n {
		sessions[i] = g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: 5000}, 0)
		wg.Go(func() {
			s := sessions[i]
			for atomic.LoadInt64(&got[i]) < size {
				k, err := s.Next(context.Background(), size-atomic.LoadInt64(&got[i]))
				if err != nil {
					t.Error(err)
					return
				}
				atomic.AddInt64(&got[i], k)
			}
		})
	}
	// 5,000 boost + 25,000 at 10,000 B/s: done after 2.5 s of ticks.
	for tick := 0; tick < 200; tick++ {
		waitFor(t, func() bool { return allWaitingOrDone(sessions, got, size) })
		clk.advance(50 * time.Millisecond)
		p.tick(clk.now())
		// After 2.05 s of pacing (20,500 bytes at 10,000 B/s) each has the
		// boost and what was credited, less at most a chunk (2,200) and
		// half a tick (250) not yet due.
		if tick == 40 {
			waitFor(t, func() bool { return allWaitingOrDone(sessions, got, size) })
			first := atomic.LoadInt64(&got[0])
			for i := range n {
				if v := atomic.LoadInt64(&got[i]); v != first || v > 25500 || v < 25500-2200-250 {
					t.Errorf("session %d: %d bytes after 2 s", i, v)
				}
			}
		}
	}
	wg.Wait()
	for _, s := range sessions {
		s.Close()
	}
	if st := g.Stats(); st.Sessions != 0 || st.Granted != n*size {
		t.Errorf("stats %+v", st)
	}
}

func allWaitingOrDone(ss []*Session, got []int64, size int64) bool {
	for i, s := range ss {
		s.mu.Lock()
		w := s.waiting
		s.mu.Unlock()
		if !w && atomic.LoadInt64(&got[i]) < size {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestPacerEnds: a waiting Next returns on context end, session close and
// pacer close; a removed cap wakes a waiting unthrottled session.
func TestPacerEnds(t *testing.T) {
	p, _ := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 1000)
	pol := Policy{Throttled: true, RateBytesPerSec: 1}

	nextErr := func(s *Session, ctx context.Context) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := s.Next(ctx, 100)
			ch <- err
		}()
		waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.waiting })
		return ch
	}

	ctx, cancel := context.WithCancel(context.Background())
	s1 := g.NewSession(pol, 0)
	ch := nextErr(s1, ctx)
	cancel()
	if err := <-ch; !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}

	ch = nextErr(s1, context.Background())
	s1.Close()
	s1.Close()
	if err := <-ch; !errors.Is(err, ErrSessionClosed) {
		t.Errorf("close: %v", err)
	}
	if _, err := s1.Next(context.Background(), 1); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("after close: %v", err)
	}

	free := g.NewSession(Policy{}, 0) // unthrottled, but the group is capped
	ch2 := make(chan int64, 1)
	go func() {
		n, _ := free.Next(context.Background(), 1<<30)
		ch2 <- n
	}()
	waitFor(t, func() bool { free.mu.Lock(); defer free.mu.Unlock(); return free.waiting })
	g.SetCap(0)
	if n := <-ch2; n != 1<<30 {
		t.Errorf("after the cap was removed: %d", n)
	}
	free.Close()

	s2 := g.NewSession(pol, 0)
	ch = nextErr(s2, context.Background())
	p.Close()
	p.Close()
	if err := <-ch; !errors.Is(err, ErrPacerClosed) {
		t.Errorf("pacer close: %v", err)
	}
	if _, err := s2.Next(context.Background(), 1); !errors.Is(err, ErrPacerClosed) {
		t.Errorf("after pacer close: %v", err)
	}
	s2.Close()
	if len(p.groups) != 0 || len(g.sessions) != 0 {
		t.Errorf("leftovers: %d groups, %d sessions", len(p.groups), len(g.sessions))
	}
}

// TestPacerRealClock runs the scheduler goroutine on the real clock: it
// paces, goes idle without sessions and wakes for a new one. The bounds
// are loose on purpose (the machine may be busy).
func TestPacerRealClock(t *testing.T) {
	p := NewPacer(PacerConfig{Tick: 5 * time.Millisecond, ChunkPeriod: 10 * time.Millisecond})
	defer p.Close()
	g := p.NewGroup("www", 0)
	for round := range 2 {
		const rate, boost = 100000.0, 2000
		s := g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: boost}, 0)
		start := time.Now()
		var got int64
		for got < boost+10000 {
			n, err := s.Next(context.Background(), 1000)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		elapsed := time.Since(start)
		s.Close()
		// 10,000 bytes at 100,000 B/s take 100 ms, less a chunk.
		if elapsed < 80*time.Millisecond {
			t.Errorf("round %d: %d bytes in %v: faster than the rate", round, got, elapsed)
		}
		waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.groups) == 0 })
		time.Sleep(20 * time.Millisecond) // let the scheduler go idle
	}
}

func TestWaterLevel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var buf []float64
	for trial := range 2000 {
		n := 1 + rng.IntN(50)
		d := make([]float64, n)
		var sum float64
		for i := range d {
			switch trial % 3 {
			case 0: // few distinct demands
				d[i] = float64(1+rng.IntN(3)) * 100
			default:
				d[i] = rng.Float64() * 1000
			}
			sum += d[i]
		}
		budget := rng.Float64() * sum * 1.2
		level := waterLevel(d, budget, &buf)
		if budget >= sum {
			if !math.IsInf(level, 1) {
				t.Fatalf("budget %v covers %v but level %v", budget, sum, level)
			}
			continue
		}
		var got float64
		for _, x := range d {
			got += min(x, level)
		}
		if math.Abs(got-budget) > 1e-6*budget {
			t.Fatalf("demands %v budget %v: level %v gives %v", d, budget, level, got)
		}
	}
	if l := waterLevel([]float64{5, 5}, 0, &buf); l != 0 {
		t.Errorf("zero budget: %v", l)
	}
	if l := waterLevel(nil, 10, &buf); !math.IsInf(l, 1) {
		t.Errorf("no demands: %v", l)
	}
}

// binsFrom returns the bytes of each whole second [from+k s, from+(k+1) s)
// up to to: the 1 s windows a viewer measures from its start.
func binsFrom(log []sample, from, to int64) []int64 {
	bins := make([]int64, (to-from)/int64(time.Second))
	for _, s := range log {
		if s.t < from {
			continue
		}
		if k := (s.t - from) / int64(time.Second); k < int64(len(bins)) {
			bins[k] += s.n
		}
	}
	return bins
}

// TestPacerGrantBudget: with more sessions than MaxGrantsPerSec allows at
// ChunkPeriod, grants come less often (here once a second, as nginx's
// limit_rate), the rate stays exact, and each second from a viewer's start
// carries the rate's bytes, also while the period changes as sessions come
// and go (a session takes a new period up between its seconds).
func TestPacerGrantBudget(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{MaxGrantsPerSec: 1000})
	g := p.NewGroup("www", 0)
	const n, rate = 2000, 16 * kib
	rng := rand.New(rand.NewPCG(11, 12))
	var vs []*viewer
	for i := range n {
		if i%100 == 0 {
			run(p, clk, vs, 50*time.Millisecond, 50*time.Millisecond, 2*time.Millisecond, rng)
		}
		v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: 64 * kib}, 0), left: 1 << 40}
		v.take(clk.now())
		v.pacedAt = clk.now()
		vs = append(vs, v)
	}
	run(p, clk, vs, 62*time.Second, 50*time.Millisecond, 2*time.Millisecond, rng)
	if p.period.load() != 1 {
		t.Fatalf("period %v s, want 1", p.period.load())
	}
	for i, v := range vs {
		// Over 60 s, however the measurement lines up with the grants.
		for _, extra := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond} {
			d := 60*time.Second + extra
			got := float64(v.bytesIn(v.pacedAt, v.pacedAt+int64(d))) / d.Seconds()
			if math.Abs(got/rate-1) > 0.01 {
				t.Fatalf("session %d: %.1f B/s over %v, want %d ±1 %%", i, got, d, rate)
			}
		}
		// Sessions that began when the period was shorter too: the grid
		// followed the period, between the session's seconds.
		if behind, ahead := maxDrift(v, rate, v.pacedAt+int64(10*time.Second)); behind > 0.56*rate || ahead > 0.53*rate {
			t.Fatalf("session %d: up to %.0f bytes behind and %.0f ahead of the rate", i, behind, ahead)
		}
		// Every second from the end of the boost, the period growing from
		// ChunkPeriod to 1 s included: the rate's bytes, give or take half
		// a ChunkPeriod grant where the grid changed and the half tick by
		// which a grant may come early or late.
		for k, b := range binsFrom(v.log, v.pacedAt+1, v.pacedAt+int64(60*time.Second)) {
			if float64(b) > 1.15*rate || (k > 0 && float64(b) < 0.85*rate) {
				t.Fatalf("session %d: second %d from its start carries %.3f × the rate", i, k, float64(b)/rate)
			}
		}
		late := len(v.log) - len(binsFrom(v.log, 0, v.pacedAt+int64(2*time.Second)))
		_ = late
		var after int
		for _, s := range v.log {
			if s.t > v.pacedAt+int64(2*time.Second) {
				after++
			}
		}
		if perSec := float64(after) / 60; perSec < 0.95 || perSec > 1.05 {
			t.Fatalf("session %d: %.2f grants a second", i, perSec)
		}
	}
	// Fewer sessions: back to ChunkPeriod, and no second bunches the
	// grants of both periods.
	for _, v := range vs[100:] {
		v.s.Close()
	}
	from := clk.now()
	run(p, clk, vs[:100], 5*time.Second, 50*time.Millisecond, 2*time.Millisecond, rng)
	if p.period.load() != p.chunkSec {
		t.Fatalf("period %v s with 100 sessions, want ChunkPeriod", p.period.load())
	}
	for i, v := range vs[:100] {
		start := v.pacedAt + 1 + (from-v.pacedAt)/int64(time.Second)*int64(time.Second) // the session's second when the others left
		for k, b := range binsFrom(v.log, start, clk.now()) {
			if float64(b) > 1.15*rate {
				t.Fatalf("session %d: second %d after the others left carries %.3f × the rate", i, k, float64(b)/rate)
			}
		}
		if w := float64(maxWindow(v.log, from+int64(2*time.Second), time.Second)) / rate; w > 1.2 {
			t.Fatalf("session %d: a 1 s window of %.3f × the rate back at ChunkPeriod", i, w)
		}
	}
}

// TestPacerCapManySessions: a vhost cap at 3 × demand over 2,000 sessions;
// the grant budget has them take turns, which keeps the group smooth.
func TestPacerCapManySessions(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{MaxGrantsPerSec: 10000})
	const n, rate = 2000, 16 * kib
	capBps := n * rate / 3.0
	g := p.NewGroup("www", capBps)
	var vs []*viewer
	for range n {
		v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: 64 * kib}, 0), left: 1 << 40}
		vs = append(vs, v)
	}
	run(p, clk, vs, 40*time.Second, 50*time.Millisecond, 5*time.Millisecond, rand.New(rand.NewPCG(13, 14)))
	if p.capTicks != 4 {
		t.Errorf("capTicks %v, want 4 (2,000 sessions at 10,000 grants/s)", p.capTicks)
	}
	from := clk.now() - int64(30*time.Second)
	shares := make([]float64, n)
	var total float64
	for i, v := range vs {
		shares[i] = float64(v.bytesIn(from, clk.now()))
		total += shares[i]
	}
	if mean := total / 30; math.Abs(mean/capBps-1) > 0.02 {
		t.Errorf("group mean %.0f B/s, cap %.0f", mean, capBps)
	}
	if j := jain(shares); j < 0.95 {
		t.Errorf("Jain fairness %.4f", j)
	}
	if w := float64(maxWindow(merge(vs), from, time.Second)) / capBps; w > 1.1 {
		t.Errorf("a 1 s window carries %.3f × the cap", w)
	}
}

// TestPacerSlowReader: a viewer that stops reading does not pile up more
// than a chunk and a tick, so it cannot burst when it reads again.
func TestPacerSlowReader(t *testing.T) {
	p, clk := newFakePacer(PacerConfig{})
	g := p.NewGroup("www", 0)
	const rate = 16 * kib
	v := &viewer{s: g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate}, 0), left: 1 << 40}
	run(p, clk, []*viewer{v}, 3*time.Second, 50*time.Millisecond, 0, nil)
	// Five seconds of ticks without reading.
	for range 100 {
		clk.advance(50 * time.Millisecond)
		p.tick(clk.now())
	}
	before := len(v.log)
	v.take(clk.now())
	burst := v.bytesIn(clk.now()-1, clk.now())
	if len(v.log) == before || float64(burst) > (0.22+0.05)*rate+1 {
		t.Errorf("after 5 s without reading: %d bytes at once, want at most a chunk and a tick (%.0f)", burst, 0.27*rate)
	}
	run(p, clk, []*viewer{v}, 10*time.Second, 50*time.Millisecond, 0, nil)
	if w := float64(maxWindow(v.log, clk.now()-int64(11*time.Second), time.Second)) / rate; w > 1.3 {
		t.Errorf("a 1 s window after the stall carries %.3f × the rate", w)
	}
}
