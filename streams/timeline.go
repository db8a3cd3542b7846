package streams

import (
	"encoding/binary"
	"math"
	"time"
)

// timeline keeps a live fMP4 stream's decode times going forward across
// source sessions. A source that reconnects, or a new origin that pulls
// the source again, starts its fragments' timestamps (tfdt) over, often
// at 0; a viewer connected across that would see time run backwards,
// which decoders and MSE players refuse. So every node notes where each
// track's time got to in the units its relay publishes, and the node that
// starts a new source session shifts that session's tfdt values to carry
// on from there: a viewer sees a gap in wall time, never a jump back.
//
// Only the tfdt values are changed, in place (no box changes size), so a
// version 0 (32-bit) tfdt whose shifted value would not fit is left as it is.
type timeline struct {
	timescale map[uint32]uint32 // track ID -> ticks per second, from the init segment
	end       map[uint32]uint64 // track ID -> decode time where the last fragment ended
	offset    map[uint32]int64  // this session's shift, per track
	fresh     bool              // the next fragment opens a session: compute offsets
}

func newTimeline() *timeline {
	return &timeline{timescale: map[uint32]uint32{}, end: map[uint32]uint64{}, offset: map[uint32]int64{}}
}

// newSession makes the next fragment's tracks carry on from the ends seen.
func (tl *timeline) newSession() {
	tl.fresh = true
	clear(tl.offset)
}

// header reads the track timescales of an init segment (ftyp+moov).
func (tl *timeline) header(init []byte) {
	eachBox(init, func(typ string, moov []byte) {
		if typ != "moov" {
			return
		}
		eachBox(moov, func(typ string, trak []byte) {
			if typ != "trak" {
				return
			}
			var id, ts uint32
			eachBox(trak, func(typ string, p []byte) {
				switch typ {
				case "tkhd":
					id = fullBoxField32(p, 12, 20)
				case "mdia":
					eachBox(p, func(typ string, p []byte) {
						if typ == "mdhd" {
							ts = fullBoxField32(p, 12, 20)
						}
					})
				}
			})
			if id != 0 && ts != 0 {
				tl.timescale[id] = ts
			}
		})
	})
}

// fragment notes (and, when shift is set, shifts) the tfdt of every track
// fragment in a unit of duration d. unit is changed in place.
func (tl *timeline) fragment(unit []byte, d time.Duration, shift bool) {
	eachBox(unit, func(typ string, moof []byte) {
		if typ != "moof" {
			return
		}
		eachBox(moof, func(typ string, traf []byte) {
			if typ != "traf" {
				return
			}
			var id uint32
			var tfdt []byte
			eachBox(traf, func(typ string, p []byte) {
				switch {
				case typ == "tfhd" && len(p) >= 8:
					id = binary.BigEndian.Uint32(p[4:])
				case typ == "tfdt" && len(p) >= 8:
					tfdt = p
				}
			})
			if id == 0 || tfdt == nil {
				return
			}
			v1 := tfdt[0] == 1 && len(tfdt) >= 12
			var t uint64
			if v1 {
				t = binary.BigEndian.Uint64(tfdt[4:])
			} else {
				t = uint64(binary.BigEndian.Uint32(tfdt[4:]))
			}
			if shift {
				off, ok := tl.offset[id]
				if !ok && tl.fresh {
					if end, seen := tl.end[id]; seen {
						off = int64(end) - int64(t)
					}
					tl.offset[id] = off
				}
				if nt := int64(t) + off; off != 0 && nt >= 0 {
					switch {
					case v1:
						binary.BigEndian.PutUint64(tfdt[4:], uint64(nt))
						t = uint64(nt)
					case nt <= math.MaxUint32:
						binary.BigEndian.PutUint32(tfdt[4:], uint32(nt))
						t = uint64(nt)
					}
				}
			}
			ticks := uint64(0)
			if ts := tl.timescale[id]; ts != 0 && d > 0 {
				ticks = uint64(d.Seconds()*float64(ts) + 0.5)
			}
			tl.end[id] = t + ticks
		})
	})
	if shift {
		tl.fresh = false
	}
}

// eachBox calls fn with the type and payload of every whole box in b.
func eachBox(b []byte, fn func(typ string, payload []byte)) {
	for len(b) >= 8 {
		size := uint64(binary.BigEndian.Uint32(b))
		typ := string(b[4:8])
		head := uint64(8)
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return
			}
			size, head = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < head || size > uint64(len(b)) {
			return
		}
		fn(typ, b[head:size])
		b = b[size:]
	}
}

// fullBoxField32 reads the 32-bit field at off0 (version 0) or off1
// (version 1) of a full box's payload; 0 when it is cut short.
func fullBoxField32(p []byte, off0, off1 int) uint32 {
	if len(p) < 4 {
		return 0
	}
	off := off0
	if p[0] == 1 {
		off = off1
	}
	if len(p) < off+4 {
		return 0
	}
	return binary.BigEndian.Uint32(p[off:])
}
