package streams

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/castmesh/castmesh/media"
)

// splitFMP4 cuts a fragmented MP4 into its init segment and fragments.
func splitFMP4(t testing.TB, path string) (header []byte, frags [][]byte, durs []time.Duration) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sp := media.NewSplitter(media.KindFMP4, func(u media.Unit) error {
		if u.Header {
			header = append([]byte(nil), u.Data...)
		} else {
			frags, durs = append(frags, append([]byte(nil), u.Data...)), append(durs, u.Duration)
		}
		return nil
	})
	sp.Write(b)
	sp.Flush()
	if header == nil || len(frags) < 2 {
		t.Fatalf("%s: header %d bytes, %d fragments", path, len(header), len(frags))
	}
	return header, frags, durs
}

// tfdts lists a fragment's (track, tfdt) pairs.
func tfdts(frag []byte) map[uint32]uint64 {
	out := map[uint32]uint64{}
	eachBox(frag, func(typ string, moof []byte) {
		if typ != "moof" {
			return
		}
		eachBox(moof, func(typ string, traf []byte) {
			if typ != "traf" {
				return
			}
			var id uint32
			var v uint64
			eachBox(traf, func(typ string, p []byte) {
				switch typ {
				case "tfhd":
					id = binary.BigEndian.Uint32(p[4:])
				case "tfdt":
					if p[0] == 1 {
						v = binary.BigEndian.Uint64(p[4:])
					} else {
						v = uint64(binary.BigEndian.Uint32(p[4:]))
					}
				}
			})
			out[id] = v
		})
	})
	return out
}

// inDecodeTime reports whether byte i of b lies in the decode time of a
// tfdt box, whatever the boxes around it: 8 to 15 bytes after a "tfdt"
// type (the box's version and flags take the 4 bytes after the type).
func inDecodeTime(b []byte, i int) bool {
	for j := max(i-15, 0); j <= i-8; j++ {
		if string(b[j:j+4]) == "tfdt" {
			return true
		}
	}
	return false
}

// A second source session whose timestamps start over at 0 is shifted to
// carry on where the first ended, track by track; ffmpeg decodes the two
// sessions back to back without a complaint.
func TestTimelineCarriesOnAcrossSessions(t *testing.T) {
	header, frags, durs := splitFMP4(t, "../testdata/media/fmp4.mp4")
	tl := newTimeline()
	tl.header(header)
	if len(tl.timescale) == 0 {
		t.Fatal("no track timescales in the init segment")
	}
	stream := append([]byte(nil), header...)
	last := map[uint32]uint64{}
	for session := range 3 {
		tl.newSession()
		for i, f := range frags {
			f = append([]byte(nil), f...)
			tl.fragment(f, durs[i], true)
			for id, v := range tfdts(f) {
				if prev, ok := last[id]; ok && v <= prev {
					t.Fatalf("session %d fragment %d track %d: tfdt %d after %d", session, i, id, v, prev)
				}
				last[id] = v
			}
			stream = append(stream, f...)
		}
	}
	// A peer only notes: its bytes are the origin's, unchanged.
	peer := newTimeline()
	peer.header(header)
	f := append([]byte(nil), frags[1]...)
	peer.fragment(f, durs[1], false)
	if !bytes.Equal(f, frags[1]) {
		t.Fatal("noting a fragment changed it")
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed")
	}
	p := filepath.Join(t.TempDir(), "sessions.mp4")
	os.WriteFile(p, stream, 0o644)
	out, err := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", p, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg on three sessions back to back: %v %s", err, out)
	}
}

// FuzzTimeline: whatever the init segment and the fragment, noting a
// fragment leaves it as it is, and shifting it changes nothing but tfdt
// decode times.
func FuzzTimeline(f *testing.F) {
	header, frags, _ := splitFMP4(f, "../testdata/media/fmp4.mp4")
	f.Add(header, frags[0][:min(len(frags[0]), 2048)])
	f.Add(header[:len(header)/2], frags[1][:100])
	f.Add([]byte("\x00\x00\x00\x01moov\x00\x00\x00\x00\x00\x00\x00\x20"), []byte("\x00\x00\x00\x00moof"))
	f.Fuzz(func(t *testing.T, init, in []byte) {
		tl := newTimeline()
		tl.header(init)
		frag := bytes.Clone(in)
		tl.fragment(frag, time.Second, false)
		if !bytes.Equal(frag, in) {
			t.Fatalf("noting a fragment changed it:\n%x\n%x", in, frag)
		}
		// The same fragment again in a new session: shifted to carry on
		// where it ended.
		tl.newSession()
		tl.fragment(frag, time.Second, true)
		for i := range frag {
			if frag[i] != in[i] && !inDecodeTime(in, i) {
				t.Fatalf("shifting a fragment changed byte %d, not a tfdt's decode time:\n%x\n%x", i, in, frag)
			}
		}
	})
}

// eachBox calls fn with the type and payload of every whole box in b: the
// test reads the boxes on its own, not with the code it tests.
func eachBox(b []byte, fn func(typ string, payload []byte)) {
	for len(b) >= 8 {
		size, head := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		typ := string(b[4:8])
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return
			}
			size, head = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < head || size > uint64(len(b)) {
			return
		}
		fn(typ, b[head:size])
		b = b[size:]
	}
}
