package media

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/tcolgate/mp3"
)

const fixtures = "../testdata/media"

type ffprobeStream struct {
	Index     int     `json:"index"`
	CodecType string  `json:"codec_type"`
	CodecName string  `json:"codec_name"`
	BitRate   float64 `json:"bit_rate"`
	Duration  float64 `json:"duration"`
}

type ffprobeFormat struct {
	Duration float64         `json:"duration"`
	BitRate  float64         `json:"bit_rate"`
	Size     int64           `json:"size"`
	Streams  []ffprobeStream `json:"streams"`
}

func loadFFprobe(t *testing.T) map[string]ffprobeFormat {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "ffprobe.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]ffprobeFormat
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) < 10 {
		t.Fatalf("ffprobe.json has %d entries; rerun testdata/media/make-fixtures.sh", len(m))
	}
	return m
}

func relErr(got, want float64) float64 {
	if want == 0 {
		if got == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(got-want) / want
}

// ffprobeEstimates reports whether ffprobe only estimates this file's
// duration: an MP3 whose frames differ in bitrate and that has no Xing or
// VBRI header, for which ffprobe divides the file size by the first frame's
// bitrate. Probe counts the frames instead, so the two cannot agree.
func ffprobeEstimates(info *Info) bool {
	return info.Kind == KindMP3 && info.VBR && info.VBRHeader == ""
}

// compareWithFFprobe checks Probe's figures against ffprobe's: duration
// within 1 %, bit rate (file and each stream) within 2 %. It returns one
// line for the comparison table.
func compareWithFFprobe(t *testing.T, name string, info *Info, ff ffprobeFormat) string {
	t.Helper()
	if info.Size != ff.Size {
		t.Errorf("%s: size %d, ffprobe %d", name, info.Size, ff.Size)
	}
	line := []string{name, string(info.Kind)}
	add := func(what string, got, want, tol float64, check bool) {
		e := relErr(got, want)
		mark := ""
		if !check {
			mark = " (ffprobe estimates; not compared)"
		} else if e > tol {
			t.Errorf("%s: %s = %.6g, ffprobe says %.6g (off by %.2f%%, limit %.0f%%)", name, what, got, want, 100*e, 100*tol)
			mark = " FAIL"
		}
		line = append(line, what+"="+ftoa(got)+" vs "+ftoa(want)+" ("+ftoa(100*e)+"%)"+mark)
	}
	exact := !ffprobeEstimates(info)
	add("duration_s", info.DurationS, ff.Duration, 0.01, exact)
	add("bitrate_bps", info.BitrateBPS, ff.BitRate, 0.02, exact)
	if len(info.Tracks) != len(ff.Streams) {
		t.Errorf("%s: %d tracks, ffprobe has %d streams", name, len(info.Tracks), len(ff.Streams))
		return strings.Join(line, " | ")
	}
	for i, s := range ff.Streams {
		tr := info.Tracks[i]
		if tr.Type != s.CodecType {
			t.Errorf("%s: track %d is %s, ffprobe stream %d is %s", name, tr.ID, tr.Type, i, s.CodecType)
		}
		add("track"+itoa(i)+"_bps", tr.BitrateBPS, s.BitRate, 0.02, exact)
	}
	return strings.Join(line, " | ")
}

func ftoa(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "inf"
	}
	if v >= 1000 {
		return itoa(int(math.Round(v)))
	}
	return strings.TrimRight(strings.TrimRight(strconvFormat(v), "0"), ".")
}

func TestProbeMatchesFFprobe(t *testing.T) {
	ff := loadFFprobe(t)
	names := make([]string, 0, len(ff))
	for name := range ff {
		names = append(names, name)
	}
	sort.Strings(names)
	var table []string
	for _, name := range names {
		info, err := ProbeFile(filepath.Join(fixtures, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		table = append(table, compareWithFFprobe(t, name, info, ff[name]))
	}
	t.Log("Probe vs ffprobe:\n" + strings.Join(table, "\n"))
}

func TestProbeFixtureDetails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      Kind
		fragments int
		frames    int64
		vbrHeader string
		vbr       bool
		codecs    string
		fastStart bool
	}{
		{"mp4-faststart.mp4", KindMP4, 0, 0, "", false, "avc1.64000d,mp4a.40.2", true},
		{"mp4-moovend.mp4", KindMP4, 0, 0, "", false, "avc1.64000d,mp4a.40.2", false},
		{"fmp4.mp4", KindFMP4, 5, 0, "", false, "avc1.64000d,mp4a.40.2", true},
		{"m4a-faststart.m4a", KindM4A, 0, 0, "", false, "mp4a.40.2", true},
		{"m4a-moovend.m4a", KindM4A, 0, 0, "", false, "mp4a.40.2", false},
		{"m4a-frag.m4a", KindFMP4, 5, 0, "", false, "mp4a.40.2", true},
		{"mp3-cbr128.mp3", KindMP3, 0, 193, "Info", false, "mp3", false},
		{"mp3-vbr-q4.mp3", KindMP3, 0, 193, "Xing", true, "mp3", false},
		{"mp3-vbri.mp3", KindMP3, 0, 193, "VBRI", true, "mp3", false},
		{"mp3-bare.mp3", KindMP3, 0, 193, "", true, "mp3", false},
		{"mp3-id3footer.mp3", KindMP3, 0, 193, "", true, "mp3", false},
		{"mp3-id3v1.mp3", KindMP3, 0, 193, "Info", false, "mp3", false},
		{"mp3-mono22k-64k.mp3", KindMP3, 0, 194, "Info", false, "mp3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ProbeFile(filepath.Join(fixtures, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			var codecs []string
			for _, tr := range info.Tracks {
				codecs = append(codecs, tr.Codec)
			}
			got := struct {
				kind      Kind
				fragments int
				frames    int64
				vbrHeader string
				vbr       bool
				codecs    string
				fastStart bool
			}{info.Kind, info.Fragments, info.Frames, info.VBRHeader, info.VBR, strings.Join(codecs, ","), info.FastStart}
			want := got
			want.kind, want.fragments, want.frames, want.vbrHeader, want.vbr, want.codecs = tc.kind, tc.fragments, tc.frames, tc.vbrHeader, tc.vbr, tc.codecs
			if info.Kind != KindMP3 {
				want.fastStart = tc.fastStart
			}
			if got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if info.Kind == KindFMP4 && len(info.FragmentList) != info.Fragments {
				t.Errorf("FragmentList has %d entries, Fragments says %d", len(info.FragmentList), info.Fragments)
			}
			if (info.Kind == KindM4A || info.Kind == KindMP3) != info.AudioOnly && info.Kind != KindFMP4 {
				t.Errorf("AudioOnly = %v for %s", info.AudioOnly, info.Kind)
			}
			if _, err := json.Marshal(info); err != nil {
				t.Errorf("JSON: %v", err)
			}
		})
	}
}

// topBox is a top-level box found by the test's own walker.
type topBox struct {
	typ       string
	off, size int64
}

// walkBoxes is an independent, minimal top-level box walker: the layout the
// header ranges are checked against.
func walkBoxes(t *testing.T, b []byte) []topBox {
	t.Helper()
	var out []topBox
	for off := int64(0); off < int64(len(b)); {
		size := int64(binary.BigEndian.Uint32(b[off:]))
		if size == 1 {
			size = int64(binary.BigEndian.Uint64(b[off+8:]))
		} else if size == 0 {
			size = int64(len(b)) - off
		}
		out = append(out, topBox{string(b[off+4 : off+8]), off, size})
		off += size
	}
	return out
}

func firstBox(boxes []topBox, types ...string) topBox {
	for _, b := range boxes {
		for _, typ := range types {
			if b.typ == typ {
				return b
			}
		}
	}
	return topBox{off: -1}
}

// checkHeaderLayout compares Probe's header ranges with the file's own box
// and tag layout.
func checkHeaderLayout(t *testing.T, name string, b []byte, info *Info) {
	t.Helper()
	var want []Range
	switch info.Kind {
	case KindMP4, KindM4A:
		boxes := walkBoxes(t, b)
		mdat, moov := firstBox(boxes, "mdat"), firstBox(boxes, "moov")
		if moov.off < mdat.off {
			want = []Range{{0, mdat.off}}
			if !info.FastStart {
				t.Errorf("%s: moov at %d before mdat at %d, but FastStart is false", name, moov.off, mdat.off)
			}
		} else {
			want = []Range{{0, mdat.off}, {moov.off, moov.size}}
		}
		if got := info.HeaderEnd(); got != mdat.off {
			t.Errorf("%s: HeaderEnd %d, first mdat at %d", name, got, mdat.off)
		}
	case KindFMP4:
		boxes := walkBoxes(t, b)
		frag := firstBox(boxes, "moof", "styp", "sidx")
		want = []Range{{0, frag.off}}
		// The init segment holds exactly ftyp and moov (ffmpeg writes no
		// other top-level box before the first fragment).
		moov := firstBox(boxes, "moov")
		if moov.off+moov.size != frag.off {
			t.Errorf("%s: moov ends at %d, first fragment at %d", name, moov.off+moov.size, frag.off)
		}
		// Fragments tile the file from the init segment to the mfra (or EOF).
		end := int64(len(b))
		if mfra := firstBox(boxes, "mfra"); mfra.off >= 0 {
			end = mfra.off
		}
		next := frag.off
		for i, f := range info.FragmentList {
			if f.Offset != next {
				t.Errorf("%s: fragment %d at %d, want %d", name, i, f.Offset, next)
			}
			if string(b[f.Offset+4:f.Offset+8]) != "moof" {
				t.Errorf("%s: fragment %d starts with %q", name, i, b[f.Offset+4:f.Offset+8])
			}
			if !f.Keyframe {
				t.Errorf("%s: fragment %d does not start with a keyframe", name, i)
			}
			next = f.End()
		}
		if next != end {
			t.Errorf("%s: fragments end at %d, want %d", name, next, end)
		}
	case KindMP3:
		if string(b[:3]) == "ID3" {
			size := int64(b[6])<<21 | int64(b[7])<<14 | int64(b[8])<<7 | int64(b[9])
			total := 10 + size
			if b[3] == 4 && b[5]&0x10 != 0 {
				total += 10
				if string(b[total-10:total-7]) != "3DI" {
					t.Errorf("%s: no ID3v2 footer at %d", name, total-10)
				}
			}
			want = []Range{{0, total}}
			if b[total] != 0xff {
				t.Errorf("%s: no frame sync right after the tag at %d", name, total)
			}
		} else {
			want = []Range{}
		}
	}
	if !equalRanges(info.Header, want) {
		t.Errorf("%s: header %v, the file's layout says %v", name, info.Header, want)
	}
}

func equalRanges(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProbeHeaderMatchesLayout(t *testing.T) {
	for name := range loadFFprobe(t) {
		b, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			t.Fatal(err)
		}
		info, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkHeaderLayout(t, name, b, info)
	}
}

func TestProbeBadFixtures(t *testing.T) {
	want := map[string]error{
		"bad-empty.mp4":                   ErrUnknownFormat,
		"bad-random.bin":                  ErrUnknownFormat,
		"bad-fmp4-truncated.mp4":          ErrTruncated,
		"bad-fmp4-trun-count.mp4":         ErrMalformed,
		"bad-mp4-1tb-box.mp4":             ErrTruncated,
		"bad-mp4-child-size.mp4":          ErrMalformed,
		"bad-mp4-faststart-truncated.mp4": ErrTruncated,
		"bad-mp4-moov-size.mp4":           ErrTruncated,
		"bad-mp4-moovend-nomoov.mp4":      ErrMalformed,
		"bad-mp4-moovend-truncated.mp4":   ErrTruncated,
		"bad-mp4-stsz-count.mp4":          ErrMalformed,
		"bad-mp4-stsz-sizes.mp4":          ErrMalformed,
		"bad-mp4-stco.mp4":                ErrMalformed,
		"bad-mp3-corrupt-middle.mp3":      ErrMalformed,
		"bad-mp3-id3-truncated.mp3":       ErrTruncated,
		"bad-mp3-truncated.mp3":           ErrTruncated,
		"bad-mp3-xing-truncated.mp3":      ErrTruncated,
	}
	files, _ := filepath.Glob(filepath.Join(fixtures, "bad-*"))
	if len(files) != len(want) {
		t.Errorf("%d bad fixtures on disk, %d in the table", len(files), len(want))
	}
	for name, sentinel := range want {
		info, err := ProbeFile(filepath.Join(fixtures, name))
		if err == nil {
			t.Errorf("%s: no error; got %+v", name, info)
			continue
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("%s: %v; want an error wrapping %v", name, err, sentinel)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestProbeFileErrors(t *testing.T) {
	if _, err := ProbeFile(filepath.Join(t.TempDir(), "missing.mp4")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ProbeFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// sparseReader is a ReaderAt of a given size that serves head from offset
// 0 and zeros elsewhere, without holding the zeros.
type sparseReader struct {
	head []byte
	size int64
}

func (s *sparseReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > s.size-off {
		n = int(s.size - off)
	}
	for i := range p[:n] {
		p[i] = 0
	}
	if off < int64(len(s.head)) {
		copy(p[:n], s.head[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestProbeSizeFieldsDoNotAllocate: boxes claiming a terabyte or a moov of
// hundreds of GB must fail without allocating what they claim.
func TestProbeSizeFieldsDoNotAllocate(t *testing.T) {
	ftyp := []byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41")
	box := func(typ string, size uint64) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint32(b, 1)
		copy(b[4:], typ)
		binary.BigEndian.PutUint64(b[8:], size)
		return b
	}
	for _, tc := range []struct {
		name string
		r    *sparseReader
		want error
	}{
		{"1 TB mdat in 1 KB", &sparseReader{append(append([]byte{}, ftyp...), box("mdat", 1<<40)...), 1024}, ErrTruncated},
		{"1 TB moov in 1 KB", &sparseReader{append(append([]byte{}, ftyp...), box("moov", 1<<40)...), 1024}, ErrTruncated},
		{"500 GB moov in a 1 TB file", &sparseReader{append(append([]byte{}, ftyp...), box("moov", 500<<30)...), 1 << 40}, ErrTooLarge},
		{"1 GB moof in a 1 TB file", &sparseReader{append(append(append([]byte{}, ftyp...), []byte("\x00\x00\x00\x10moovmvhd")...), box("moof", 1<<30)...), 1 << 40}, ErrMalformed},
		{"ID3 tag of 256 MB in 1 KB", &sparseReader{[]byte("ID3\x04\x00\x00\x7f\x7f\x7f\x7f"), 1024}, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Probe(tc.r, tc.r.size)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
				t.Errorf("allocated %d bytes", d)
			}
		})
	}
}

// TestMP3FramesAgreeWithTcolgate walks each MP3 fixture's audio with
// tcolgate/mp3's Decoder and checks that it finds the frames Probe counts.
func TestMP3FramesAgreeWithTcolgate(t *testing.T) {
	for name := range loadFFprobe(t) {
		if !strings.HasSuffix(name, ".mp3") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(fixtures, name))
		info, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := mp3.NewDecoder(bytes.NewReader(b[info.FirstFrameOffset:info.AudioEnd]))
		var f mp3.Frame
		var frames int64
		var bytesSeen int
		for {
			skipped := 0
			if err := d.Decode(&f, &skipped); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("%s: tcolgate/mp3: %v", name, err)
				}
				break
			}
			if skipped != 0 {
				t.Errorf("%s: tcolgate/mp3 skipped %d bytes before frame %d", name, skipped, frames)
			}
			frames++
			bytesSeen += f.Size()
		}
		if frames != info.Frames || int64(bytesSeen) != info.Tracks[0].Bytes {
			t.Errorf("%s: tcolgate/mp3 finds %d frames (%d bytes), Probe %d (%d bytes)", name, frames, bytesSeen, info.Frames, info.Tracks[0].Bytes)
		}
	}
}

// TestFrameSizeTable checks the fast table against the reference decoder
// and tcolgate/mp3 for every header.
func TestFrameSizeTable(t *testing.T) {
	for key := 0; key < 4096; key++ {
		for _, low := range []uint32{0x00, 0xc4, 0x02} {
			h := 0xffe00000 | uint32(key)<<9 | low
			fh, ok := parseFrameHeader(h)
			fast := frameSizeFast(h)
			if !ok {
				fh.size = 0
			}
			if fast != fh.size {
				t.Fatalf("%08x: table %d, reference %d", h, fast, fh.size)
			}
			b := binary.BigEndian.AppendUint32(nil, h)
			th := mp3.FrameHeader(b)
			if ok && (int(th.BitRate()) != fh.bitrate || int(th.SampleRate()) != fh.sampleRate) {
				t.Fatalf("%08x: tcolgate/mp3 says %d bit/s %d Hz, we say %d %d", h, th.BitRate(), th.SampleRate(), fh.bitrate, fh.sampleRate)
			}
		}
	}
}

func TestHeaderBytesIn(t *testing.T) {
	info := &Info{Header: []Range{{0, 40}, {1000, 100}}}
	for _, tc := range []struct{ start, end, want int64 }{
		{0, 40, 40}, {0, 10, 10}, {30, 1050, 60}, {40, 1000, 0}, {0, 2000, 140},
		{1099, 1100, 1}, {1100, 1200, 0}, {50, 20, 0}, {-10, 5, 5},
	} {
		if got := info.HeaderBytesIn(tc.start, tc.end); got != tc.want {
			t.Errorf("HeaderBytesIn(%d, %d) = %d, want %d", tc.start, tc.end, got, tc.want)
		}
	}
	if info.HeaderEnd() != 40 || info.HeaderBytes() != 140 || !info.IsHeader(1099) || info.IsHeader(40) {
		t.Errorf("HeaderEnd %d HeaderBytes %d", info.HeaderEnd(), info.HeaderBytes())
	}
	if (&Info{Header: []Range{}}).HeaderEnd() != 0 {
		t.Error("empty header: HeaderEnd != 0")
	}
}

// TestProbeTruncatedAnywhere cuts every good fixture at many places.
func TestProbeTruncatedAnywhere(t *testing.T) {
	for name := range loadFFprobe(t) {
		b := readFixture(t, name)
		info, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		checkCutsFail(t, name, b, info, 97)
	}
}

// checkCutsFail cuts b at about n places: each cut must be an error,
// except where the cut leaves a complete file (after a whole fMP4
// fragment, or after a whole MP3 frame when no Xing/VBRI header says how
// many there should be).
func checkCutsFail(t *testing.T, name string, b []byte, info *Info, n int) {
	t.Helper()
	complete := map[int64]bool{}
	switch info.Kind {
	case KindFMP4:
		for _, f := range info.FragmentList {
			complete[f.End()] = true
		}
	case KindMP3:
		if info.VBRHeader == "" {
			_, offs := mp3Frames(t, b)
			for _, off := range offs[1:] {
				complete[off] = true
			}
			complete[info.AudioEnd] = true
		}
	}
	step := max(int64(len(b))/int64(n), 1)
	for cut := int64(1); cut < int64(len(b)); cut += step {
		for _, c := range []int64{cut, cut + 1, int64(len(b)) - cut} {
			if c <= 0 || c >= int64(len(b)) || complete[c] {
				continue
			}
			info, err := Probe(bytes.NewReader(b[:c]), c)
			if err == nil {
				t.Errorf("%s cut at %d of %d: no error (%s, %d frames, %d fragments)", name, c, len(b), info.Kind, info.Frames, info.Fragments)
			}
		}
	}
}
