package media

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestProbeAgainstFFmpeg makes files the committed fixtures do not cover —
// other durations, bit rates, sample rates and channel counts — with ffmpeg
// into a temporary directory, and checks Probe against ffprobe (duration
// within 1 %, bit rates within 2 %), the header ranges against the files'
// own layout, and the Splitter against Probe's fragments and frames.
func TestProbeAgainstFFmpeg(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not encoding with ffmpeg")
	}
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install ffmpeg); the committed fixtures are still tested", tool)
		}
	}
	dir := t.TempDir()
	type audio struct {
		rate, channels int
		aac, mp3       string // bit rates
		vbrQ           string // libmp3lame -q:a
	}
	var table []string
	for _, tc := range []struct {
		dur   string
		a     audio
		video string // x264 bit rate
	}{
		{"3", audio{22050, 1, "64k", "64k", "7"}, "150k"},
		{"17", audio{48000, 2, "192k", "192k", "2"}, "300k"},
		{"7.5", audio{44100, 2, "96k", "128k", "5"}, "80k"},
	} {
		sine := []string{"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=523:sample_rate=%d:duration=%s", tc.a.rate, tc.dur)}
		video := []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=" + tc.dur}
		venc := []string{"-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-b:v", tc.video, "-g", "50"}
		aac := []string{"-c:a", "aac", "-b:a", tc.a.aac, "-ac", strconv.Itoa(tc.a.channels)}
		lame := []string{"-c:a", "libmp3lame", "-ac", strconv.Itoa(tc.a.channels)}
		frag := []string{"-movflags", "frag_keyframe+empty_moov+default_base_moof"}
		fast := []string{"-movflags", "+faststart"}
		cat := func(parts ...[]string) []string {
			var out []string
			for _, p := range parts {
				out = append(out, p...)
			}
			return out
		}
		base := fmt.Sprintf("%ss-%dHz-%dch", tc.dur, tc.a.rate, tc.a.channels)
		for _, f := range []struct {
			name string
			args []string
		}{
			{"faststart.mp4", cat(video, sine, venc, aac, fast)},
			{"moovend.mp4", cat(video, sine, venc, aac)},
			{"frag.mp4", cat(video, sine, venc, aac, frag)},
			{"faststart.m4a", cat(sine, aac, fast)},
			{"moovend.m4a", cat(sine, aac)},
			{"frag.m4a", cat(sine, aac, frag, []string{"-frag_duration", "2000000"})},
			{"cbr.mp3", cat(sine, lame, []string{"-b:a", tc.a.mp3})},
			{"vbr.mp3", cat(sine, lame, []string{"-q:a", tc.a.vbrQ})},
			{"noxing-cbr.mp3", cat(sine, lame, []string{"-b:a", tc.a.mp3, "-write_xing", "0", "-id3v2_version", "0"})},
			{"id3v1.mp3", cat(sine, lame, []string{"-b:a", tc.a.mp3, "-write_id3v1", "1", "-id3v2_version", "3", "-metadata", "title=castmesh"})},
		} {
			name := base + "-" + f.name
			path := filepath.Join(dir, name)
			args := append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}, f.args...)
			if out, err := exec.Command("ffmpeg", append(args, path)...).CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg %s: %v\n%s", name, err, out)
			}
			ff, err := ffprobeFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			info, err := Probe(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			table = append(table, compareWithFFprobe(t, name, info, ff))
			checkHeaderLayout(t, name, b, info)
			checkSplitterAgrees(t, name, b, info)
			checkCutsFail(t, name, b, info, 20)
		}
	}
	t.Log("Probe vs ffprobe on files made now:\n" + strings.Join(table, "\n"))
}

func ffprobeFile(path string) (ffprobeFormat, error) {
	out, err := exec.Command("ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		return ffprobeFormat{}, fmt.Errorf("ffprobe %s: %v", path, err)
	}
	var p struct {
		Format struct {
			Duration string `json:"duration"`
			BitRate  string `json:"bit_rate"`
			Size     string `json:"size"`
		} `json:"format"`
		Streams []struct {
			Index     int    `json:"index"`
			CodecType string `json:"codec_type"`
			CodecName string `json:"codec_name"`
			BitRate   string `json:"bit_rate"`
			Duration  string `json:"duration"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return ffprobeFormat{}, err
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	f := ffprobeFormat{Duration: num(p.Format.Duration), BitRate: num(p.Format.BitRate), Size: int64(num(p.Format.Size))}
	for _, s := range p.Streams {
		f.Streams = append(f.Streams, ffprobeStream{s.Index, s.CodecType, s.CodecName, num(s.BitRate), num(s.Duration)})
	}
	return f, nil
}

// checkSplitterAgrees feeds a file to the Splitter as a live stream and
// checks that it cuts the fragments (fMP4) or frames (MP3) Probe found.
func checkSplitterAgrees(t *testing.T, name string, b []byte, info *Info) {
	t.Helper()
	switch info.Kind {
	case KindFMP4:
		units, _ := split(t, "", SplitterOptions{}, b, func() int { return 3000 })
		if len(units) != 1+len(info.FragmentList) {
			t.Errorf("%s: splitter: %d units, probe: header + %d fragments", name, len(units), len(info.FragmentList))
			return
		}
		for i, f := range info.FragmentList {
			u := units[i+1]
			if u.Offset != f.Offset || int64(len(u.data)) != f.Length || u.Duration != f.Duration || u.Start != f.Start || u.Keyframe != f.Keyframe {
				t.Errorf("%s: fragment %d: splitter %d+%d %v %v, probe %d+%d %v %v", name, i, u.Offset, len(u.data), u.Start, u.Duration, f.Offset, f.Length, f.Start, f.Duration)
			}
		}
	case KindMP3:
		units, _ := split(t, "", SplitterOptions{}, b[:info.AudioEnd], func() int { return 3000 })
		frames := 0
		for _, u := range units {
			frames += u.Samples
		}
		if int64(frames) != info.Frames {
			t.Errorf("%s: splitter: %d frames, probe: %d", name, frames, info.Frames)
		}
	}
}
