// Package livestamp makes and reads live MP3 streams whose every frame
// carries the time it was sent and a counter, so that a test or benchmark
// can tell, at the viewer, how late each frame arrives and whether any was
// duplicated, reordered or lost.
//
// The frames are MPEG-1 Layer III, 128 kbps, 44.1 kHz stereo, padded as an
// encoder pads them so the rate is exact. Their side information is all
// zero (no audio data: decoders play silence without complaint) and the
// stamp sits in the ancillary bytes after it, which decoders skip.
package livestamp

import (
	"bytes"
	"encoding/binary"
	"time"
)

// Stream figures.
const (
	SampleRate      = 44100
	Bitrate         = 128000
	SamplesPerFrame = 1152
	// FrameDuration is the play time of one frame (26.12 ms).
	FrameDuration = time.Duration(SamplesPerFrame) * time.Second / SampleRate
	// BytesPerSecond is the stream's rate.
	BytesPerSecond = Bitrate / 8

	frameBase  = 144 * Bitrate / SampleRate // 417: a frame without padding
	stampAt    = 4 + 32                     // after the header and the stereo side info
	stampLen   = 4 + 8 + 8
	headerByte = 0x90 // bitrate index 9 (128 kbps), 44.1 kHz
)

var magic = []byte("CMTS")

// Stamp is what one frame carries.
type Stamp struct {
	Sent  time.Time
	Count uint64
}

// Source cuts the stream into frames; it is not safe for concurrent use.
type Source struct {
	frac  int // padding accumulator, in units of 1/SampleRate bytes
	count uint64
}

// NewSource returns a source whose first frame has the count first.
func NewSource(first uint64) *Source { return &Source{count: first} }

// Frame appends the next frame, stamped with sent, to dst.
func (s *Source) Frame(dst []byte, sent time.Time) []byte {
	// 144*128000/44100 = 417.959...: pad one frame in about 25/26 as LAME does.
	size := frameBase
	s.frac += 144*Bitrate - frameBase*SampleRate
	pad := byte(0)
	if s.frac >= SampleRate {
		s.frac -= SampleRate
		size++
		pad = 2
	}
	start := len(dst)
	dst = append(dst, make([]byte, size)...)
	f := dst[start:]
	f[0], f[1], f[2], f[3] = 0xFF, 0xFB, headerByte|pad, 0x00
	copy(f[stampAt:], magic)
	binary.BigEndian.PutUint64(f[stampAt+4:], uint64(sent.UnixNano()))
	binary.BigEndian.PutUint64(f[stampAt+12:], s.count)
	s.count++
	return dst
}

// Reader finds the stamps in a byte stream delivered in chunks of any size.
type Reader struct {
	buf []byte
	// Skipped counts bytes that were not part of a stamped frame.
	Skipped int64
}

// Write feeds p; fn is called for every complete stamped frame, in order.
// Other bytes are skipped and counted; at most one frame is kept between
// calls.
func (r *Reader) Write(p []byte, fn func(Stamp)) {
	r.buf = append(r.buf, p...)
	b := r.buf
	for {
		i := bytes.IndexByte(b, 0xFF)
		if i < 0 {
			r.Skipped += int64(len(b))
			b = b[:0]
			break
		}
		r.Skipped += int64(i)
		b = b[i:]
		if len(b) < 4 {
			break
		}
		size, ok := frameSize(b)
		if !ok {
			r.Skipped++
			b = b[1:]
			continue
		}
		if len(b) < size {
			break
		}
		if !bytes.Equal(b[stampAt:stampAt+4], magic) {
			r.Skipped++
			b = b[1:]
			continue
		}
		fn(Stamp{
			Sent:  time.Unix(0, int64(binary.BigEndian.Uint64(b[stampAt+4:]))),
			Count: binary.BigEndian.Uint64(b[stampAt+12:]),
		})
		b = b[size:]
	}
	r.buf = append(r.buf[:0], b...)
}

// frameSize recognises the header this package writes.
func frameSize(b []byte) (int, bool) {
	if b[0] != 0xFF || b[1] != 0xFB || b[2]&^2 != headerByte || b[3] != 0 {
		return 0, false
	}
	return frameBase + int(b[2]>>1&1), true
}
