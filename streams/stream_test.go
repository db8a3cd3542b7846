package streams

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

var nameCases = []struct {
	name string
	ok   bool
}{
	{"radio1", true},
	{"live/radio1.mp3", true},
	{"vod/2026/intro_v2-final.mp4", true},
	{"A.B-c_d", true},
	{"", false},
	{"/etc/passwd", false},
	{"../secret", false},
	{"vod/../../x", false},
	{"a..b", false},
	{"vod/", false},
	{"vod//a", false},
	{"./a", false},
	{"a/./b", false},
	{"a b", false},
	{"a%2fb", false},
	{"a\\b", false},
	{"ünïcode", false},
	{"a?b", false},
	{"health", false},
	{strings.Repeat("a", 256), false},
}

func TestValidateName(t *testing.T) {
	for _, tc := range nameCases {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateName(%q): %v is not ErrBadName", tc.name, err)
		}
	}
}

func TestNameFromURI(t *testing.T) {
	for uri, want := range map[string]string{
		"http://a/b/intro.mp4":          "intro.mp4",
		"https://u:p@h:8000/live/radio": "radio",
		"http://host/":                  "host",
		"http://host/a%20b.mp3?x=1":     "a_b.mp3",
	} {
		got, err := NameFromURI(uri)
		if err != nil || got != want {
			t.Errorf("NameFromURI(%q) = %q, %v; want %q", uri, got, err, want)
		}
	}
}

// FuzzValidateName checks that every accepted name stays inside a directory
// once joined to it, the property that keeps stream files in data_dir.
func FuzzValidateName(f *testing.F) {
	for _, tc := range nameCases {
		f.Add(tc.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		root := filepath.FromSlash("/data/media")
		p := filepath.Join(root, filepath.FromSlash(name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Fatalf("accepted %q escapes to %s", name, p)
		}
		if filepath.ToSlash(p[len(root)+1:]) != name {
			t.Fatalf("accepted %q is not clean: %s", name, p)
		}
	})
}
