package media

import (
	"encoding/binary"
	"math"
	"math/bits"
	"time"
)

// trackDefaults is what a fragment parser needs to know of a track from the
// init segment: its timescale, whether it is video, and its trex defaults.
type trackDefaults struct {
	id        uint32
	timescale uint32
	video     bool
	duration  uint32 // trex default_sample_duration
	size      uint32 // trex default_sample_size
	flags     uint32 // trex default_sample_flags
	hasTrex   bool
}

// trafSummary is what one traf of a moof says about its track's run of
// samples.
type trafSummary struct {
	trackID     uint32
	baseTime    uint64 // tfdt baseMediaDecodeTime
	hasBaseTime bool
	tfdt        []byte // the tfdt payload, within the moof parsed
	duration    uint64 // sum of sample durations, in the track's timescale
	samples     uint64
	bytes       uint64 // sum of sample sizes
	firstFlags  uint32 // sample_flags of the first sample
	flagsKnown  bool
	firstCTS    int64 // composition time offset of the first sample
}

// keyframe reports whether the traf's first sample is a sync sample
// (sample_is_non_sync_sample clear). Unknown flags count as sync.
func (t *trafSummary) keyframe() bool {
	return !t.flagsKnown || t.firstFlags&0x10000 == 0
}

func findDefaults(defs []trackDefaults, id uint32) *trackDefaults {
	for i := range defs {
		if defs[i].id == id {
			return &defs[i]
		}
	}
	return nil
}

// parseMoof appends a summary of each traf of the moof payload to out.
// defs (may be empty) supplies trex defaults. It allocates nothing beyond
// growing out, and its work is bounded by len(moof).
func parseMoof(moof []byte, defs []trackDefaults, out []trafSummary) ([]trafSummary, error) {
	b := moof
	for len(b) >= 8 {
		typ, size, hdr, ok := boxHeader(b)
		if !ok || size < uint64(hdr) || size > uint64(len(b)) {
			if size == 0 && ok {
				size = uint64(len(b))
			} else {
				return out, malformed("moof: child box %q has a bad size", fourCC(typ))
			}
		}
		if typ == boxTraf {
			var s trafSummary
			if err := parseTraf(b[hdr:size], defs, &s); err != nil {
				return out, err
			}
			out = append(out, s)
		}
		b = b[size:]
	}
	return out, nil
}

func parseTraf(traf []byte, defs []trackDefaults, s *trafSummary) error {
	var (
		def                       *trackDefaults
		dDur, dSize, dFlags       uint32
		hasDur, hasSize, hasFlags bool
		sawTfhd                   bool
	)
	b := traf
	for len(b) >= 8 {
		typ, size, hdr, ok := boxHeader(b)
		if !ok || size < uint64(hdr) || size > uint64(len(b)) {
			if size == 0 && ok {
				size = uint64(len(b))
			} else {
				return malformed("traf: child box %q has a bad size", fourCC(typ))
			}
		}
		p := b[hdr:size]
		b = b[size:]
		switch typ {
		case boxTfhd:
			_, flags, rest, ok := fullBox(p)
			if !ok || len(rest) < 4 {
				return malformed("tfhd: too short")
			}
			sawTfhd = true
			s.trackID = binary.BigEndian.Uint32(rest)
			rest = rest[4:]
			def = findDefaults(defs, s.trackID)
			if def != nil && def.hasTrex {
				dDur, dSize, dFlags = def.duration, def.size, def.flags
				hasDur, hasSize, hasFlags = true, true, true
			}
			need := 0
			for _, f := range [...]struct {
				bit uint32
				n   int
			}{{0x1, 8}, {0x2, 4}, {0x8, 4}, {0x10, 4}, {0x20, 4}} {
				if flags&f.bit != 0 {
					need += f.n
				}
			}
			if len(rest) < need {
				return malformed("tfhd: flags %#x need %d bytes, box has %d", flags, need, len(rest))
			}
			if flags&0x1 != 0 {
				rest = rest[8:]
			}
			if flags&0x2 != 0 {
				rest = rest[4:]
			}
			if flags&0x8 != 0 {
				dDur, hasDur = binary.BigEndian.Uint32(rest), true
				rest = rest[4:]
			}
			if flags&0x10 != 0 {
				dSize, hasSize = binary.BigEndian.Uint32(rest), true
				rest = rest[4:]
			}
			if flags&0x20 != 0 {
				dFlags, hasFlags = binary.BigEndian.Uint32(rest), true
			}
		case boxTfdt:
			v, _, rest, ok := fullBox(p)
			switch {
			case ok && v == 1 && len(rest) >= 8:
				s.baseTime = binary.BigEndian.Uint64(rest)
			case ok && v == 0 && len(rest) >= 4:
				s.baseTime = uint64(binary.BigEndian.Uint32(rest))
			default:
				return malformed("tfdt: too short or unknown version")
			}
			s.hasBaseTime, s.tfdt = true, p
		case boxTrun:
			if !sawTfhd {
				return malformed("trun before tfhd")
			}
			if err := parseTrun(p, s, dDur, dSize, dFlags, hasDur, hasSize, hasFlags); err != nil {
				return err
			}
		}
	}
	if !sawTfhd {
		return malformed("traf without tfhd")
	}
	return nil
}

func parseTrun(p []byte, s *trafSummary, dDur, dSize, dFlags uint32, hasDur, hasSize, hasFlags bool) error {
	version, flags, rest, ok := fullBox(p)
	if !ok || len(rest) < 4 {
		return malformed("trun: too short")
	}
	n := uint64(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if flags&0x1 != 0 { // data_offset
		if len(rest) < 4 {
			return malformed("trun: too short")
		}
		rest = rest[4:]
	}
	var firstFlags uint32
	hasFirst := false
	if flags&0x4 != 0 { // first_sample_flags
		if len(rest) < 4 {
			return malformed("trun: too short")
		}
		firstFlags, hasFirst = binary.BigEndian.Uint32(rest), true
		rest = rest[4:]
	}
	per := 0
	for _, bit := range [...]uint32{0x100, 0x200, 0x400, 0x800} {
		if flags&bit != 0 {
			per += 4
		}
	}
	if per > 0 && n > uint64(len(rest)/per) {
		return malformed("trun: %d samples need %d bytes, box has %d", n, n*uint64(per), len(rest))
	}
	first := s.samples == 0
	if first {
		switch {
		case hasFirst:
			s.firstFlags, s.flagsKnown = firstFlags, true
		case flags&0x400 != 0 && n > 0:
			off := 0
			if flags&0x100 != 0 {
				off += 4
			}
			if flags&0x200 != 0 {
				off += 4
			}
			s.firstFlags, s.flagsKnown = binary.BigEndian.Uint32(rest[off:]), true
		case hasFlags:
			s.firstFlags, s.flagsKnown = dFlags, true
		}
		if flags&0x800 != 0 && n > 0 {
			off := per - 4
			v := binary.BigEndian.Uint32(rest[off:])
			if version == 0 {
				s.firstCTS = int64(v)
			} else {
				s.firstCTS = int64(int32(v))
			}
		}
	}
	var dur, size uint64
	if flags&0x100 == 0 {
		if !hasDur && n > 0 {
			dDur = 0 // unknown: no duration information at all
		}
		hi, lo := bits.Mul64(n, uint64(dDur))
		if hi != 0 {
			return malformed("trun: duration overflows")
		}
		dur = lo
	}
	if flags&0x200 == 0 {
		if !hasSize {
			dSize = 0
		}
		size = n * uint64(dSize) // n < 2^32, dSize < 2^32: no overflow
	}
	if per > 0 {
		dOff, sOff := -1, -1
		off := 0
		if flags&0x100 != 0 {
			dOff = off
			off += 4
		}
		if flags&0x200 != 0 {
			sOff = off
		}
		rec := rest[:n*uint64(per)]
		for i := 0; i+per <= len(rec); i += per {
			if dOff >= 0 {
				dur += uint64(binary.BigEndian.Uint32(rec[i+dOff:]))
			}
			if sOff >= 0 {
				size += uint64(binary.BigEndian.Uint32(rec[i+sOff:]))
			}
		}
	}
	var c1, c2 uint64
	s.duration, c1 = bits.Add64(s.duration, dur, 0)
	s.bytes, c2 = bits.Add64(s.bytes, size, 0)
	if c1|c2 != 0 {
		return malformed("trun: sums overflow")
	}
	s.samples += n
	return nil
}

// ticks converts a count of timescale units to a time.Duration, saturating
// instead of overflowing. A zero timescale gives 0.
func ticks(v uint64, timescale uint32) time.Duration {
	if timescale == 0 {
		return 0
	}
	hi, lo := bits.Mul64(v, uint64(time.Second))
	if hi >= uint64(timescale) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(timescale))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(q)
}
