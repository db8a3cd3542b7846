package streams

import (
	"maps"
	"time"

	"github.com/castmesh/castmesh/media"
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
	ts, _ := media.TrackTimescales(init) // what parsed: a broken init only loses durations
	maps.Copy(tl.timescale, ts)
}

// fragment notes (and, when shift is set, shifts) the tfdt of every track
// fragment in a unit of duration d. unit is changed in place.
func (tl *timeline) fragment(unit []byte, d time.Duration, shift bool) {
	media.RewriteDecodeTimes(unit, func(id uint32, t, limit uint64) uint64 {
		if shift {
			off, ok := tl.offset[id]
			if !ok && tl.fresh {
				if end, seen := tl.end[id]; seen {
					off = int64(end) - int64(t)
				}
				tl.offset[id] = off
			}
			if nt := int64(t) + off; off != 0 && nt >= 0 && uint64(nt) <= limit {
				t = uint64(nt)
			}
		}
		ticks := uint64(0)
		if ts := tl.timescale[id]; ts != 0 && d > 0 {
			ticks = uint64(d.Seconds()*float64(ts) + 0.5)
		}
		tl.end[id] = t + ticks
		return t
	})
	if shift {
		tl.fresh = false
	}
}
