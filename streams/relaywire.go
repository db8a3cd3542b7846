package streams

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The peer relay protocol: how a node copies a live stream from its origin
// (GET /<pseudo_domain>/streams/<name>?from=<seq>). Frames carry the
// origin's sequence numbers, so a peer that lost its connection asks for
// the next one and gets neither a gap nor a duplicate while the origin
// still buffers it, and the origin's live-edge time, so the peer knows how
// far behind it is.
//
//	type     1 byte  'H' header, 'U' unit, 'P' ping (no data)
//	flags    1 byte  bit 0: key unit; bit 1: the origin's source is connected
//	seq      8 bytes
//	time     8 bytes stream time of the unit, ns
//	duration 8 bytes ns
//	edge     8 bytes the origin's live-edge stream time when sent, ns
//	length   4 bytes
//	data     length bytes
const (
	frameHeader = 'H'
	frameUnit   = 'U'
	framePing   = 'P'

	flagKey    = 1
	flagSource = 2

	frameHeadLen = 1 + 1 + 8*4 + 4
	// maxFrameData bounds what a peer accepts in one frame.
	maxFrameData = 64 << 20
)

// RelayContentType is the media type of the peer relay protocol.
const RelayContentType = "application/x-castmesh-relay"

type frame struct {
	typ   byte
	flags byte
	seq   uint64
	time  time.Duration
	dur   time.Duration
	edge  time.Duration
	data  []byte
}

func (f frame) key() bool             { return f.flags&flagKey != 0 }
func (f frame) sourceConnected() bool { return f.flags&flagSource != 0 }

func writeFrame(w io.Writer, f frame) error {
	var h [frameHeadLen]byte
	h[0] = f.typ
	h[1] = f.flags
	binary.BigEndian.PutUint64(h[2:], f.seq)
	binary.BigEndian.PutUint64(h[10:], uint64(f.time))
	binary.BigEndian.PutUint64(h[18:], uint64(f.dur))
	binary.BigEndian.PutUint64(h[26:], uint64(f.edge))
	binary.BigEndian.PutUint32(h[34:], uint32(len(f.data)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(f.data)
	return err
}

var errBadFrame = errors.New("relay protocol: bad frame")

// frameReader decodes frames; the data of a frame is valid until the next.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: bufio.NewReaderSize(r, 64<<10)} }

func (fr *frameReader) next() (frame, error) {
	var h [frameHeadLen]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{
		typ: h[0], flags: h[1],
		seq:  binary.BigEndian.Uint64(h[2:]),
		time: time.Duration(binary.BigEndian.Uint64(h[10:])),
		dur:  time.Duration(binary.BigEndian.Uint64(h[18:])),
		edge: time.Duration(binary.BigEndian.Uint64(h[26:])),
	}
	n := binary.BigEndian.Uint32(h[34:])
	switch {
	case f.typ != frameHeader && f.typ != frameUnit && f.typ != framePing:
		return frame{}, fmt.Errorf("%w: type %q", errBadFrame, f.typ)
	case n > maxFrameData:
		return frame{}, fmt.Errorf("%w: %d bytes", errBadFrame, n)
	case f.dur < 0 || f.time < 0:
		return frame{}, fmt.Errorf("%w: negative time", errBadFrame)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	f.data = fr.buf[:n]
	if _, err := io.ReadFull(fr.r, f.data); err != nil {
		return frame{}, err
	}
	return f, nil
}
