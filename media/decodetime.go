package media

import (
	"encoding/binary"
	"math"
)

// TrackTimescales returns the ticks per second of each track of an fMP4
// init segment (ftyp+moov), read as the Splitter reads them.
func TrackTimescales(init []byte) (map[uint32]uint32, error) {
	out := map[uint32]uint32{}
	err := childBoxes(init, func(typ uint32, p []byte) error {
		if typ != boxMoov {
			return nil
		}
		mv, err := parseMoov(p, false)
		if err != nil {
			return err
		}
		for _, t := range mv.tracks {
			out[t.ID] = t.defaults.timescale
		}
		return nil
	})
	return out, err
}

// RewriteDecodeTimes calls fn with the track ID and decode time (tfdt) of
// every track fragment in an fMP4 fragment (moof+mdat, as the Splitter cuts
// them), and the largest time the box can hold (a version 0 tfdt has 32
// bits); what fn returns, at most that, is written back in place. No box
// changes size. A fragment that does not parse is an error, left as it was.
func RewriteDecodeTimes(fragment []byte, fn func(track uint32, t, limit uint64) uint64) error {
	var trafs []trafSummary
	return childBoxes(fragment, func(typ uint32, p []byte) error {
		if typ != boxMoof {
			return nil
		}
		var err error
		if trafs, err = parseMoof(p, nil, trafs[:0]); err != nil {
			return err
		}
		for _, tr := range trafs {
			if !tr.hasBaseTime {
				continue
			}
			if tr.tfdt[0] == 1 {
				binary.BigEndian.PutUint64(tr.tfdt[4:], fn(tr.trackID, tr.baseTime, math.MaxUint64))
			} else {
				binary.BigEndian.PutUint32(tr.tfdt[4:], uint32(min(fn(tr.trackID, tr.baseTime, math.MaxUint32), math.MaxUint32)))
			}
		}
		return nil
	})
}
