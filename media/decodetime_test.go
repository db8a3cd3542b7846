package media

import (
	"bytes"
	"testing"
)

// The decode times RewriteDecodeTimes reports and writes are the ones the
// probe reads from the same fragments.
func TestRewriteDecodeTimes(t *testing.T) {
	b := readFixture(t, "fmp4.mp4")
	info, err := Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	scales, err := TrackTimescales(b[:info.HeaderEnd()])
	if err != nil || len(scales) == 0 {
		t.Fatalf("timescales %v, %v", scales, err)
	}
	const shift = 90000
	for i, f := range info.FragmentList {
		frag := bytes.Clone(b[f.Offset:f.End()])
		var tracks int
		err := RewriteDecodeTimes(frag, func(track uint32, tfdt, limit uint64) uint64 {
			tracks++
			if scales[track] == 0 || limit < tfdt+shift {
				t.Fatalf("fragment %d: track %d unknown or limit %d", i, track, limit)
			}
			return tfdt + shift
		})
		if err != nil || tracks == 0 {
			t.Fatalf("fragment %d: %d tracks, %v", i, tracks, err)
		}
		if len(frag) != int(f.Length) {
			t.Fatalf("fragment %d changed size", i)
		}
		// Read back: the fragment starts shift ticks later.
		got, _ := Probe(bytes.NewReader(append(bytes.Clone(b[:info.HeaderEnd()]), frag...)), int64(info.HeaderEnd())+int64(len(frag)))
		if got == nil || len(got.FragmentList) != 1 {
			t.Fatalf("fragment %d does not probe after the rewrite", i)
		}
		moved, ok := got.FragmentList[0].Start-f.Start, false
		for _, ts := range scales { // the probe's start is one track's
			ok = ok || moved == ticks(shift, ts)
		}
		if !ok {
			t.Errorf("fragment %d: start %v, was %v; want it %d ticks later", i, got.FragmentList[0].Start, f.Start, shift)
		}
	}
	if err := RewriteDecodeTimes([]byte("\x00\x00\x00\x10moof\x00\x00\x00\xffjunk"), func(_ uint32, t, _ uint64) uint64 { return t }); err == nil {
		t.Error("a malformed moof was accepted")
	}
}
