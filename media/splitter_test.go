package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// collected is a unit as the test keeps it (Data copied).
type collected struct {
	Unit
	data []byte
}

// split feeds b to a new Splitter in chunks whose sizes chunk returns, then
// flushes, and returns what it emitted.
func split(t testing.TB, kind Kind, opts SplitterOptions, b []byte, chunk func() int) ([]collected, *Splitter) {
	t.Helper()
	var out []collected
	s := NewSplitterOptions(kind, opts, func(u Unit) error {
		out = append(out, collected{u, bytes.Clone(u.Data)})
		return nil
	})
	for p := b; len(p) > 0; {
		n := min(max(chunk(), 1), len(p))
		if w, err := s.Write(p[:n]); err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		st := s.Stats()
		if st.UnitBytes+st.DroppedBytes+int64(len(s.buf)) != st.Bytes {
			t.Fatalf("accounting: %d in units + %d dropped + %d buffered != %d written", st.UnitBytes, st.DroppedBytes, len(s.buf), st.Bytes)
		}
		p = p[n:]
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	return out, s
}

func chunkings(seed uint64) map[string]func() int {
	r := rand.New(rand.NewPCG(seed, 1))
	return map[string]func() int{
		"whole":  func() int { return 1 << 30 },
		"1":      func() int { return 1 },
		"7":      func() int { return 7 },
		"1000":   func() int { return 1000 },
		"64K":    func() int { return 64 << 10 },
		"random": func() int { return 1 + r.IntN(20000) },
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSplitterFMP4MatchesProbe(t *testing.T) {
	for _, name := range []string{"fmp4.mp4", "m4a-frag.m4a"} {
		b := readFixture(t, name)
		info, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []Kind{KindFMP4, ""} {
			for cname, chunk := range chunkings(1) {
				units, s := split(t, kind, SplitterOptions{}, b, chunk)
				if len(units) != 1+info.Fragments {
					t.Fatalf("%s/%s: %d units, want header + %d fragments", name, cname, len(units), info.Fragments)
				}
				h := units[0]
				if !h.Header || !bytes.Equal(h.data, b[:info.HeaderEnd()]) || h.Offset != 0 {
					t.Errorf("%s/%s: first unit is not the init segment [0,%d)", name, cname, info.HeaderEnd())
				}
				if !bytes.Equal(s.Header(), h.data) {
					t.Errorf("%s/%s: Header() differs from the emitted header", name, cname)
				}
				for i, f := range info.FragmentList {
					u := units[i+1]
					if u.Header || u.Offset != f.Offset || !bytes.Equal(u.data, b[f.Offset:f.End()]) {
						t.Errorf("%s/%s: unit %d at %d (%d bytes), want fragment at %d (%d bytes)", name, cname, i+1, u.Offset, len(u.data), f.Offset, f.Length)
					}
					if u.Start != f.Start || u.Duration != f.Duration || u.Keyframe != f.Keyframe || !u.Keyframe {
						t.Errorf("%s/%s: unit %d start %v dur %v key %v; probe says %v %v %v", name, cname, i+1, u.Start, u.Duration, u.Keyframe, f.Start, f.Duration, f.Keyframe)
					}
				}
				st := s.Stats()
				if st.Resyncs != 0 || st.Units != int64(info.Fragments) || st.Headers != 1 {
					t.Errorf("%s/%s: stats %+v", name, cname, st)
				}
				if s.Kind() != KindFMP4 {
					t.Errorf("kind %q", s.Kind())
				}
			}
		}
	}
}

// mp3Frames returns the offsets of the frames of an MP3 fixture's audio
// (Xing frame excluded), by Probe's reading.
func mp3Frames(t testing.TB, b []byte) (info *Info, offs []int64) {
	info, err := Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for off := info.FirstFrameOffset; off < info.AudioEnd; {
		offs = append(offs, off)
		off += int64(frameSizeFast(binary.BigEndian.Uint32(b[off:])))
	}
	return info, offs
}

func TestSplitterMP3MatchesProbe(t *testing.T) {
	for _, name := range []string{"mp3-cbr128.mp3", "mp3-vbr-q4.mp3", "mp3-vbri.mp3", "mp3-id3footer.mp3", "mp3-mono22k-64k.mp3", "mp3-bare.mp3"} {
		b := readFixture(t, name)
		info, offs := mp3Frames(t, b)
		// Trailing tags are not audio; a live stream would not carry them.
		stream := b[:info.AudioEnd]
		var first []collected
		for _, kind := range []Kind{KindMP3, ""} {
			for cname, chunk := range chunkings(2) {
				units, s := split(t, kind, SplitterOptions{}, stream, chunk)
				var got []byte
				var frames int
				var dur time.Duration
				for i, u := range units {
					if u.Header || !u.Keyframe || u.Start != dur {
						t.Fatalf("%s/%s: unit %d: %+v (start want %v)", name, cname, i, u.Unit, dur)
					}
					if i < len(units)-1 && (u.Samples != 4 && u.Samples != 5) {
						t.Errorf("%s/%s: unit %d has %d frames", name, cname, i, u.Samples)
					}
					got = append(got, u.data...)
					frames += u.Samples
					dur += u.Duration
				}
				if !bytes.Equal(got, b[info.FirstFrameOffset:info.AudioEnd]) {
					t.Errorf("%s/%s: units hold %d bytes, want the %d bytes of audio frames", name, cname, len(got), info.AudioEnd-info.FirstFrameOffset)
				}
				if int64(frames) != info.Frames || len(offs) != frames {
					t.Errorf("%s/%s: %d frames, probe %d", name, cname, frames, info.Frames)
				}
				if d := dur.Seconds() - info.DurationS; d > 1e-6 || d < -1e-6 {
					t.Errorf("%s/%s: duration %v, probe %v", name, cname, dur, info.DurationS)
				}
				if st := s.Stats(); st.DroppedBytes != info.FirstFrameOffset || st.Resyncs != 0 {
					t.Errorf("%s/%s: stats %+v, want %d bytes (tags, Xing frame) dropped", name, cname, st, info.FirstFrameOffset)
				}
				if first == nil {
					first = units
				} else if len(first) != len(units) {
					t.Errorf("%s/%s: %d units, another chunking gave %d", name, cname, len(units), len(first))
				}
			}
		}
	}
}

func TestSplitterMP3UnitDuration(t *testing.T) {
	b := readFixture(t, "mp3-cbr128.mp3")
	for _, d := range []time.Duration{time.Nanosecond, 26 * time.Millisecond, time.Second} {
		units, _ := split(t, KindMP3, SplitterOptions{MP3UnitDuration: d}, b, func() int { return 5000 })
		frameDur := time.Duration(1152 * int64(time.Second) / 44100)
		want := max(1, int((d+frameDur-1)/frameDur))
		if units[0].Samples != want {
			t.Errorf("MP3UnitDuration %v: %d frames per unit, want %d", d, units[0].Samples, want)
		}
	}
}

// TestSplitterMP3Resync: garbage (random bytes, zeros, a false sync word,
// an ID3 tag) between frames and over parts of frames; every unit after
// must be whole frames of the original, and every frame away from the
// damage must come through.
func TestSplitterMP3Resync(t *testing.T) {
	b := readFixture(t, "mp3-cbr128.mp3")
	info, offs := mp3Frames(t, b)
	r := rand.New(rand.NewPCG(7, 7))
	noise := make([]byte, 3000)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	tag := append([]byte("ID3\x03\x00\x00\x00\x00\x01\x00"), make([]byte, 128)...)
	var stream []byte
	damaged := map[int64]bool{}
	stream = append(stream, noise[:500]...) // join mid-stream: garbage first
	for i, off := range offs {
		end := info.AudioEnd
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		frame := b[off:end]
		switch i {
		case 20:
			stream = append(stream, noise[500:1500]...)
		case 40:
			stream = append(stream, 0xff, 0xfb, 0x90) // a lone sync word
		case 60:
			stream = append(stream, tag...)
		case 80: // cut a frame short
			frame = frame[:100]
			damaged[off] = true
		case 100:
			stream = append(stream, make([]byte, 2000)...)
		}
		stream = append(stream, frame...)
	}
	for cname, chunk := range chunkings(3) {
		units, s := split(t, KindMP3, SplitterOptions{MP3UnitDuration: time.Nanosecond}, stream, chunk)
		seen := map[string]bool{}
		for _, u := range units {
			if u.Samples != 1 || !bytes.Contains(b, u.data) {
				t.Fatalf("%s: unit at %d (%d bytes) is not one frame of the original", cname, u.Offset, len(u.data))
			}
			seen[string(u.data)] = true
		}
		missing := 0
		for i, off := range offs {
			end := info.AudioEnd
			if i+1 < len(offs) {
				end = offs[i+1]
			}
			if !seen[string(b[off:end])] && !damaged[off] {
				missing++
			}
		}
		// Resync may cost the frame after the damage (its predecessor is
		// needed to confirm it); nothing else.
		if missing > 5 {
			t.Errorf("%s: %d undamaged frames missing", cname, missing)
		}
		if st := s.Stats(); st.Resyncs < 4 {
			t.Errorf("%s: stats %+v: want a resync per damage", cname, st)
		}
	}
}

func TestSplitterFMP4Resync(t *testing.T) {
	b := readFixture(t, "fmp4.mp4")
	info, err := Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	frags := info.FragmentList
	frag := func(i int) []byte { return b[frags[i].Offset:frags[i].End()] }
	r := rand.New(rand.NewPCG(9, 9))
	noise := make([]byte, 5000)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	var stream []byte
	stream = append(stream, frag(1)[3000:]...) // joined mid-fragment
	stream = append(stream, b[:info.HeaderEnd()]...)
	stream = append(stream, frag(0)...)
	stream = append(stream, noise[:2000]...)
	stream = append(stream, frag(1)...)
	stream = append(stream, frag(2)[:500]...) // cut short
	stream = append(stream, frag(3)...)
	bad := bytes.Clone(frag(2)) // moof size field broken
	binary.BigEndian.PutUint32(bad, 0xfffffff0)
	stream = append(stream, bad...)
	stream = append(stream, b[:info.HeaderEnd()]...) // identical init again: not re-emitted
	stream = append(stream, frag(4)...)
	big := bytes.Clone(frag(2)) // a 1 GB mdat claim
	mdat := bytes.Index(big, []byte("mdat")) - 4
	binary.BigEndian.PutUint32(big[mdat:], 1<<30)
	stream = append(stream, big...)
	stream = append(stream, frag(0)...)

	for cname, chunk := range chunkings(4) {
		units, s := split(t, KindFMP4, SplitterOptions{}, stream, chunk)
		var got []string
		for _, u := range units {
			switch {
			case u.Header:
				got = append(got, "init")
			default:
				found := false
				for i := range frags {
					if bytes.Equal(u.data, frag(i)) {
						got = append(got, "frag"+itoa(i))
						found = true
					}
				}
				if !found {
					t.Fatalf("%s: unit at %d (%d bytes) is no fragment of the original", cname, u.Offset, len(u.data))
				}
			}
		}
		want := []string{"init", "frag0", "frag1", "frag3", "frag4", "frag0"}
		if len(got) != len(want) {
			t.Errorf("%s: got %v, want %v (stats %+v)", cname, got, want, s.Stats())
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: got %v, want %v", cname, got, want)
				break
			}
		}
		if cap(s.buf) > 4<<20 {
			t.Errorf("%s: buffer grew to %d bytes", cname, cap(s.buf))
		}
	}
}

func TestSplitterDetect(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	noise := make([]byte, detectWindow+10)
	for i := range noise {
		noise[i] = byte(r.Uint32()) &^ 0x80 // no 0xff: no sync word
	}
	s := NewSplitter("", func(Unit) error { return nil })
	_, err := s.Write(noise)
	if !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("noise: %v", err)
	}
	s = NewSplitter("", func(Unit) error { return nil })
	err = nil
	for i := 0; i < 2*detectWindow && err == nil; i += 100 {
		_, err = s.Write(noise[:100])
	}
	if !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("noise in chunks: %v", err)
	}
	if _, err := s.Write(noise[:100]); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("after the error: %v", err)
	}
	if _, err := NewSplitter("webm", func(Unit) error { return nil }).Write([]byte("12345678")); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("kind webm: %v", err)
	}
	if s := NewSplitter(KindMP4, nil); s.Kind() != KindFMP4 {
		t.Errorf("kind mp4 is taken as %q", s.Kind())
	}
}

func TestSplitterEmitError(t *testing.T) {
	boom := errors.New("boom")
	s := NewSplitter(KindMP3, func(Unit) error { return boom })
	b := readFixture(t, "mp3-cbr128.mp3")
	if _, err := s.Write(b); !errors.Is(err, boom) {
		t.Errorf("Write: %v", err)
	}
}

// TestSplitterNoSizeDrivenAllocation: a moof declaring 60 MB, fed 1 MB of
// it, must not allocate the 60 MB.
func TestSplitterNoSizeDrivenAllocation(t *testing.T) {
	hdr := []byte("\x03\x90\x00\x00moof\x00\x00\x00\x10mfhd\x00\x00\x00\x00\x00\x00\x00\x01")
	s := NewSplitter(KindFMP4, func(Unit) error { return nil })
	s.Write(hdr)
	chunk := make([]byte, 64<<10)
	for range 16 {
		s.Write(chunk)
	}
	if cap(s.buf) > 4<<20 {
		t.Errorf("buffer capacity %d after 1 MB of a 60 MB box", cap(s.buf))
	}
}

// TestSplitterMP3RateChange: a source switching from 44.1 kHz stereo to
// 22.05 kHz mono mid-stream; unit times stay continuous.
func TestSplitterMP3RateChange(t *testing.T) {
	a, b := readFixture(t, "mp3-cbr128.mp3"), readFixture(t, "mp3-mono22k-64k.mp3")
	ia, _ := mp3Frames(t, a)
	ib, _ := mp3Frames(t, b)
	stream := append(bytes.Clone(a[ia.FirstFrameOffset:ia.AudioEnd]), b[ib.FirstFrameOffset:ib.AudioEnd]...)
	units, s := split(t, KindMP3, SplitterOptions{}, stream, func() int { return 4096 })
	var at time.Duration
	frames := int64(0)
	for i, u := range units {
		if u.Start != at {
			t.Fatalf("unit %d starts at %v, want %v", i, u.Start, at)
		}
		at += u.Duration
		frames += int64(u.Samples)
	}
	// The last frame before the switch cannot be confirmed by a frame of
	// the same stream and is lost.
	if frames != ia.Frames+ib.Frames-1 || s.Stats().Resyncs != 1 {
		t.Errorf("%d frames (want %d), stats %+v", frames, ia.Frames+ib.Frames-1, s.Stats())
	}
	want := ia.DurationS + ib.DurationS - 1152.0/44100
	if d := at.Seconds() - want; d > 1e-6 || d < -1e-6 {
		t.Errorf("total %v, want %vs", at, want)
	}
}
