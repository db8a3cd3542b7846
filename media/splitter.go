package media

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Unit is one piece a Splitter cuts from a live stream: the header, or a
// whole fragment (fMP4) or run of frames (MP3) at which a viewer may join.
type Unit struct {
	// Header marks the fMP4 init segment (ftyp+moov). A new init segment
	// (an encoder restart) is emitted again; an identical repeat is not.
	// MP3 has no header: ID3v2 tags in the stream are dropped.
	Header bool
	// Data is the unit's bytes. It is only valid until the emit callback
	// returns (it may point into the caller's buffer): copy it to keep it.
	Data []byte
	// Offset is the position of Data[0] in the stream: the count of every
	// byte written before it, dropped bytes included.
	Offset int64
	// Start is the decode time of the unit's first sample: the primary
	// track's tfdt for fMP4, the duration of all earlier MP3 units for MP3.
	Start time.Duration
	// Duration is the primary track's sum of sample durations (fMP4; 0 when
	// no moov has been seen yet to give the timescale) or the frames'
	// duration (MP3).
	Duration time.Duration
	// Keyframe: a decoder can start here. fMP4: the primary track's first
	// sample is a sync sample (audio-only streams: always). MP3: always.
	Keyframe bool
	// Samples is the number of samples of the primary track in a fragment,
	// or of frames in an MP3 unit.
	Samples int
}

// SplitterOptions tune a Splitter. The zero value is the default.
type SplitterOptions struct {
	// MP3UnitDuration groups MP3 frames into units of at least this
	// duration (default 100 ms: 4 frames at 44.1 kHz). A unit is emitted
	// when its last frame is complete, so it is also the added latency.
	MP3UnitDuration time.Duration
	// MaxUnitSize caps a fragment or init segment (default and maximum
	// MaxFragmentSize). A larger one is dropped, without being buffered.
	MaxUnitSize int
}

// SplitterStats counts what a Splitter did.
type SplitterStats struct {
	Units        int64 // units emitted, headers excluded
	Headers      int64 // headers emitted
	Bytes        int64 // bytes written
	UnitBytes    int64 // bytes emitted in units and headers
	DroppedBytes int64 // bytes dropped: garbage, ID3 tags, Xing frames, stray boxes, oversize units
	Resyncs      int64 // times sync was lost and searched for again
	Malformed    int64 // fMP4 init segments or fragments dropped: their moov or moof did not parse
}

// Splitter cuts a live byte stream of fragmented MP4 or MP3 into its header
// and whole units. Feed it with Write in chunks of any size (it is an
// io.Writer); it calls emit for each header and unit as soon as the unit is
// complete. A unit that lies wholly inside one chunk is passed without a
// copy; the Splitter buffers at most the one unit that straddles chunks.
//
// After garbage it resynchronises: MP3 at the next frame header followed by
// a consistent second one, fMP4 at the next plausible moof, styp, sidx,
// emsg, prft, ftyp or moov box header. No size field ever drives an
// allocation: the buffer grows only with bytes actually written, and a unit
// declaring more than MaxUnitSize is skipped.
//
// A Splitter is not safe for concurrent use. If emit returns an error,
// Write returns it, then and on every later call.
type Splitter struct {
	kind  Kind
	opts  SplitterOptions
	emit  func(Unit) error
	stats SplitterStats
	err   error // sticky: the first error Write returned

	buf  []byte // a straddling unit's first bytes (stream offset bufOff)
	need int    // bytes buf must hold before parsing can move on
	skip int64  // bytes still to drop without buffering (big tags, oversize units)
	pos  int64  // stream offset of the next byte Write receives

	// MP3
	locked        bool
	lock          uint32 // header bits every frame must share
	framesPerUnit int
	samplesPerFr  int64
	sampleRate    int64
	samples       int64         // samples emitted since the last lock
	base          time.Duration // stream time at the last lock

	// fMP4
	lost    bool // looking for a plausible box header
	header  []byte
	defs    []trackDefaults
	primary uint32 // track ID of the primary track, 0 when unknown
	trafs   []trafSummary
}

// NewSplitter returns a Splitter for kind KindFMP4 (KindMP4 and KindM4A
// mean the same: a live ISO BMFF stream is fragmented) or KindMP3, or "" to
// detect the format from the first bytes. emit is called for every header
// and unit.
func NewSplitter(kind Kind, emit func(Unit) error) *Splitter {
	return NewSplitterOptions(kind, SplitterOptions{}, emit)
}

// NewSplitterOptions is NewSplitter with options.
func NewSplitterOptions(kind Kind, opts SplitterOptions, emit func(Unit) error) *Splitter {
	if opts.MP3UnitDuration <= 0 {
		opts.MP3UnitDuration = 100 * time.Millisecond
	}
	if kind == KindMP4 || kind == KindM4A {
		kind = KindFMP4 // live ISO BMFF is fragmented
	}
	if opts.MaxUnitSize <= 0 || opts.MaxUnitSize > MaxFragmentSize {
		opts.MaxUnitSize = MaxFragmentSize
	}
	return &Splitter{kind: kind, opts: opts, emit: emit}
}

// Kind is the stream's format: the one given, or the detected one ("" until
// detected).
func (s *Splitter) Kind() Kind { return s.kind }

// Header returns the last init segment emitted (nil for MP3 or before the
// first). The Splitter does not change the returned bytes afterwards.
func (s *Splitter) Header() []byte { return s.header }

// Stats returns the counters.
func (s *Splitter) Stats() SplitterStats { return s.stats }

// detectWindow is how many bytes "" kind detection looks at before giving
// up with ErrUnknownFormat.
const detectWindow = 64 << 10

// Write feeds p. It returns len(p), or the error of an emit call, or an
// error wrapping ErrUnknownFormat when the format cannot be detected. An
// error is final: later calls return it again.
func (s *Splitter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.write(p)
	s.err = err
	return n, err
}

func (s *Splitter) write(p []byte) (int, error) {
	total := len(p)
	s.stats.Bytes += int64(total)
	for len(p) > 0 {
		if s.skip > 0 {
			n := min(s.skip, int64(len(p)))
			s.drop(n)
			s.skip -= n
			s.pos += n
			p = p[n:]
			continue
		}
		if len(s.buf) == 0 {
			n, need, err := s.step(p, s.pos)
			s.pos += int64(n)
			if err != nil {
				return total - len(p) + n, err
			}
			p = p[n:]
			if len(p) > 0 {
				// A unit straddles this chunk and the next: keep its start.
				s.buf = append(s.buf[:0], p...)
				s.pos += int64(len(p))
				s.need = need
				p = nil
			}
			continue
		}
		// Top the buffer up to what the parser asked for, then parse it.
		k := min(max(s.need-len(s.buf), 1), len(p))
		s.buf = append(s.buf, p[:k]...)
		s.pos += int64(k)
		p = p[k:]
		if len(s.buf) < s.need {
			continue
		}
		n, need, err := s.step(s.buf, s.pos-int64(len(s.buf)))
		if err != nil {
			return total - len(p), err
		}
		if n == len(s.buf) {
			s.buf = s.buf[:0]
			continue
		}
		s.buf = append(s.buf[:0], s.buf[n:]...)
		s.need = need
		if len(s.buf) > s.opts.MaxUnitSize+64<<10 {
			// Cannot happen with a correct parser; never grow without bound.
			s.drop(int64(len(s.buf)))
			s.buf = s.buf[:0]
			s.stats.Resyncs++
		}
	}
	return total, nil
}

func (s *Splitter) drop(n int64) { s.stats.DroppedBytes += n }

// Flush emits what is complete but held back: MP3 frames waiting for their
// unit to reach MP3UnitDuration. Call it when the stream ends. A partial
// fragment or frame is dropped.
func (s *Splitter) Flush() error {
	if s.kind == KindMP3 && s.locked && len(s.buf) > 0 {
		b, off := s.buf, s.pos-int64(len(s.buf))
		k, frames := 0, 0
		for k+4 <= len(b) {
			h := binary.BigEndian.Uint32(b[k:])
			n := frameSizeFast(h)
			if n == 0 || h&mp3LockMask != s.lock || k+n > len(b) {
				break
			}
			k += n
			frames++
		}
		if frames > 0 {
			if err := s.emitMP3(b[:k], off, frames); err != nil {
				return err
			}
		}
		s.drop(int64(len(b) - k))
	} else {
		s.drop(int64(len(s.buf)))
	}
	s.buf = s.buf[:0]
	s.need = 0
	return nil
}

// step parses units from the start of b, whose first byte is at stream
// offset off. It returns how many bytes it consumed (emitted or dropped) and,
// when it stops before the end of b, how many bytes from b[n:] it needs to
// make progress (more than len(b)-n). When it sets s.skip, to have the
// bytes that follow b dropped unseen, it has consumed all of b.
func (s *Splitter) step(b []byte, off int64) (n, need int, err error) {
	if s.kind == "" {
		k, ok := detectKind(b)
		if !ok {
			if len(b) >= detectWindow {
				return 0, 0, fmt.Errorf("%w: no fMP4 box or MPEG audio frame in the first %d bytes", ErrUnknownFormat, len(b))
			}
			// Look again when 4 KiB more have come (not on every byte).
			return 0, min(len(b)+4096, detectWindow), nil
		}
		s.kind = k
	}
	switch s.kind {
	case KindMP3:
		return s.stepMP3(b, off)
	case KindFMP4:
		return s.stepFMP4(b, off)
	}
	return 0, 0, fmt.Errorf("%w: a Splitter handles fmp4 and mp3, not %q", ErrUnknownFormat, s.kind)
}

// detectKind decides from the first bytes of a stream whether it is fMP4 or
// MP3. ok is false until it can tell.
func detectKind(b []byte) (Kind, bool) {
	if len(b) >= 8 {
		typ, size, hdr, ok := boxHeader(b)
		if ok && isTopLevelType(typ) && size >= uint64(hdr) {
			return KindFMP4, true
		}
	}
	if len(b) >= 3 && string(b[:3]) == "ID3" {
		return KindMP3, true
	}
	// Otherwise a run of two consistent MPEG audio frames anywhere in the
	// window (a stream joined mid-frame starts with garbage).
	for i := 0; i+4 <= len(b); i++ {
		if b[i] != 0xff {
			continue
		}
		h := binary.BigEndian.Uint32(b[i:])
		n := frameSizeFast(h)
		if n == 0 || i+n+4 > len(b) {
			continue
		}
		h2 := binary.BigEndian.Uint32(b[i+n:])
		if h2&mp3LockMask == h&mp3LockMask && frameSizeFast(h2) != 0 {
			return KindMP3, true
		}
	}
	return "", false
}
