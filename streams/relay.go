package streams

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Unit is one joinable piece of a live stream: an fMP4 fragment (moof+mdat)
// or a run of whole MP3 frames.
type Unit struct {
	// Seq is the unit's position in the stream. It is the same on every
	// node: the origin numbers the units and peers keep its numbers, so
	// that a peer resuming after a cut, from the same origin or from a new
	// one, asks for the next number and gets neither gaps nor duplicates.
	// Numbers increase but may jump (a new source session, a lost stretch).
	Seq      uint64
	Time     time.Duration // stream time at the unit's start, assigned by the Relay
	Data     []byte
	Duration time.Duration
	Key      bool  // a viewer may start here (fMP4: starts with a sync sample; MP3: always)
	At       int64 // when this node published it (unix ns), assigned by the Relay
}

// Relay errors.
var (
	ErrLagging     = errors.New("viewer fell behind the live edge by more than the lag limit")
	ErrRelayClosed = errors.New("the live stream ended")
)

// RelayOptions bound a Relay's memory and its viewers' lag.
type RelayOptions struct {
	// Window is how much media the relay keeps for bursts on connect and
	// for peers resuming after a cut.
	Window time.Duration
	// MaxBytes caps the buffer whatever its duration.
	MaxBytes int
	// LagLimit is how far behind the live edge a viewer may fall before it
	// is dropped.
	LagLimit time.Duration
}

// DefaultRelayOptions keep 30 s (at most 32 MiB) and drop viewers 10 s behind.
var DefaultRelayOptions = RelayOptions{Window: 30 * time.Second, MaxBytes: 32 << 20, LagLimit: 10 * time.Second}

// Relay fans one live input out to any number of readers. It keeps the
// recent units in one shared buffer; a reader is only a cursor into it, so
// a viewer costs no copy and never blocks the input or other viewers: a
// reader whose cursor falls out of the buffer, or too far behind the live
// edge, is dropped and counted.
type Relay struct {
	opts RelayOptions

	mu       sync.Mutex
	header   []byte
	units    []Unit // oldest first, Seq increasing (not always by one)
	bytes    int
	buffered time.Duration
	next     uint64        // lowest Seq the next unit may have
	kept     uint64        // lowest Seq not evicted: a reader below it lost units
	session  uint64        // Seq of the first unit after the last jump: where a burst may start
	end      time.Duration // stream time at the live edge
	wake     chan struct{} // closed and replaced on every publish
	closed   bool

	dropped atomic.Int64 // readers dropped for lag
	readers atomic.Int64
}

// NewRelay returns an empty relay.
func NewRelay(o RelayOptions) *Relay {
	if o.Window <= 0 {
		o.Window = DefaultRelayOptions.Window
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultRelayOptions.MaxBytes
	}
	if o.LagLimit <= 0 {
		o.LagLimit = DefaultRelayOptions.LagLimit
	}
	return &Relay{opts: o, next: 1, wake: make(chan struct{})}
}

// SetHeader sets what every new reader gets first (the fMP4 init segment).
func (r *Relay) SetHeader(h []byte) {
	r.mu.Lock()
	r.header = h
	r.mu.Unlock()
}

// Header returns the current header.
func (r *Relay) Header() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.header
}

// Publish appends a unit, numbered next, and wakes the readers. u.Data
// must not be changed afterwards: readers share it.
func (r *Relay) Publish(u Unit) uint64 { return r.PublishAt(u, 0) }

// PublishAt is Publish with the number seq (a peer keeps its origin's
// numbers). A seq below the next free number (0, or an origin whose
// numbering is behind this relay's) gets the next free number instead.
func (r *Relay) PublishAt(u Unit, seq uint64) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	u.Seq, u.Time, u.At = max(seq, r.next), r.end, time.Now().UnixNano()
	if u.Seq > r.next || r.session == 0 {
		// A jump: a new source session (whose timestamps and init
		// segment may start over) or a stretch lost upstream. A new
		// viewer's burst must not reach back across it.
		r.session = u.Seq
	}
	r.next = u.Seq + 1
	r.end += u.Duration
	r.units = append(r.units, u)
	r.bytes += len(u.Data)
	r.buffered += u.Duration
	for len(r.units) > 1 && (r.buffered-r.units[0].Duration >= r.opts.Window || r.bytes > r.opts.MaxBytes) {
		r.bytes -= len(r.units[0].Data)
		r.buffered -= r.units[0].Duration
		r.kept = r.units[0].Seq + 1
		r.units[0] = Unit{}
		r.units = r.units[1:]
	}
	close(r.wake)
	r.wake = make(chan struct{})
	return u.Seq
}

// Rebase makes the next unit's number at least seq. A node that starts
// feeding a relay from a source (a new origin, a source client that
// reconnected) rebases to a clock-derived number, so that its numbers lie
// above any a peer may hold from an earlier origin: a peer resuming from
// it then gets its new units, never an older origin's numbers again.
func (r *Relay) Rebase(seq uint64) {
	r.mu.Lock()
	if seq > r.next {
		r.next, r.session = seq, seq
	}
	r.mu.Unlock()
}

// NextSeq is the lowest number the next unit may have.
func (r *Relay) NextSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// Close ends the stream for every reader.
func (r *Relay) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.wake)
	}
}

// Stats reports the relay's readers, lag drops, buffered bytes and the
// sequence number of the live edge.
func (r *Relay) Stats() (readers, dropped int64, bytes int, edge uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readers.Load(), r.dropped.Load(), r.bytes, r.next - 1
}

// Bitrate is the rate of the buffered media in bit/s.
func (r *Relay) Bitrate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buffered <= 0 {
		return 0
	}
	return float64(r.bytes*8) / r.buffered.Seconds()
}

// EdgeTime is the stream time at the live edge.
func (r *Relay) EdgeTime() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end
}

// RelayReader is one viewer's (or peer's) cursor into a Relay.
type RelayReader struct {
	r       *Relay
	next    uint64
	header  []byte
	started bool
	done    bool
}

// NewReader starts a reader burst behind the live edge (Icecast's
// burst-on-connect, STON's boost for live), at a Key unit, never before
// the current source session.
func (r *Relay) NewReader(burst time.Duration) *RelayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.next
	var acc time.Duration
	for i := len(r.units) - 1; i >= 0 && acc < burst && r.units[i].Seq >= r.session; i-- {
		acc += r.units[i].Duration
		if r.units[i].Key {
			start = r.units[i].Seq
		}
	}
	if start == r.next {
		// Join at the most recent key unit so that a decoder can start.
		for i := len(r.units) - 1; i >= 0 && r.units[i].Seq >= r.session; i-- {
			if r.units[i].Key {
				start = r.units[i].Seq
				break
			}
		}
		if burst == 0 {
			start = r.next
		}
	}
	r.readers.Add(1)
	return &RelayReader{r: r, next: start}
}

// NewReaderFrom starts a reader at the first unit numbered seq or more, for
// a peer resuming after a cut; it starts at the oldest unit kept when seq
// is no longer buffered, and at the live edge when seq is beyond it.
func (r *Relay) NewReaderFrom(seq uint64) *RelayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq < r.kept {
		seq = r.kept
	}
	if seq > r.next || seq == 0 {
		seq = r.next
	}
	r.readers.Add(1)
	return &RelayReader{r: r, next: seq}
}

// at returns the index of the first unit numbered seq or more; len(units)
// when there is none yet.
func (r *Relay) at(seq uint64) int {
	if n := len(r.units); n > 0 {
		// Numbers mostly go up by one: try the direct index first.
		if d := seq - r.units[0].Seq; seq >= r.units[0].Seq && d < uint64(n) && r.units[d].Seq == seq {
			return int(d)
		}
	}
	return sort.Search(len(r.units), func(i int) bool { return r.units[i].Seq >= seq })
}

// Header is what the reader must send before its first unit: the relay's
// header when Next first returned a unit. A reader that opens before the
// source has sent its init segment gets it this way, not nil.
func (rd *RelayReader) Header() []byte { return rd.header }

// Next returns the reader's next unit, waiting for it until ctx is done.
func (rd *RelayReader) Next(ctx context.Context) (Unit, error) {
	for {
		u, ok, err := rd.TryNext()
		if ok || err != nil {
			return u, err
		}
		r := rd.r
		r.mu.Lock()
		if n := len(r.units); n > 0 && r.units[n-1].Seq >= rd.next {
			r.mu.Unlock()
			continue // published meanwhile
		}
		if r.closed {
			r.mu.Unlock()
			rd.Close()
			return Unit{}, ErrRelayClosed
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return Unit{}, ctx.Err()
		case <-wake:
		}
	}
}

// Ready returns a channel that is closed once the reader has a unit to
// take (or the relay ended), for callers that wait on other things too.
func (rd *RelayReader) Ready() <-chan struct{} {
	r := rd.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.units); r.closed || rd.next < r.kept || n > 0 && r.units[n-1].Seq >= rd.next {
		return closedChan
	}
	return r.wake
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// TryNext is Next without waiting: ok is false when no unit is there yet.
func (rd *RelayReader) TryNext() (u Unit, ok bool, err error) {
	r := rd.r
	r.mu.Lock()
	if rd.next < r.kept {
		r.mu.Unlock()
		return Unit{}, false, rd.lagged()
	}
	i := r.at(rd.next)
	if i == len(r.units) {
		closed := r.closed
		r.mu.Unlock()
		if closed {
			rd.Close()
			return Unit{}, false, ErrRelayClosed
		}
		return Unit{}, false, nil
	}
	u = r.units[i]
	lagging := r.end-u.Time > r.opts.LagLimit
	if !rd.started {
		rd.started, rd.header = true, r.header
	}
	r.mu.Unlock()
	if lagging {
		return Unit{}, false, rd.lagged()
	}
	rd.next = u.Seq + 1
	return u, true, nil
}

func (rd *RelayReader) lagged() error {
	if !rd.done {
		rd.r.dropped.Add(1)
	}
	rd.Close()
	return ErrLagging
}

// Close stops counting the reader.
func (rd *RelayReader) Close() {
	if !rd.done {
		rd.done = true
		rd.r.readers.Add(-1)
	}
}
