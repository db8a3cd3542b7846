package media

import (
	"bytes"
	"encoding/binary"
)

// stepFMP4 cuts b into init segments (ftyp, moov and what lies between) and
// fragments (styp/sidx/prft/emsg boxes, a moof, then its mdat). Other
// top-level boxes outside those groups (an mdat without moof, free, mfra,
// ...) are dropped. A box header that is implausible (unknown type, size 0,
// smaller than its header, or a group beyond MaxUnitSize) loses sync.
func (s *Splitter) stepFMP4(b []byte, off int64) (n, need int, err error) {
	i := 0
	for {
		if s.lost {
			j, need, found := resyncFMP4(b, i, s.opts.MaxUnitSize)
			s.drop(int64(j - i))
			if !found {
				return j, need, nil
			}
			i, s.lost = j, false
		}
		k := i
		group := 0 // box type that opened the group
		moof := -1 // offset of the moof in b, once complete
	group:
		for {
			if len(b)-k < 8 {
				return i, k - i + 8, nil
			}
			typ, size, hdr, ok := boxHeader(b[k:])
			if !ok {
				return i, k - i + 16, nil
			}
			if !isTopLevelType(typ) || size < uint64(hdr) || size > uint64(s.opts.MaxUnitSize-(k-i)) ||
				(typ == boxMoof && size < 16) {
				// Lost: search again from the group's second byte, so that
				// a fragment that a damaged one swallowed is found.
				i = s.loseFMP4(i)
				break group
			}
			end := k + int(size)
			if group == 0 {
				group = int(typ)
				if typ != boxFtyp && typ != boxMoov && !isFragmentStart(typ) {
					// A stray box: drop it, without buffering it.
					if end > len(b) {
						s.drop(int64(len(b) - i))
						s.skip = int64(end - len(b))
						return len(b), 0, nil
					}
					s.drop(int64(end - i))
					i = end
					break group
				}
			} else if typ == boxFtyp || (typ == boxMoov && group != boxFtyp) || typ == boxMdat && moof < 0 ||
				(moof >= 0 && isFragmentStart(typ)) || (group == boxFtyp && isFragmentStart(typ)) {
				// This box cannot continue the group: drop the group and
				// start again with this box.
				s.drop(int64(k - i))
				i = k
				break group
			}
			if end > len(b) {
				return i, end - i, nil
			}
			switch {
			case typ == boxMoov:
				if err := s.initSegment(b[i:end], b[k+hdr:end], off+int64(i)); err != nil {
					if err != errBadMoov {
						return end, 0, err
					}
					s.stats.Malformed++
					i = s.loseFMP4(i)
					break group
				}
				i = end
				break group
			case typ == boxMoof:
				var perr error
				s.trafs, perr = parseMoof(b[k+hdr:end], s.defs, s.trafs[:0])
				if perr != nil || len(s.trafs) == 0 {
					s.stats.Malformed++
					i = s.loseFMP4(i)
					break group
				}
				moof = k
			case typ == boxMdat:
				if err := s.fragment(b[i:end], off+int64(i)); err != nil {
					return end, 0, err
				}
				i = end
				break group
			}
			k = end
		}
	}
}

// loseFMP4 drops the byte at i, where a group that turned out broken
// starts, and has the search for a plausible box header begin after it.
func (s *Splitter) loseFMP4(i int) int {
	s.drop(1)
	s.lost = true
	s.stats.Resyncs++
	return i + 1
}

// resyncFMP4 looks for a plausible fragment or init box header at or after
// b[j]: the type, a sane size and, for a moof, an mfhd as its first child.
// Without found, the bytes before the returned j are garbage and need bytes
// from b[j:] are wanted.
func resyncFMP4(b []byte, j, maxSize int) (int, int, bool) {
	for ; j+8 <= len(b); j++ {
		size := binary.BigEndian.Uint32(b[j:])
		switch binary.BigEndian.Uint32(b[j+4:]) {
		case boxMoof:
			if len(b)-j < 16 {
				return j, 16, false
			}
			if size >= 24 && int64(size) <= int64(maxSize) && binary.BigEndian.Uint32(b[j+12:]) == boxMfhd {
				return j, 0, true
			}
		case boxStyp, boxFtyp:
			if size >= 16 && size <= 4096 && size%4 == 0 {
				return j, 0, true
			}
		case boxSidx, boxEmsg, boxPrft, boxMoov:
			if len(b)-j < 9 {
				return j, 9, false
			}
			if size >= 12 && int64(size) <= int64(maxSize) && b[j+8] <= 1 {
				return j, 0, true
			}
		}
	}
	return j, 8, false
}

var errBadMoov = malformed("moov")

// initSegment handles a complete init segment whose moov payload is moov.
func (s *Splitter) initSegment(seg, moov []byte, off int64) error {
	mv, err := parseMoov(moov, false)
	if err != nil {
		return errBadMoov
	}
	s.defs = s.defs[:0]
	s.primary = 0
	var primaryVideo bool
	for _, t := range mv.tracks {
		s.defs = append(s.defs, t.defaults)
		if s.primary == 0 || (t.defaults.video && !primaryVideo) {
			s.primary, primaryVideo = t.ID, t.defaults.video
		}
	}
	s.stats.UnitBytes += int64(len(seg))
	if bytes.Equal(seg, s.header) {
		return nil
	}
	s.header = bytes.Clone(seg)
	s.stats.Headers++
	return s.emit(Unit{Header: true, Data: seg, Offset: off, Keyframe: true})
}

// fragment emits a complete fragment; s.trafs holds its moof's trafs.
func (s *Splitter) fragment(data []byte, off int64) error {
	tr := &s.trafs[0]
	for i := range s.trafs {
		if s.trafs[i].trackID == s.primary {
			tr = &s.trafs[i]
			break
		}
	}
	u := Unit{Data: data, Offset: off, Samples: int(min(tr.samples, 1<<31-1)), Keyframe: tr.keyframe()}
	if d := findDefaults(s.defs, tr.trackID); d != nil {
		u.Start = ticks(tr.baseTime, d.timescale)
		u.Duration = ticks(tr.duration, d.timescale)
		if !d.video {
			u.Keyframe = true
		}
	}
	s.stats.Units++
	s.stats.UnitBytes += int64(len(data))
	return s.emit(u)
}
