package shaping

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Session.Next.
var (
	// ErrSessionClosed: Next was called on (or was waiting in) a closed
	// session.
	ErrSessionClosed = errors.New("shaping: session closed")
	// ErrPacerClosed: the Pacer was closed (the node is shutting down); a
	// paced session cannot get more bytes.
	ErrPacerClosed = errors.New("shaping: pacer closed")
)

// PacerConfig tunes a Pacer; zero fields take the defaults.
type PacerConfig struct {
	// Tick is how often the scheduler hands out bytes. Default 50 ms.
	Tick time.Duration
	// ChunkPeriod is how many seconds of its rate a paced session gets per
	// grant: a 16 KiB/s session gets ~3.5 KiB 4.5 times a second with the
	// default 220 ms. A grant goes on the tick nearest its time, so a
	// closed 1 s window holds at most m = ⌊(1 s + Tick)/ChunkPeriod⌋ + 1
	// grants and at most about m × ChunkPeriod + Tick of the rate: 1.15 ×
	// with the defaults, where 200 ms would give 1.25 ×. A longer period
	// means fewer wake-ups and writes, a shorter one smoother windows.
	ChunkPeriod time.Duration
	// MaxGrantsPerSec is the number of grants a second over all paced
	// sessions beyond which the pacer lengthens their period (to 1/4,
	// 1/3, 1/2 or 1 s, so that each second of a session holds whole
	// grants; a session takes a new period up between two of its
	// seconds) instead of granting more often. Each grant is a
	// wake-up and a write (a sendfile), and writes are what a paced node
	// spends its CPU on: 9,000 sessions at 16 KiB/s over loopback cost
	// 50 % of a core with 220 ms grants and 15 % with ~1 s grants (nginx:
	// ~10 %). Default 10,000: up to 2,200 paced sessions get ChunkPeriod,
	// 10,000 get 1 s, as nginx's limit_rate does; the rate stays exact
	// (within half a grant) and each second from a session's start
	// carries the rate's bytes, but sliding 1 s windows then reach 2 ×
	// the rate.
	// Negative: no bound, always ChunkPeriod. Sessions held back by a
	// binding cap are granted every Tick, or every few ticks by the same
	// bound, taking turns.
	MaxGrantsPerSec float64
	// MinChunk and MaxChunk bound a paced grant, in bytes. Defaults 512
	// and 1 MiB.
	MinChunk, MaxChunk int64
	// NodeCap is the node's traffic cap in bytes per second over all
	// groups (node_traffic_cap); 0 means none. See Pacer.SetNodeCap.
	NodeCap float64
}

const (
	defaultTick        = 50 * time.Millisecond
	defaultChunkPeriod = 220 * time.Millisecond
	defaultMinChunk    = 512
	defaultMaxChunk    = 1 << 20
	defaultMaxGrants   = 10000
	maxPeriod          = time.Second
)

func (c PacerConfig) withDefaults() PacerConfig {
	if c.Tick <= 0 {
		c.Tick = defaultTick
	}
	if c.ChunkPeriod <= 0 {
		c.ChunkPeriod = defaultChunkPeriod
	}
	if c.MinChunk <= 0 {
		c.MinChunk = defaultMinChunk
	}
	if c.MaxChunk <= 0 {
		c.MaxChunk = defaultMaxChunk
	}
	if c.MaxChunk < c.MinChunk {
		c.MaxChunk = c.MinChunk
	}
	if c.MaxGrantsPerSec == 0 {
		c.MaxGrantsPerSec = defaultMaxGrants
	}
	return c
}

// clock is the pacer's time source: monotonic nanoseconds.
type clock interface{ now() int64 }

type realClock struct{ base time.Time }

func (c realClock) now() int64 { return int64(time.Since(c.base)) }

// Pacer is a node's pacing scheduler. One goroutine wakes every Tick, hands
// each session the bytes its rate earned since the last tick (shared by
// max-min fairness where a group or node cap binds), and wakes the sessions
// whose allowance reached a chunk. Sessions never run timers of their own.
type Pacer struct {
	cfg      PacerConfig
	tickSec  float64
	chunkSec float64 // ChunkPeriod in seconds
	clk      clock
	nodeCap  atomicFloat

	kick chan struct{} // the scheduler is idle and a session arrived
	done chan struct{}
	wg   sync.WaitGroup

	closed atomic.Bool
	period atomicFloat // the grant period of paced sessions, s (ChunkPeriod or longer)

	mu       sync.Mutex // the group and session lists, scheduler state
	groups   []*Group   // groups with sessions
	lastTick int64
	paced    int       // sessions with a rate of their own (not free)
	capTicks float64   // ticks between grants of a session held back by a cap
	ticks    uint64    // scheduling rounds so far
	phases   uint64    // the phase of the next session
	ents     []entry   // per-tick scratch
	levels   []float64 // per-tick scratch for water levels
	sorted   []float64 // per-tick scratch for the sort fallback
}

// entry is one session's demand and allocation in a capped tick.
type entry struct {
	s    *Session
	d, a float64 // bytes wanted this tick, bytes given
}

// NewPacer starts a Pacer and its scheduler goroutine; Close stops it. The
// scheduler sleeps while there are no sessions.
func NewPacer(cfg PacerConfig) *Pacer {
	p := newPacer(cfg, realClock{base: time.Now()})
	p.wg.Add(1)
	go p.run()
	return p
}

// newPacer makes a Pacer without its goroutine; tests drive it with tick.
func newPacer(cfg PacerConfig, clk clock) *Pacer {
	cfg = cfg.withDefaults()
	p := &Pacer{
		cfg:      cfg,
		tickSec:  cfg.Tick.Seconds(),
		chunkSec: cfg.ChunkPeriod.Seconds(),
		clk:      clk,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	p.nodeCap.store(positive(cfg.NodeCap))
	p.lastTick = clk.now()
	p.period.store(p.chunkSec)
	p.capTicks = 1
	return p
}

// Close stops the scheduler. Sessions waiting in Next, and later calls of
// Next that would have to wait, return ErrPacerClosed. Close is idempotent.
func (p *Pacer) Close() {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	p.closed.Store(true)
	close(p.done)
	for _, g := range p.groups {
		for _, s := range g.sessions {
			s.signal()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// NodeCap returns the node's traffic cap in bytes per second (0: none).
func (p *Pacer) NodeCap() float64 { return p.nodeCap.load() }

// SetNodeCap changes the node's traffic cap (bytes per second, 0 = none);
// it applies from the next tick.
func (p *Pacer) SetNodeCap(bytesPerSec float64) {
	p.nodeCap.store(positive(bytesPerSec))
	p.mu.Lock()
	for _, g := range p.groups {
		g.wakeAllLocked()
	}
	p.mu.Unlock()
}

// NewGroup makes a group of sessions (a vhost) under capBytesPerSec
// (traffic_cap; 0 = none). A group needs no closing: it costs nothing while
// it has no sessions.
func (p *Pacer) NewGroup(name string, capBytesPerSec float64) *Group {
	g := &Group{p: p, name: name, idx: -1}
	g.cap.store(positive(capBytesPerSec))
	return g
}

func (p *Pacer) run() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			if p.tick(p.clk.now()) {
				continue
			}
			// No sessions: sleep until one arrives.
			t.Stop()
			select {
			case <-p.done:
				return
			case <-p.kick:
			}
			p.mu.Lock()
			p.lastTick = p.clk.now()
			p.mu.Unlock()
			t.Reset(p.cfg.Tick)
		}
	}
}

// tick runs one scheduling round at now and reports whether any session
// exists.
func (p *Pacer) tick(now int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	dt := now - p.lastTick
	if dt <= 0 {
		return len(p.groups) > 0
	}
	p.lastTick = now
	p.ticks++
	// A cap's budget covers the time since the last tick, but not more
	// than a few ticks: a scheduler that was starved does not release a
	// whole second of cap at once.
	capSec := min(float64(dt)/1e9, max(4*p.tickSec, 0.2))
	nodeCap := p.nodeCap.load()
	p.period.store(p.pacedPeriod(p.paced))
	ents := p.ents[:0]
	for _, g := range p.groups {
		gcap := g.cap.load()
		if gcap == 0 && nodeCap == 0 {
			for _, s := range g.sessions {
				if s.free {
					continue
				}
				s.mu.Lock()
				d := s.demandLocked(now, 0, false)
				s.grantLocked(now, d, false)
				s.mu.Unlock()
			}
			continue
		}
		// The most an unlimited session can take in a tick: the budget of
		// the tightest cap over it.
		burst := math.Inf(1)
		if gcap > 0 {
			burst = gcap * capSec
		}
		if nodeCap > 0 {
			burst = min(burst, nodeCap*capSec)
		}
		burst = max(burst, float64(p.cfg.MaxChunk))
		start := len(ents)
		for _, s := range g.sessions {
			s.mu.Lock()
			d := s.demandLocked(now, burst, true)
			s.mu.Unlock()
			ents = append(ents, entry{s: s, d: d, a: d})
		}
		if gcap > 0 {
			p.clip(ents[start:], gcap*capSec)
		}
	}
	if nodeCap > 0 {
		p.clip(ents, nodeCap*capSec)
	}
	contended := 0
	for i := range ents {
		if ents[i].a < ents[i].d*(1-1e-9) {
			contended++
		}
	}
	p.capTicks = math.Round(p.grantPeriod(contended, p.tickSec) / p.tickSec)
	for i := range ents {
		e := &ents[i]
		e.s.mu.Lock()
		e.s.grantLocked(now, e.a, e.a < e.d*(1-1e-9))
		e.s.mu.Unlock()
		e.s = nil // do not keep closed sessions alive in the scratch
	}
	p.ents = ents[:0]
	return len(p.groups) > 0
}

// clip lowers the allocations of ents to the max-min fair share of budget.
func (p *Pacer) clip(ents []entry, budget float64) {
	p.levels = p.levels[:0]
	for i := range ents {
		p.levels = append(p.levels, ents[i].a)
	}
	level := waterLevel(p.levels, budget, &p.sorted)
	if math.IsInf(level, 1) {
		return
	}
	for i := range ents {
		ents[i].a = min(ents[i].a, level)
	}
}

// pacedPeriods are the grant periods longer than ChunkPeriod a paced
// session may get: whole fractions of a second, so that each second of a
// session (counted from the end of its boost) holds whole grants, the same
// bytes every second.
var pacedPeriods = [...]float64{1.0 / 4, 1.0 / 3, 1.0 / 2, 1}

// pacedPeriod is the grant period of n paced sessions: ChunkPeriod, or the
// shortest of pacedPeriods that keeps them within MaxGrantsPerSec.
func (p *Pacer) pacedPeriod(n int) float64 {
	if p.cfg.MaxGrantsPerSec <= 0 {
		return p.chunkSec
	}
	per := float64(n) / p.cfg.MaxGrantsPerSec
	if per <= p.chunkSec {
		return p.chunkSec
	}
	for _, q := range pacedPeriods {
		if q >= per && q > p.chunkSec {
			return q
		}
	}
	return max(p.chunkSec, maxPeriod.Seconds())
}

// grantPeriod is how long n sessions wait between grants so that they make
// at most MaxGrantsPerSec grants a second together: base, or longer up to
// 1 s.
func (p *Pacer) grantPeriod(n int, base float64) float64 {
	if p.cfg.MaxGrantsPerSec <= 0 {
		return base
	}
	// In whole ticks, so that it changes seldom as sessions come and go.
	per := math.Ceil(float64(n)/p.cfg.MaxGrantsPerSec/p.tickSec) * p.tickSec
	return min(max(per, base), max(base, maxPeriod.Seconds()))
}

// chunk is the nominal grant of a session paced at rate (bytes/s).
func (p *Pacer) chunk(rate float64) float64 {
	return min(max(rate*p.period.load(), float64(p.cfg.MinChunk)), float64(p.cfg.MaxChunk))
}

// Group is the sessions of one vhost, under its traffic cap.
type Group struct {
	p    *Pacer
	name string
	cap  atomicFloat

	sessions []*Session // under p.mu
	idx      int        // in p.groups, -1 when not there; under p.mu

	active    atomic.Int64
	throttled atomic.Int64
	granted   atomic.Int64
}

// GroupStats are a group's counters, for metrics.
type GroupStats struct {
	Sessions  int64 // open sessions
	Throttled int64 // open sessions whose policy is throttled
	// Granted is the bytes Next allowed since the group was made. An
	// unthrottled session under no cap is allowed what it asks, so count
	// the bytes written for traffic metrics.
	Granted int64
}

// Name returns the name given to NewGroup.
func (g *Group) Name() string { return g.name }

// Cap returns the group's traffic cap in bytes per second (0: none).
func (g *Group) Cap() float64 { return g.cap.load() }

// SetCap changes the group's traffic cap (bytes per second, 0 = none); it
// applies from the next tick.
func (g *Group) SetCap(bytesPerSec float64) {
	g.cap.store(positive(bytesPerSec))
	g.p.mu.Lock()
	g.wakeAllLocked()
	g.p.mu.Unlock()
}

// Stats returns the group's counters.
func (g *Group) Stats() GroupStats {
	return GroupStats{Sessions: g.active.Load(), Throttled: g.throttled.Load(), Granted: g.granted.Load()}
}

// wakeAllLocked wakes the group's waiting sessions so that they look at a
// changed cap. p.mu is held.
func (g *Group) wakeAllLocked() {
	for _, s := range g.sessions {
		s.mu.Lock()
		if s.waiting {
			s.waiting = false
			s.signal()
		}
		s.mu.Unlock()
	}
}

// NewSession starts the pacing of one viewer under pol and sessionCap
// (bytes per second, session_cap; 0 = none). The session must be closed.
//
// A throttled session first gets pol.BoostBytes as fast as the caps allow,
// then pol.RateBytesPerSec (at most sessionCap). An unthrottled session
// gets sessionCap, or everything at once when there is no cap at all.
func (g *Group) NewSession(pol Policy, sessionCap float64) *Session {
	p := g.p
	s := &Session{
		g:         g,
		p:         p,
		idx:       -1,
		wake:      make(chan struct{}, 1),
		rate:      math.Inf(1),
		boostRate: math.Inf(1),
		throttled: pol.Throttled && pol.RateBytesPerSec > 0,
	}
	sessionCap = positive(sessionCap)
	if sessionCap > 0 {
		s.rate, s.boostRate = sessionCap, sessionCap
	}
	if s.throttled {
		s.rate = min(s.rate, pol.RateBytesPerSec)
		s.boostLeft = float64(max(pol.BoostBytes, 0))
	}
	s.free = math.IsInf(s.rate, 1) && s.boostLeft == 0
	s.nextAt = -1
	s.accruedAt = p.clk.now()

	g.active.Add(1)
	if s.throttled {
		g.throttled.Add(1)
	}
	p.mu.Lock()
	s.phase = p.phases
	p.phases++
	s.setThresholdLocked(math.Inf(1), false) // s.mu not needed: s is not shared yet
	if !s.free {
		p.paced++
	}
	s.idx = len(g.sessions)
	g.sessions = append(g.sessions, s)
	wasIdle := len(p.groups) == 0
	if g.idx < 0 {
		g.idx = len(p.groups)
		p.groups = append(p.groups, g)
	}
	p.mu.Unlock()
	if wasIdle {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return s
}

// Session is one viewer's allowance. Next is called by one goroutine at a
// time (the one serving the viewer); Close may be called from any.
type Session struct {
	g *Group
	p *Pacer

	// Fixed at creation.
	free      bool    // unthrottled and no session cap: only group/node caps limit it
	throttled bool    // the policy's Throttled
	rate      float64 // bytes/s after the boost; +Inf: unlimited
	boostRate float64 // bytes/s during the boost (the session cap); +Inf: unlimited
	wake      chan struct{}

	idx   int    // in g.sessions, -1 once closed; under p.mu
	phase uint64 // which of every capTicks ticks grants it under a binding cap

	mu sync.Mutex
	// The context whose end wakes a waiting Next (see watchLocked).
	watchedDone <-chan struct{}
	unwatch     func() bool
	boostLeft   float64 // boost bytes not yet handed out
	credit      float64 // bytes handed out by the scheduler, not yet taken by Next
	accruedAt   int64   // the time up to which the rate has been credited
	thr         float64 // Next returns bytes once credit reaches this (or its max)
	accrued     float64 // bytes credited since pacing (after the boost) started
	nextAt      float64 // the accrued figure at which the next paced grant is due; < 0: not placed yet
	gridChunk   float64 // the chunk the grid was placed for
	gridOrigin  float64 // the accrued figure the grid counts its chunks from
	advance     float64 // credit still to give ahead of the rate (< 0: to hold back), see placeGridLocked
	base        float64 // this tick's accrual at the rate, before advance and bounds
	waiting     bool    // Next is blocked
	want        int64   // the max of the blocked Next
	closed      bool
}

// Next blocks until the session may send some bytes and returns how many
// (1 to max). The caller writes exactly that many (io.CopyN from an
// *os.File to an http.ResponseWriter keeps sendfile) and calls Next again.
// The boost comes first, as fast as the caps allow; an unthrottled session
// under no cap gets max at once without touching the scheduler. Next
// returns ctx.Err() when ctx ends, ErrSessionClosed or ErrPacerClosed.
func (s *Session) Next(ctx context.Context, max int64) (int64, error) {
	if max <= 0 {
		return 0, nil
	}
	if s.free && !s.capped() {
		s.g.granted.Add(max)
		return max, nil
	}
	for {
		if s.free && !s.capped() {
			// A cap was removed while this session waited.
			s.g.granted.Add(max)
			return max, nil
		}
		s.mu.Lock()
		if s.closed {
			s.waiting = false
			s.mu.Unlock()
			return 0, ErrSessionClosed
		}
		if n := s.takeLocked(max); n > 0 {
			s.waiting = false
			s.mu.Unlock()
			s.g.granted.Add(n)
			return n, nil
		}
		if err := ctx.Err(); err != nil {
			s.waiting = false
			s.mu.Unlock()
			return 0, err
		}
		if s.p.closed.Load() {
			s.waiting = false
			s.mu.Unlock()
			return 0, ErrPacerClosed
		}
		s.waiting, s.want = true, max
		s.watchLocked(ctx)
		s.mu.Unlock()
		// One channel, one receiver: the scheduler, Close, the pacer's
		// Close, a cap change and the end of ctx all signal it. Waking
		// 10,000 sessions a few times a second makes a select over shared
		// channels (ctx.Done, a pacer-wide done) measurably dearer.
		<-s.wake
	}
}

// watchLocked arranges for the end of ctx to wake a waiting Next. The
// registration is kept while Next is called with the same context, as a
// handler does, so it costs one context.AfterFunc per session.
func (s *Session) watchLocked(ctx context.Context) {
	done := ctx.Done()
	if done == nil || done == s.watchedDone {
		return
	}
	if s.unwatch != nil {
		s.unwatch()
	}
	s.watchedDone = done
	s.unwatch = context.AfterFunc(ctx, s.signal)
}

// tryNext is Next without waiting: 0 when nothing may be sent now.
func (s *Session) tryNext(max int64) int64 {
	if max <= 0 {
		return 0
	}
	if s.free && !s.capped() {
		s.g.granted.Add(max)
		return max
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	n := s.takeLocked(max)
	s.g.granted.Add(n)
	return n
}

// CopyN copies n bytes from src to dst at the session's pace: Next, then
// io.CopyN of the grant, until n bytes are copied. With an *os.File src and
// an http.ResponseWriter dst every chunk goes by sendfile. It returns the
// bytes copied and the first error (io.EOF if src ended early).
func (s *Session) CopyN(ctx context.Context, dst io.Writer, src io.Reader, n int64) (int64, error) {
	var written int64
	for written < n {
		grant, err := s.Next(ctx, n-written)
		if err != nil {
			return written, err
		}
		c, err := io.CopyN(dst, src, grant)
		written += c
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// Close ends the session: it leaves its group and a waiting Next returns
// ErrSessionClosed. Close is idempotent.
func (s *Session) Close() {
	p, g := s.p, s.g
	p.mu.Lock()
	if s.idx < 0 {
		p.mu.Unlock()
		return
	}
	last := len(g.sessions) - 1
	g.sessions[s.idx] = g.sessions[last]
	g.sessions[s.idx].idx = s.idx
	g.sessions[last] = nil
	g.sessions = g.sessions[:last]
	s.idx = -1
	if !s.free {
		p.paced--
	}
	if len(g.sessions) == 0 {
		lg := len(p.groups) - 1
		p.groups[g.idx] = p.groups[lg]
		p.groups[g.idx].idx = g.idx
		p.groups[lg] = nil
		p.groups = p.groups[:lg]
		g.idx = -1
	}
	p.mu.Unlock()

	s.mu.Lock()
	s.closed = true
	if s.unwatch != nil {
		s.unwatch()
		s.unwatch, s.watchedDone = nil, nil
	}
	s.mu.Unlock()
	s.signal()
	g.active.Add(-1)
	if s.throttled {
		g.throttled.Add(-1)
	}
}

// Throttled reports whether the session's policy is throttled.
func (s *Session) Throttled() bool { return s.throttled }

// RateBytesPerSec is the session's pacing rate after its boost (the
// policy's rate under the session cap); +Inf when nothing but group and
// node caps limit it.
func (s *Session) RateBytesPerSec() float64 { return s.rate }

func (s *Session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// capped reports whether a group or node cap is set.
func (s *Session) capped() bool { return s.g.cap.load() > 0 || s.p.nodeCap.load() > 0 }

// takeLocked hands out bytes to Next: the boost directly when nothing caps
// it, else what the scheduler has credited once it reaches the threshold.
func (s *Session) takeLocked(limit int64) int64 {
	if s.boostLeft > 0 && math.IsInf(s.boostRate, 1) && !s.capped() {
		n := int64(math.Ceil(s.boostLeft))
		n = min(n, limit)
		s.boostLeft -= float64(n)
		if s.boostLeft <= 0 {
			// The boost is over: pacing starts now.
			s.boostLeft = 0
			s.accruedAt = s.p.clk.now()
			s.accrued, s.nextAt = 0, -1
			s.thr = math.Inf(1)
		}
		return n
	}
	thr := min(s.thr, float64(limit))
	if s.credit < thr || s.credit < 1 {
		return 0
	}
	n := min(int64(s.credit), limit)
	s.credit -= float64(n)
	if s.credit < 1 && s.boostLeft == 0 && !math.IsInf(s.rate, 1) && s.thr <= 1 {
		// A paced grant was taken whole: the next is due at the next
		// boundary of the grid (see setThresholdLocked).
		s.nextAt = s.nextGrantLocked()
		s.thr = math.Inf(1)
	}
	return n
}

// demandLocked is how many bytes the session could use in the tick ending
// at now. burst is the most an unlimited session may take in a tick (when
// capped).
func (s *Session) demandLocked(now int64, burst float64, capped bool) float64 {
	elapsed := max(float64(now-s.accruedAt)/1e9, 0)
	rate := s.rate
	if s.boostLeft > 0 {
		rate = s.boostRate
	}
	var d float64
	if math.IsInf(rate, 1) {
		if !capped {
			return 0 // an uncapped boost goes straight through Next
		}
		d = burst - s.credit
	} else {
		// Accrue the rate, but do not pile up more than a chunk and a
		// tick's worth for a viewer that is not taking it: a late reader
		// must not burst far above the rate. A late tick (a starved
		// scheduler) is made up for, up to half a second.
		bound := s.chunkLocked(rate) + rate*min(max(elapsed, s.p.tickSec), max(s.p.tickSec, 0.5))
		s.base = rate * elapsed
		if s.boostLeft == 0 {
			s.placeGridLocked(rate)
		}
		d = min(s.base+s.advance, bound-s.credit)
	}
	if s.boostLeft > 0 {
		d = min(d, s.boostLeft)
	}
	return max(d, 0)
}

// grantLocked credits a bytes to the session and wakes it if its Next can
// now return. contended is true when a cap gave less than the demand.
func (s *Session) grantLocked(now int64, a float64, contended bool) {
	boostEnded := false
	if s.boostLeft > 0 {
		if math.IsInf(s.boostRate, 1) && !contended && a == 0 && !s.capped() {
			return // an uncapped boost: Next hands it out and starts the clock
		}
		a = min(a, s.boostLeft)
		s.boostLeft -= a
		if s.boostLeft < 1e-6 {
			s.boostLeft = 0
			boostEnded = true
		}
	} else {
		s.accrued += a
		// What went beyond the rate's accrual was advance; what fell short
		// of it, with an advance held back, was that.
		if s.advance > 0 {
			s.advance = max(0, s.advance-max(0, a-s.base))
		} else if s.advance < 0 {
			s.advance = min(0, s.advance+max(0, s.base-a))
		}
	}
	s.credit += a
	s.accruedAt = now
	if boostEnded {
		// The scheduler handed out the boost (under a cap or the session
		// cap), so pacing goes straight on: no advance, and the boost
		// bytes not yet taken count towards the first grant.
		c := s.p.chunk(s.rate)
		s.gridChunk, s.gridOrigin, s.advance = c, 0, 0
		s.accrued = s.credit
		s.nextAt = s.nextBoundary()
	}
	s.setThresholdLocked(a, contended)
	if s.waiting && s.credit >= 1 && s.credit >= min(s.thr, float64(s.want)) {
		s.waiting = false
		s.signal()
	}
}

// setThresholdLocked sets when Next may return credited bytes; a is what
// the session got this tick.
//
// A session paced at its own rate gets its grants on a grid (see
// placeGridLocked): when the bytes credited since pacing started pass a
// whole number of chunks (a chunk is a period's worth), on the tick nearest
// that moment. Grants so fall half a period after each whole period of
// pacing, away from the edges of the 1 s windows a viewer measures from
// its start; a new period is taken up between two such seconds
// (nextGrantLocked). Until a grant is taken whole, what is credited may be
// taken.
//
// A session held back by a cap takes what it got each tick (or every few
// ticks, see MaxGrantsPerSec), which keeps the group's output smooth; a
// session with no rate of its own under a cap that does not bind takes
// what it got at once.
func (s *Session) setThresholdLocked(a float64, contended bool) {
	p := s.p
	rate := s.rate
	if s.boostLeft > 0 {
		rate = s.boostRate
	}
	minChunk := float64(p.cfg.MinChunk)
	switch {
	case contended:
		// Sessions take turns, each on its own tick of every capTicks,
		// so that the group sends about the same every tick.
		if k := uint64(p.capTicks); k > 1 && (p.ticks+s.phase)%k != 0 {
			s.thr = math.Inf(1)
			return
		}
		s.thr = min(max(a/2, minChunk/2), float64(p.cfg.MaxChunk))
	case math.IsInf(rate, 1):
		s.thr = min(max(a/2, minChunk/2), minChunk)
	case s.boostLeft > 0: // a boost under the session cap
		s.thr = max(s.chunkLocked(rate)-rate*p.tickSec/2, 1)
	case s.thr <= 1:
		// A grant is due and not yet taken whole.
	default:
		s.placeGridLocked(rate)
		h := rate * p.tickSec / 2
		if s.accrued+h >= s.nextAt {
			s.thr = 1
		} else {
			// Not due; but more than a chunk waiting (left over from a
			// boost, or a reader that fell behind) always goes.
			s.thr = s.chunkLocked(rate) + h
		}
	}
}

// placeGridLocked places the grid of paced grants when pacing starts: a
// grant is due whenever the credit since pacing started reaches a whole
// number of chunks, and half a chunk is credited ahead of the rate. So
// grants come half a period after each whole period of pacing and carry a
// chunk each, and the bytes sent stay within half a chunk of rate × time,
// early or late: a viewer measuring its rate over 60 s sees at most
// ±½ chunk / 60 s. A change of the period is taken up later, between two
// seconds of the session (nextGrantLocked).
func (s *Session) placeGridLocked(rate float64) {
	if s.nextAt < 0 {
		c := s.p.chunk(rate)
		s.gridChunk, s.nextAt, s.advance = c, c, c/2
	}
}

// chunkLocked is the session's grant: its grid's chunk once pacing has
// started, else what the pacer's period gives.
func (s *Session) chunkLocked(rate float64) float64 {
	if s.gridChunk > 0 && rate == s.rate {
		return s.gridChunk
	}
	return s.p.chunk(rate)
}

// nextGrantLocked returns where the next paced grant is due, after the
// one at s.nextAt was taken whole.
//
// The period (the chunk) follows the pacer's, which lengthens and
// shortens with the number of sessions (MaxGrantsPerSec), but a session
// takes a new one up only between its seconds: after the last grant of
// one second of pacing and before the first of the next, with the half
// chunk of advance of the new grid given (or held back) at once. Each of
// the session's seconds then carries the grants of one period, a whole
// number of them (the periods beyond ChunkPeriod divide a second), and
// the same bytes, rate × 1 s, however the load changes; the second where
// the grid changes carries at most half an old chunk more or less.
// Moving the grid mid-second instead would bunch grants: 1.4 × the rate
// in a viewer's seconds while 10,000 sessions ramp up.
func (s *Session) nextGrantLocked() float64 {
	next := s.nextBoundary()
	c, c2 := s.gridChunk, s.p.chunk(s.rate)
	if c2 == c || math.IsInf(s.rate, 1) {
		return next
	}
	// Credit counts half a chunk of advance: the grant just due stands
	// for the bytes of rate × time up to half a chunk before it.
	sec := s.rate // the bytes of one second
	this, after := math.Floor((s.nextAt-c/2)/sec), math.Floor((next-c/2)/sec)
	if this == after {
		return next // the next grant is in the same second
	}
	// The next grant would open a new second: switch to the new chunk,
	// its grid counted from the start of that second.
	start := after * sec
	s.advance += (c2 - c) / 2
	s.gridChunk, s.gridOrigin = c2, start
	return start + c2
}

// nextBoundary is the next point of the grid above what was credited, or
// within half a tick of it (counting an advance not yet credited).
func (s *Session) nextBoundary() float64 {
	c, o := s.gridChunk, s.gridOrigin
	x := s.accrued + s.advance + s.rate*s.p.tickSec/2
	return o + (math.Floor((x-o)/c)+1)*c
}

// waterLevel returns the max-min fair level L for demands d under budget:
// Σ min(d_i, L) = budget. It returns +Inf when the budget covers every
// demand. buf is scratch space for the sort fallback.
func waterLevel(d []float64, budget float64, buf *[]float64) float64 {
	n := len(d)
	var sum float64
	for _, x := range d {
		sum += x
	}
	if n == 0 || sum <= budget {
		return math.Inf(1)
	}
	if budget <= 0 {
		return 0
	}
	// Raise the level until the set of satisfied demands stops growing;
	// with few distinct demands this takes one or two passes.
	level, prev := budget/float64(n), -1
	for range 8 {
		var below float64
		cnt := 0
		for _, x := range d {
			if x <= level {
				below += x
				cnt++
			}
		}
		if cnt == n {
			return math.Inf(1)
		}
		level = (budget - below) / float64(n-cnt)
		if cnt == prev {
			return level
		}
		prev = cnt
	}
	// Many distinct demands: sort.
	sorted := append((*buf)[:0], d...)
	*buf = sorted
	slices.Sort(sorted)
	rest := budget
	for i, x := range sorted {
		share := rest / float64(n-i)
		if x >= share {
			return share
		}
		rest -= x
	}
	return math.Inf(1)
}

// atomicFloat is a float64 read and written atomically.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) load() float64   { return math.Float64frombits(f.bits.Load()) }
func (f *atomicFloat) store(v float64) { f.bits.Store(math.Float64bits(v)) }

// positive returns v, or 0 for a negative, NaN or infinite v (no cap).
func positive(v float64) float64 {
	if v > 0 && !math.IsInf(v, 1) {
		return v
	}
	return 0
}
