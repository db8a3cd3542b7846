package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunProbe(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "media")
	var out, errb bytes.Buffer
	if code := runProbe([]string{filepath.Join(dir, "mp4-moovend.mp4")}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	for _, key := range []string{"kind", "duration_s", "bitrate_bps", "header", "tracks", "fragments", "frames"} {
		if _, ok := got[key]; !ok {
			t.Errorf("no %q in %s", key, out.String())
		}
	}
	if h := got["header"].([]any); len(h) != 2 {
		t.Errorf("moov-at-end header %v, want two ranges", h)
	}

	out.Reset()
	if code := runProbe([]string{"-fragments", filepath.Join(dir, "fmp4.mp4")}, &out, &errb); code != 0 {
		t.Fatalf("-fragments: exit %d", code)
	}
	if !strings.Contains(out.String(), `"fragment_list"`) || !strings.Contains(out.String(), `"start_s"`) {
		t.Errorf("-fragments printed no fragment_list:\n%s", out.String())
	}

	for _, bad := range []string{"bad-mp4-moovend-nomoov.mp4", "bad-random.bin", "missing.mp4"} {
		out.Reset()
		errb.Reset()
		path := filepath.Join(dir, bad)
		if code := runProbe([]string{path}, &out, &errb); code != 1 {
			t.Errorf("%s: exit %d, want 1", bad, code)
		}
		line := errb.String()
		if !strings.HasPrefix(line, "castmeshd probe: "+path+": ") || strings.Count(line, "\n") != 1 || out.Len() != 0 {
			t.Errorf("%s: stderr %q stdout %q; want one line naming the file", bad, line, out.String())
		}
	}

	errb.Reset()
	if code := runProbe(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Errorf("no args: exit %d, stderr %q", code, errb.String())
	}
}
