package media

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r     *os.File
	bytes atomic.Int64
	reads atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.bytes.Add(int64(n))
	c.reads.Add(1)
	return n, err
}

const gib = 1 << 30

// makeSparseMP4 turns a small MP4 fixture into a 1 GiB sparse file with the
// same layout: its mdat is stretched (size patched) so that the file is
// 1 GiB, with the moov before it (fast-start) or after it at the very end.
// It returns the path and the moov's range in the new file.
func makeSparseMP4(tb testing.TB, fixture string) (string, Range) {
	tb.Helper()
	b := readFixture(tb, fixture)
	boxes := walkBoxes(&testing.T{}, b)
	mdat, moov := firstBox(boxes, "mdat"), firstBox(boxes, "moov")
	path := filepath.Join(tb.TempDir(), "sparse-"+fixture)
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 8)
	copy(hdr[4:], "mdat")
	var moovAt int64
	if moov.off < mdat.off { // fast-start: everything before the mdat, then a 1 GiB mdat
		binary.BigEndian.PutUint32(hdr, uint32(gib-mdat.off))
		f.Write(b[:mdat.off])
		moovAt = moov.off
	} else { // moov at the end
		moovAt = gib - moov.size
		binary.BigEndian.PutUint32(hdr, uint32(moovAt-mdat.off))
		f.Write(b[:mdat.off])
		if _, err := f.WriteAt(b[moov.off:moov.off+moov.size], moovAt); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := f.WriteAt(hdr, mdat.off); err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(gib); err != nil {
		tb.Fatal(err)
	}
	return path, Range{moovAt, moov.size}
}

// TestProbeSparse1GiB: probing a 1 GiB MP4 reads its box headers and moov,
// a few KB, never the mdat.
func TestProbeSparse1GiB(t *testing.T) {
	for _, fixture := range []string{"mp4-faststart.mp4", "mp4-moovend.mp4"} {
		path, moov := makeSparseMP4(t, fixture)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c := &countingReaderAt{r: f}
		info, err := Probe(c, gib)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", fixture, err)
		}
		if *info.Moov != moov {
			t.Errorf("%s: moov %v, want %v", fixture, *info.Moov, moov)
		}
		if got := c.bytes.Load(); got > moov.Length+4096 {
			t.Errorf("%s: read %d bytes of a 1 GiB file (moov is %d)", fixture, got, moov.Length)
		}
		if info.BitrateBPS < 1e9 { // 1 GiB in 5 s
			t.Errorf("%s: bitrate %v", fixture, info.BitrateBPS)
		}
		t.Logf("%s as 1 GiB: %d bytes in %d reads; header %v", fixture, c.bytes.Load(), c.reads.Load(), info.Header)
	}
}

func BenchmarkProbeSparse1GiB(b *testing.B) {
	for _, fixture := range []string{"mp4-faststart.mp4", "mp4-moovend.mp4"} {
		b.Run(fixture, func(b *testing.B) {
			path, _ := makeSparseMP4(b, fixture)
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			c := &countingReaderAt{r: f}
			b.ResetTimer()
			for b.Loop() {
				if _, err := Probe(c, gib); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(c.bytes.Load())/float64(b.N), "bytes-read/op")
			b.ReportMetric(float64(c.reads.Load())/float64(b.N), "reads/op")
		})
	}
}

// liveStream repeats a fixture's units to make a stream of about size
// bytes: the init segment and fragments (fMP4) or the audio frames (MP3).
func liveStream(tb testing.TB, fixture string, size int) []byte {
	b := readFixture(tb, fixture)
	info, err := Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	var body, out []byte
	if info.Kind == KindMP3 {
		body = b[info.FirstFrameOffset:info.AudioEnd]
	} else {
		out = append(out, b[:info.HeaderEnd()]...)
		last := info.FragmentList[len(info.FragmentList)-1]
		body = b[info.HeaderEnd():last.End()]
	}
	for len(out) < size {
		out = append(out, body...)
	}
	return out
}

func benchmarkSplitter(b *testing.B, fixture string, chunk int) {
	stream := liveStream(b, fixture, 16<<20)
	var units int64
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewSplitter("", func(u Unit) error { units++; return nil })
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := s.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
	b.ReportMetric(float64(units)/float64(b.N), "units/op")
}

func BenchmarkSplitterMP3(b *testing.B) {
	b.Run("chunk=64KiB", func(b *testing.B) { benchmarkSplitter(b, "mp3-cbr128.mp3", 64<<10) })
	b.Run("chunk=1400", func(b *testing.B) { benchmarkSplitter(b, "mp3-cbr128.mp3", 1400) })
}

func BenchmarkSplitterFMP4(b *testing.B) {
	b.Run("chunk=64KiB", func(b *testing.B) { benchmarkSplitter(b, "fmp4.mp4", 64<<10) })
	b.Run("chunk=1400", func(b *testing.B) { benchmarkSplitter(b, "fmp4.mp4", 1400) })
}
