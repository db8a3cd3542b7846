package streams

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Unit is one joinable piece of a live stream: an fMP4 fragment (moof+mdat)
// or a run of whole MP3 frames.
type Unit struct {
	Seq      uint64        // position in the stream, assigned by the Relay
	Time     time.Duration // stream time at the unit's start, assigned by the Relay
	Data     []byte
	Duration time.Duration
	Key      bool // a viewer may start here (fMP4: starts with a sync sample; MP3: always)
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
	units    []Unit // oldest first; units[i].Seq == first+i
	bytes    int
	buffered time.Duration
	next     uint64        // Seq of the next unit published
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

// Publish appends a unit and wakes the readers. u.Data must not be changed
// afterwards: readers share it.
func (r *Relay) Publish(u Unit) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	u.Seq, u.Time = r.next, r.end
	r.next++
	r.end += u.Duration
	r.units = append(r.units, u)
	r.bytes += len(u.Data)
	r.buffered += u.Duration
	for len(r.units) > 1 && (r.buffered-r.units[0].Duration >= r.opts.Window || r.bytes > r.opts.MaxBytes) {
		r.bytes -= len(r.units[0].Data)
		r.buffered -= r.units[0].Duration
		r.units[0] = Unit{}
		r.units = r.units[1:]
	}
	close(r.wake)
	r.wake = make(chan struct{})
	return u.Seq
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
// burst-on-connect, STON's boost for live), at a Key unit.
func (r *Relay) NewReader(burst time.Duration) *RelayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.next
	var acc time.Duration
	for i := len(r.units) - 1; i >= 0 && acc < burst; i-- {
		acc += r.units[i].Duration
		if r.units[i].Key {
			start = r.units[i].Seq
		}
	}
	if start == r.next {
		// Join at the most recent key unit so that a decoder can start.
		for i := len(r.units) - 1; i >= 0; i-- {
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

// NewReaderFrom starts a reader at seq, for a peer resuming after a cut; it
// starts at the oldest unit kept when seq is no longer buffered.
func (r *Relay) NewReaderFrom(seq uint64) *RelayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.units) > 0 && seq < r.units[0].Seq {
		seq = r.units[0].Seq
	}
	if seq > r.next || seq == 0 {
		seq = r.next
	}
	r.readers.Add(1)
	return &RelayReader{r: r, next: seq}
}

// Header is what the reader must send before its first unit: the relay's
// header when Next first returned a unit. A reader that opens before the
// source has sent its init segment gets it this way, not nil.
func (rd *RelayReader) Header() []byte { return rd.header }

// Next returns the reader's next unit, waiting for it until ctx is done.
func (rd *RelayReader) Next(ctx context.Context) (Unit, error) {
	r := rd.r
	for {
		r.mu.Lock()
		if len(r.units) > 0 && rd.next < r.units[0].Seq {
			r.mu.Unlock()
			r.dropped.Add(1)
			rd.Close()
			return Unit{}, ErrLagging
		}
		if i := int(rd.next - r.next + uint64(len(r.units))); rd.next < r.next && i >= 0 {
			u := r.units[i]
			lagging := r.end-u.Time > r.opts.LagLimit
			if !rd.started {
				rd.started, rd.header = true, r.header
			}
			r.mu.Unlock()
			if lagging {
				r.dropped.Add(1)
				rd.Close()
				return Unit{}, ErrLagging
			}
			rd.next++
			return u, nil
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

// Close stops counting the reader.
func (rd *RelayReader) Close() {
	if !rd.done {
		rd.done = true
		rd.r.readers.Add(-1)
	}
}
