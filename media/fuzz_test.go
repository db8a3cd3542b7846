package media

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite testdata/fuzz/* seed corpora from the fixtures")

// seedLimit bounds a seed: fuzzing mutates small inputs far better.
const seedLimit = 4 << 10

// seedFiles are the fixtures each fuzz target is seeded from: the tiny
// seed-* files whole, the first seedLimit bytes of the others.
func seedFiles(tb testing.TB, patterns ...string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, pat := range patterns {
		files, _ := filepath.Glob(filepath.Join(fixtures, pat))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatal(err)
			}
			out[filepath.Base(f)] = b[:min(len(b), seedLimit)]
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no fixtures match %v", patterns)
	}
	return out
}

// fuzzSeeds lists, per fuzz target, the fixtures it starts from.
var fuzzSeeds = map[string][]string{
	"FuzzProbe":         {"seed-*", "bad-*", "mp3-id3footer.mp3", "mp3-vbri.mp3", "mp3-id3v1.mp3"},
	"FuzzSplitterMP3":   {"seed-*.mp3", "mp3-vbr-q4.mp3", "mp3-mono22k-64k.mp3", "bad-mp3-corrupt-middle.mp3"},
	"FuzzSplitterFMP4":  {"seed-fmp4.mp4", "seed-frag.m4a", "bad-fmp4-trun-count.mp4"},
	"FuzzID3":           {"seed-*.mp3", "mp3-id3footer.mp3", "mp3-id3v1.mp3"},
	"FuzzParseMoof":     {"seed-fmp4.mp4", "seed-frag.m4a"},
	"FuzzParseMoov":     {"seed-faststart.mp4", "seed-fmp4.mp4", "seed-frag.m4a"},
	"FuzzMP3FrameTable": nil,
}

// boxPayloads returns the payloads of every box of type typ in b, found by
// a plain search (good enough for seeds).
func boxPayloads(b []byte, typ string) [][]byte {
	var out [][]byte
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(typ))
		if j < 0 {
			return out
		}
		at := i + j - 4
		i += j + 4
		if at < 0 {
			continue
		}
		size := int(binary.BigEndian.Uint32(b[at:]))
		if size >= 8 && at+size <= len(b) {
			out = append(out, b[at+8:at+size])
		}
	}
}

// seedBytes turns the fixtures into each []byte-taking target's inputs.
func seedBytes(tb testing.TB, target string) [][]byte {
	tb.Helper()
	var in [][]byte
	files := seedFiles(tb, fuzzSeeds[target]...)
	for _, name := range sortedKeys(files) {
		b := files[name]
		switch target {
		case "FuzzParseMoof":
			in = append(in, boxPayloads(b, "moof")...)
		case "FuzzParseMoov":
			in = append(in, boxPayloads(b, "moov")...)
		default:
			in = append(in, b)
		}
	}
	return in
}

// seedChunks are the chunk sizes the splitter targets start from.
var seedChunks = []uint16{1000, 7}

// seedHeaders start FuzzMP3FrameTable.
var seedHeaders = []uint32{0xfffb9064, 0xfff3c4c4, 0xffe2c0c0}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// TestFuzzSeeds checks that each target's committed seed corpus exists;
// with -update-fuzz-seeds it rewrites the seed-* files from the fixtures.
// The other files there are inputs the fuzzer found interesting, kept so
// that plain go test runs them.
func TestFuzzSeeds(t *testing.T) {
	for target := range fuzzSeeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateFuzzSeeds {
			// Only the seed-* files: inputs the fuzzer found stay.
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, f := range old {
				os.Remove(f)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			var entries []string
			switch target {
			case "FuzzMP3FrameTable":
				for _, h := range seedHeaders {
					entries = append(entries, fmt.Sprintf("uint32(%d)\n", h))
				}
			case "FuzzSplitterMP3", "FuzzSplitterFMP4":
				for _, b := range seedBytes(t, target) {
					for _, c := range seedChunks {
						entries = append(entries, fmt.Sprintf("[]byte(%q)\nuint16(%d)\n", b, c))
					}
				}
			default:
				for _, b := range seedBytes(t, target) {
					entries = append(entries, fmt.Sprintf("[]byte(%q)\n", b))
				}
			}
			for i, e := range entries {
				path := filepath.Join(dir, fmt.Sprintf("seed-%03d", i))
				if err := os.WriteFile(path, []byte("go test fuzz v1\n"+e), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) == 0 {
			t.Errorf("%s: no seed corpus in %s (run go test -run TestFuzzSeeds -update-fuzz-seeds)", target, dir)
		}
	}
}

func FuzzProbe(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzProbe") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		size := int64(len(b))
		info, err := Probe(bytes.NewReader(b), size)
		if err != nil {
			if !errors.Is(err, ErrUnknownFormat) && !errors.Is(err, ErrTruncated) &&
				!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		checkInfo(t, info, size)
	})
}

// checkInfo asserts what any successful Probe must satisfy.
func checkInfo(t *testing.T, info *Info, size int64) {
	t.Helper()
	if info.Header == nil || info.Tracks == nil {
		t.Fatal("nil Header or Tracks")
	}
	end := int64(0)
	for _, r := range info.Header {
		if r.Offset < end || r.Length <= 0 || r.End() > size {
			t.Fatalf("header ranges %v in a %d-byte file", info.Header, size)
		}
		end = r.End()
	}
	if info.HeaderBytesIn(0, size) != info.HeaderBytes() {
		t.Fatalf("HeaderBytesIn(0, size) = %d, HeaderBytes %d", info.HeaderBytesIn(0, size), info.HeaderBytes())
	}
	for _, v := range []float64{info.DurationS, info.BitrateBPS} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			t.Fatalf("duration %v bitrate %v", info.DurationS, info.BitrateBPS)
		}
	}
	for _, tr := range info.Tracks {
		if math.IsNaN(tr.BitrateBPS) || math.IsInf(tr.BitrateBPS, 0) || math.IsNaN(tr.DurationS) || math.IsInf(tr.DurationS, 0) {
			t.Fatalf("track %+v", tr)
		}
	}
	prev := int64(0)
	for _, fr := range info.FragmentList {
		if fr.Offset < prev || fr.End() > size || fr.Length <= 0 {
			t.Fatalf("fragment %+v", fr)
		}
		prev = fr.End()
	}
	if info.Fragments != len(info.FragmentList) {
		t.Fatalf("Fragments %d, list %d", info.Fragments, len(info.FragmentList))
	}
	if _, err := json.Marshal(info); err != nil {
		t.Fatalf("JSON: %v", err)
	}
}

// splitAll feeds b whole and in chunks of chunk bytes and checks the
// accounting and that both give the same units.
func splitAll(t *testing.T, kind Kind, b []byte, chunk int, check func(u collected)) {
	t.Helper()
	whole, _ := split(t, kind, SplitterOptions{}, b, func() int { return len(b) })
	chunked, s := split(t, kind, SplitterOptions{}, b, func() int { return chunk })
	if len(whole) != len(chunked) {
		t.Fatalf("%d units whole, %d in chunks of %d", len(whole), len(chunked), chunk)
	}
	for i := range whole {
		w, c := whole[i], chunked[i]
		if w.Offset != c.Offset || !bytes.Equal(w.data, c.data) || w.Duration != c.Duration || w.Start != c.Start || w.Keyframe != c.Keyframe || w.Header != c.Header {
			t.Fatalf("unit %d differs: whole %+v, chunked %+v", i, w.Unit, c.Unit)
		}
		if w.Offset < 0 || w.Offset+int64(len(w.data)) > int64(len(b)) || !bytes.Equal(w.data, b[w.Offset:w.Offset+int64(len(w.data))]) {
			t.Fatalf("unit %d is not the input's bytes at its offset", i)
		}
		if w.Duration < 0 {
			t.Fatalf("unit %d: duration %v", i, w.Duration)
		}
		check(w)
	}
	if cap(s.buf) > 2*len(b)+(64<<10) {
		t.Fatalf("buffer capacity %d for %d bytes of input", cap(s.buf), len(b))
	}
}

func FuzzSplitterMP3(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzSplitterMP3") {
		for _, c := range seedChunks {
			f.Add(b, c)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16) {
		splitAll(t, KindMP3, b, int(chunk)+1, func(u collected) {
			// A unit is whole frames sharing the locked header bits.
			lock := uint32(0)
			for k := 0; k < len(u.data); {
				if len(u.data)-k < 4 {
					t.Fatalf("unit at %d: %d stray bytes", u.Offset, len(u.data)-k)
				}
				h := binary.BigEndian.Uint32(u.data[k:])
				n := frameSizeFast(h)
				if n == 0 || (k > 0 && h&mp3LockMask != lock) {
					t.Fatalf("unit at %d: no consistent frame at +%d", u.Offset, k)
				}
				lock = h & mp3LockMask
				k += n
				if k > len(u.data) {
					t.Fatalf("unit at %d: last frame cut", u.Offset)
				}
			}
		})
	})
}

func FuzzSplitterFMP4(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzSplitterFMP4") {
		for _, c := range seedChunks {
			f.Add(b, c)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16) {
		splitAll(t, KindFMP4, b, int(chunk)+1, func(u collected) {
			// A unit is whole top-level boxes: a header ending in a
			// moov, or a fragment with a moof and ending in an mdat.
			var types []uint32
			for k := 0; k < len(u.data); {
				typ, size, _, ok := boxHeader(u.data[k:])
				if !ok || size < 8 || size > uint64(len(u.data)-k) {
					t.Fatalf("unit at %d: bad box at +%d", u.Offset, k)
				}
				types = append(types, typ)
				k += int(size)
			}
			last := types[len(types)-1]
			if u.Header && last != boxMoov || !u.Header && last != boxMdat {
				t.Fatalf("unit at %d (header %v) ends with %q", u.Offset, u.Header, fourCC(last))
			}
		})
	})
}

func FuzzID3(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzID3") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if tag, ok := parseID3v2(b, "ID3"); ok {
			if tag.size < 0 || tag.size >= 1<<28 || tag.total() < 10 {
				t.Fatalf("tag %+v", tag)
			}
		}
		end, _, err := trailingTags(bytes.NewReader(b), 0, int64(len(b)))
		if err != nil {
			t.Fatalf("trailingTags on an in-memory file: %v", err)
		}
		if end < 0 || end > int64(len(b)) {
			t.Fatalf("audio end %d of %d", end, len(b))
		}
		// Leading tags: Probe must agree with its own ID3 range.
		if info, err := Probe(bytes.NewReader(b), int64(len(b))); err == nil && info.ID3v2 != nil {
			if info.ID3v2.Offset != 0 || info.ID3v2.End() > info.HeaderEnd() {
				t.Fatalf("ID3v2 %v, header %v", info.ID3v2, info.Header)
			}
		}
	})
}

func FuzzParseMoof(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzParseMoof") {
		f.Add(b)
	}
	defs := []trackDefaults{{id: 1, timescale: 12800, video: true, duration: 512, hasTrex: true}, {id: 2, timescale: 8000}}
	f.Fuzz(func(t *testing.T, b []byte) {
		trafs, err := parseMoof(b, defs, nil)
		if err != nil {
			return
		}
		for _, tr := range trafs {
			if tr.samples > 0 && tr.samples > 1<<32*uint64(len(trafs))*uint64(len(b)) {
				t.Fatalf("traf %+v from %d bytes", tr, len(b))
			}
			_ = ticks(tr.duration, 1)
		}
	})
}

func FuzzParseMoov(f *testing.F) {
	for _, b := range seedBytes(f, "FuzzParseMoov") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, qt := range []bool{false, true} {
			m, err := parseMoov(b, qt)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error wraps no sentinel: %v", err)
				}
				continue
			}
			if m.timescale == 0 || len(m.tracks) == 0 {
				t.Fatalf("accepted a moov with timescale %d and %d tracks", m.timescale, len(m.tracks))
			}
		}
	})
}

// FuzzMP3FrameTable: the table lookup, the reference decoder and
// tcolgate/mp3 agree on every header.
func FuzzMP3FrameTable(f *testing.F) {
	for _, h := range seedHeaders {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h uint32) {
		fh, ok := parseFrameHeader(h)
		if !ok {
			fh.size = 0
		}
		if got := frameSizeFast(h); got != fh.size {
			t.Fatalf("%08x: table %d, reference %d", h, got, fh.size)
		}
		if ok && (fh.size < 21 || fh.size > 2881) {
			t.Fatalf("%08x: frame size %d", h, fh.size)
		}
	})
}
