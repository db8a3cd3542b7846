package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"gopkg.in/ini.v1"
)

// fuzzSeeds returns the test inputs written in the format of ext.
func fuzzSeeds(tb testing.TB, ext string) [][]byte {
	var seeds [][]byte
	sample, err := os.ReadFile("../testdata/configs/node" + ext)
	if err != nil {
		tb.Fatal(err)
	}
	seeds = append(seeds, sample)
	if ext == ".toml" {
		seeds = append(seeds, []byte(fullTOML))
	} else {
		seeds = append(seeds, []byte(fullINI), []byte(iniScanSample))
	}
	for _, tc := range loadErrorCases {
		if filepath.Ext(tc.file) == ext {
			seeds = append(seeds, []byte(tc.content))
		}
	}
	return seeds
}

func FuzzLoadTOML(f *testing.F) {
	for _, s := range fuzzSeeds(f, ".toml") {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "node.toml") // one per worker process; runs are sequential
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzLoad(t, path, data)
		tomlPositions(string(data)) // must not panic on any input either
	})
}

func FuzzLoadINI(f *testing.F) {
	for _, s := range fuzzSeeds(f, ".ini") {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "node.ini")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkINIScan(t, data)
		fuzzLoad(t, path, data)
	})
}

// fuzzLoad writes data to path and loads it: Load must not panic, must fail
// with *Error naming a line of the file, or give a config that validates.
func fuzzLoad(t *testing.T, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T) is not a *config.Error", err, err)
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; ce.Line < 0 || ce.Line > lines {
			t.Fatalf("error %v names line %d of a file of %d lines", err, ce.Line, lines)
		}
		return
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Load gave a config that does not validate: %v", err)
	}
	if _, ok := cfg.Edge.VHosts["default"]; !ok {
		t.Fatal("Load gave a config without the default vhost")
	}
}

// checkINIScan checks that scanINI sees the sections and keys that ini.v1
// sees, and fails when it fails.
func checkINIScan(t *testing.T, data []byte) {
	sc := scanINI(data)
	f, err := ini.LoadSources(iniOptions, data)
	if (err == nil) != (sc.err == nil) {
		t.Fatalf("ini.v1 error %v, scanner error %+v", err, sc.err)
	}
	if err != nil {
		return
	}
	secs := f.Sections()
	var pre []string
	for _, k := range sc.preamble {
		pre = append(pre, k.name)
	}
	if got := uniqueSorted(pre); !reflect.DeepEqual(got, uniqueSorted(secs[0].KeyStrings())) {
		t.Fatalf("keys before any section: scanner %q, ini.v1 %q", got, secs[0].KeyStrings())
	}
	if len(secs)-1 != len(sc.sections) {
		t.Fatalf("scanner found %d sections, ini.v1 %d", len(sc.sections), len(secs)-1)
	}
	for i, s := range secs[1:] {
		ss := sc.sections[i]
		var keys []string
		for k := range ss.keys {
			keys = append(keys, k)
		}
		if s.Name() != ss.name || !reflect.DeepEqual(uniqueSorted(keys), uniqueSorted(s.KeyStrings())) {
			t.Fatalf("section %d: scanner [%s] %q, ini.v1 [%s] %q", i+1, ss.name, keys, s.Name(), s.KeyStrings())
		}
	}
}

func uniqueSorted(s []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// The scanner agrees with ini.v1 on the seeds too, in a plain test run.
func TestINIScanAgreesWithIni(t *testing.T) {
	for _, s := range fuzzSeeds(t, ".ini") {
		checkINIScan(t, s)
	}
}
