package livestamp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTripInAnyChunks(t *testing.T) {
	src := NewSource(7)
	t0 := time.Unix(1_700_000_000, 123)
	var stream []byte
	for i := range 200 {
		stream = src.Frame(stream, t0.Add(time.Duration(i)*FrameDuration))
	}
	// 200 frames of 128 kbps: within one byte of the exact rate.
	if want := 200 * FrameDuration.Seconds() * BytesPerSecond; float64(len(stream)) < want-1 || float64(len(stream)) > want+1 {
		t.Fatalf("%d bytes for 200 frames, want %.0f", len(stream), want)
	}
	for _, chunk := range []int{1, 7, 417, 4096} {
		var r Reader
		var got []Stamp
		noise := append([]byte{0xFF, 0x00, 1, 2}, stream...) // garbage first
		for off := 0; off < len(noise); off += chunk {
			r.Write(noise[off:min(off+chunk, len(noise))], func(s Stamp) { got = append(got, s) })
		}
		if len(got) != 200 || r.Skipped != 4 {
			t.Fatalf("chunk %d: %d stamps, %d skipped", chunk, len(got), r.Skipped)
		}
		for i, s := range got {
			if s.Count != uint64(7+i) || !s.Sent.Equal(t0.Add(time.Duration(i)*FrameDuration)) {
				t.Fatalf("chunk %d: stamp %d = %+v", chunk, i, s)
			}
		}
	}
}

func TestGarbageIsSkippedNotKept(t *testing.T) {
	var r Reader
	garbage := bytes.Repeat([]byte{0xFF, 0xFB, 0x90, 0x00}, 40<<10) // headers, no stamps
	r.Write(garbage, func(Stamp) { t.Fatal("stamp in garbage") })
	if len(r.buf) > frameBase+1 || r.Skipped < int64(len(garbage)-frameBase-1) {
		t.Fatalf("%d bytes kept, %d skipped of %d", len(r.buf), r.Skipped, len(garbage))
	}
}

// ffmpeg decodes the frames as silence, without a complaint.
func TestFFmpegDecodes(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed")
	}
	src := NewSource(0)
	var stream []byte
	for range 100 {
		stream = src.Frame(stream, time.Now())
	}
	p := filepath.Join(t.TempDir(), "s.mp3")
	os.WriteFile(p, stream, 0o644)
	out, err := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", p, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
}

func FuzzReader(f *testing.F) {
	src := NewSource(0)
	f.Add(src.Frame(nil, time.Unix(0, 0)), 3)
	f.Add([]byte{0xFF, 0xFB, 0x92, 0x00, 'C', 'M'}, 1)
	f.Add(bytes.Repeat([]byte{0xFF}, 100), 9)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		if chunk <= 0 || chunk > len(b)+1 {
			chunk = len(b) + 1
		}
		var r Reader
		var n int
		for off := 0; off < len(b); off += chunk {
			r.Write(b[off:min(off+chunk, len(b))], func(Stamp) { n++ })
		}
		if n*frameBase > len(b) || len(r.buf) > len(b) {
			t.Fatalf("%d stamps, %d buffered from %d bytes", n, len(r.buf), len(b))
		}
	})
}
