package media

import "encoding/binary"

// Box types as big-endian uint32s, so that comparing a type is one compare.
const (
	boxFtyp = 'f'<<24 | 't'<<16 | 'y'<<8 | 'p'
	boxStyp = 's'<<24 | 't'<<16 | 'y'<<8 | 'p'
	boxMoov = 'm'<<24 | 'o'<<16 | 'o'<<8 | 'v'
	boxMoof = 'm'<<24 | 'o'<<16 | 'o'<<8 | 'f'
	boxMdat = 'm'<<24 | 'd'<<16 | 'a'<<8 | 't'
	boxMfra = 'm'<<24 | 'f'<<16 | 'r'<<8 | 'a'
	boxSidx = 's'<<24 | 'i'<<16 | 'd'<<8 | 'x'
	boxSsix = 's'<<24 | 's'<<16 | 'i'<<8 | 'x'
	boxPrft = 'p'<<24 | 'r'<<16 | 'f'<<8 | 't'
	boxEmsg = 'e'<<24 | 'm'<<16 | 's'<<8 | 'g'
	boxFree = 'f'<<24 | 'r'<<16 | 'e'<<8 | 'e'
	boxSkip = 's'<<24 | 'k'<<16 | 'i'<<8 | 'p'
	boxWide = 'w'<<24 | 'i'<<16 | 'd'<<8 | 'e'
	boxUUID = 'u'<<24 | 'u'<<16 | 'i'<<8 | 'd'
	boxPdin = 'p'<<24 | 'd'<<16 | 'i'<<8 | 'n'
	boxMeta = 'm'<<24 | 'e'<<16 | 't'<<8 | 'a'
	boxUdta = 'u'<<24 | 'd'<<16 | 't'<<8 | 'a'
	boxMfhd = 'm'<<24 | 'f'<<16 | 'h'<<8 | 'd'

	boxMvhd = 'm'<<24 | 'v'<<16 | 'h'<<8 | 'd'
	boxTrak = 't'<<24 | 'r'<<16 | 'a'<<8 | 'k'
	boxTkhd = 't'<<24 | 'k'<<16 | 'h'<<8 | 'd'
	boxMdia = 'm'<<24 | 'd'<<16 | 'i'<<8 | 'a'
	boxMdhd = 'm'<<24 | 'd'<<16 | 'h'<<8 | 'd'
	boxHdlr = 'h'<<24 | 'd'<<16 | 'l'<<8 | 'r'
	boxMinf = 'm'<<24 | 'i'<<16 | 'n'<<8 | 'f'
	boxStbl = 's'<<24 | 't'<<16 | 'b'<<8 | 'l'
	boxStsd = 's'<<24 | 't'<<16 | 's'<<8 | 'd'
	boxStts = 's'<<24 | 't'<<16 | 't'<<8 | 's'
	boxStsz = 's'<<24 | 't'<<16 | 's'<<8 | 'z'
	boxStz2 = 's'<<24 | 't'<<16 | 'z'<<8 | '2'
	boxStco = 's'<<24 | 't'<<16 | 'c'<<8 | 'o'
	boxCo64 = 'c'<<24 | 'o'<<16 | '6'<<8 | '4'
	boxMvex = 'm'<<24 | 'v'<<16 | 'e'<<8 | 'x'
	boxMehd = 'm'<<24 | 'e'<<16 | 'h'<<8 | 'd'
	boxTrex = 't'<<24 | 'r'<<16 | 'e'<<8 | 'x'
	boxTraf = 't'<<24 | 'r'<<16 | 'a'<<8 | 'f'
	boxTfhd = 't'<<24 | 'f'<<16 | 'h'<<8 | 'd'
	boxTfdt = 't'<<24 | 'f'<<16 | 'd'<<8 | 't'
	boxTrun = 't'<<24 | 'r'<<16 | 'u'<<8 | 'n'
	boxAvcC = 'a'<<24 | 'v'<<16 | 'c'<<8 | 'C'
	boxEsds = 'e'<<24 | 's'<<16 | 'd'<<8 | 's'
	boxBtrt = 'b'<<24 | 't'<<16 | 'r'<<8 | 't'
	boxWave = 'w'<<24 | 'a'<<16 | 'v'<<8 | 'e'
)

// fourCC renders a box type for messages, escaping unprintable bytes.
func fourCC(t uint32) string {
	b := []byte{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "0x" + hex8(t)
		}
	}
	return string(b)
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// isTopLevelType reports whether t is a box type that appears at the top level
// of the MP4 files and fMP4 streams we handle. It is what makes detection and
// resynchronisation plausible rather than a guess on four random bytes.
func isTopLevelType(t uint32) bool {
	switch t {
	case boxFtyp, boxStyp, boxMoov, boxMoof, boxMdat, boxMfra, boxSidx, boxSsix,
		boxPrft, boxEmsg, boxFree, boxSkip, boxWide, boxUUID, boxPdin, boxMeta, boxUdta:
		return true
	}
	return false
}

// isFragmentStart reports whether a top-level box of type t begins a new
// fMP4 fragment (or, before the first fragment, ends the init segment).
func isFragmentStart(t uint32) bool {
	switch t {
	case boxStyp, boxSidx, boxSsix, boxPrft, boxEmsg, boxMoof:
		return true
	}
	return false
}

// boxHeader decodes the header of a box at the start of b. size is the whole
// box size (header included); size 0 means "to the end of the enclosing
// space". hdr is 8 or 16. ok is false when b is too short to tell (fewer
// than 8 bytes, or fewer than 16 with a 64-bit size); the caller validates
// size against hdr and the space available.
func boxHeader(b []byte) (typ uint32, size uint64, hdr int, ok bool) {
	if len(b) < 8 {
		return 0, 0, 0, false
	}
	size = uint64(binary.BigEndian.Uint32(b))
	typ = binary.BigEndian.Uint32(b[4:])
	hdr = 8
	if size == 1 {
		if len(b) < 16 {
			return 0, 0, 0, false
		}
		size = binary.BigEndian.Uint64(b[8:])
		hdr = 16
	}
	return typ, size, hdr, true
}

// childBoxes iterates over the boxes packed in buf (a container's payload),
// calling fn with each child's type and payload. It stops at the first error.
// A child whose size is smaller than its header or larger than what is left
// is malformed; size 0 extends to the end of buf; fewer than 8 trailing bytes
// are ignored (QuickTime ends some lists with a 32-bit zero).
func childBoxes(buf []byte, fn func(typ uint32, payload []byte) error) error {
	for len(buf) >= 8 {
		typ, size, hdr, ok := boxHeader(buf)
		if !ok {
			return malformed("box %q: 64-bit size cut off", fourCC(typ))
		}
		switch {
		case size == 0:
			size = uint64(len(buf))
		case size < uint64(hdr):
			return malformed("box %q: size %d is smaller than its header", fourCC(typ), size)
		case size > uint64(len(buf)):
			return malformed("box %q: size %d exceeds its parent's %d remaining bytes", fourCC(typ), size, len(buf))
		}
		if err := fn(typ, buf[hdr:size]); err != nil {
			return err
		}
		buf = buf[size:]
	}
	return nil
}

// fullBox splits a full box payload into version, flags and the rest.
func fullBox(p []byte) (version byte, flags uint32, rest []byte, ok bool) {
	if len(p) < 4 {
		return 0, 0, nil, false
	}
	return p[0], binary.BigEndian.Uint32(p) & 0xffffff, p[4:], true
}
