package media

import (
	"encoding/binary"
	"time"
)

// maxLiveID3 bounds an ID3v2 tag the MP3 splitter skips in a live stream;
// a larger "tag" is taken for garbage.
const maxLiveID3 = 16 << 20

// stepMP3 cuts b into units of framesPerUnit frames. A frame is only
// emitted once the header of the frame after it has been seen to be valid
// and consistent: a false sync word in garbage then costs nothing, and a
// frame cut short by damage is not emitted whole with garbage in it.
func (s *Splitter) stepMP3(b []byte, off int64) (n, need int, err error) {
	i := 0
	for {
		if !s.locked {
			j, need, ok := s.syncMP3(b, i)
			s.drop(int64(j - i))
			if !ok {
				return j, need, nil
			}
			i = j
		}
		// Walk framesPerUnit frames and the header after them.
		k, frames, last := i, 0, i
		for {
			if len(b)-k < 4 {
				return i, k - i + 4, nil
			}
			h := binary.BigEndian.Uint32(b[k:])
			size := frameSizeFast(h)
			if size == 0 || h&mp3LockMask != s.lock {
				break // lost sync: the frame before k is unconfirmed
			}
			if frames == s.framesPerUnit {
				last = k // the header at k confirms the whole unit
				break
			}
			if len(b)-k < size {
				return i, k - i + size + 4, nil
			}
			last = k
			k += size
			frames++
		}
		if frames == s.framesPerUnit && last == k {
			if err := s.emitMP3(b[i:k], off+int64(i), frames); err != nil {
				return k, 0, err
			}
			i = k
			continue
		}
		// Sync lost at k. Emit the confirmed frames, those before last,
		// and search again from last.
		if last > i {
			if err := s.emitMP3(b[i:last], off+int64(i), frames-1); err != nil {
				return last, 0, err
			}
		}
		s.locked = false
		s.stats.Resyncs++
		i = max(last, i)
	}
}

func (s *Splitter) emitMP3(data []byte, off int64, frames int) error {
	start := s.base + ticks(uint64(s.samples), uint32(s.sampleRate))
	s.samples += int64(frames) * s.samplesPerFr
	end := s.base + ticks(uint64(s.samples), uint32(s.sampleRate))
	s.stats.Units++
	s.stats.UnitBytes += int64(len(data))
	return s.emit(Unit{Data: data, Offset: off, Start: start, Duration: end - start, Keyframe: true, Samples: frames})
}

// syncMP3 looks for the first frame at or after b[i] that is followed by a
// consistent second frame, skipping ID3v2 tags and a Xing/Info/VBRI frame
// on the way. With ok it has locked onto that stream at b[j]; without, it
// needs need bytes from b[j:] to decide (need 0: it consumed all of b and
// may have set s.skip). Either way the caller drops b[i:j].
func (s *Splitter) syncMP3(b []byte, i int) (j, need int, ok bool) {
	for j = i; j < len(b); j++ {
		switch b[j] {
		case 'I':
			if len(b)-j < 10 {
				return j, 10, false
			}
			t, ok := parseID3v2(b[j:], "ID3")
			if !ok || t.total() > maxLiveID3 {
				continue
			}
			if int64(len(b)-j) < t.total() {
				s.skip = t.total() - int64(len(b)-j)
				return len(b), 0, false
			}
			j += int(t.total()) - 1
		case 0xff:
			if len(b)-j < 4 {
				return j, 4, false
			}
			h := binary.BigEndian.Uint32(b[j:])
			fh, ok := parseFrameHeader(h)
			if !ok {
				continue
			}
			if len(b)-j < fh.size+4 {
				return j, fh.size + 4, false
			}
			h2 := binary.BigEndian.Uint32(b[j+fh.size:])
			if h2&mp3LockMask != h&mp3LockMask || frameSizeFast(h2) == 0 {
				continue
			}
			// Fold the time so far into base: the sample rate may change.
			s.base += ticks(uint64(s.samples), uint32(s.sampleRate))
			s.samples = 0
			s.locked = true
			s.lock = h & mp3LockMask
			s.samplesPerFr, s.sampleRate = int64(fh.samples), int64(fh.sampleRate)
			frameDur := time.Duration(int64(fh.samples) * int64(time.Second) / int64(fh.sampleRate))
			s.framesPerUnit = max(1, int((s.opts.MP3UnitDuration+frameDur-1)/frameDur))
			if _, isTag := parseVBRTag(fh, b[j:j+fh.size]); isTag {
				// A Xing/Info/VBRI frame carries no audio, and its frame
				// count would mislead a player that joins here.
				j += fh.size
			}
			return j, 0, true
		}
	}
	return j, 0, false
}
