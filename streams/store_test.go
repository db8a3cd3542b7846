package streams

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreResumeCommitReopenDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("0123456789abcdef")
	sum := sha256.Sum256(content)

	f, off, err := s.Partial("live/a.mp3")
	if err != nil || off != 0 {
		t.Fatal(off, err)
	}
	f.Write(content[:5])
	f.Close()
	f, off, err = s.Partial("live/a.mp3")
	if err != nil || off != 5 {
		t.Fatalf("resume offset %d, %v", off, err)
	}
	f.Write(content[5:])
	f.Close()

	if _, err := s.Commit("live/a.mp3", 3, 16, hex.EncodeToString(make([]byte, 32))); err == nil {
		t.Fatal("commit with a wrong digest succeeded")
	}
	if _, ok := s.Copy("live/a.mp3"); ok {
		t.Fatal("a failed commit left a copy")
	}

	f, _, _ = s.Partial("live/a.mp3")
	f.Write(content)
	f.Close()
	c, err := s.Commit("live/a.mp3", 3, 16, hex.EncodeToString(sum[:]))
	if err != nil || c.Size != 16 || c.ConfigID != 3 {
		t.Fatalf("commit: %+v %v", c, err)
	}

	s2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	rf, c2, err := s2.Open("live/a.mp3")
	if err != nil || c2 != c {
		t.Fatalf("reopened store: %+v %v (want %+v)", c2, err, c)
	}
	rf.Close()
	if names := s2.Names(); len(names) != 1 || names[0] != "live/a.mp3" {
		t.Fatalf("names %v", names)
	}

	if err := s2.Delete("live/a.mp3"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"media/live", "state/live", "partial/live"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after delete (%v)", sub, err)
		}
	}
	if _, _, err := s2.Open("live/a.mp3"); err != ErrNotReady {
		t.Fatalf("open after delete: %v", err)
	}
}

func TestStoreIgnoresRecordWithoutFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenStore(dir)
	f, _, _ := s.Partial("x.mp4")
	f.Write([]byte("abc"))
	f.Close()
	if _, err := s.Commit("x.mp4", 1, 3, ""); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "media", "x.mp4"))
	s2, _ := OpenStore(dir)
	if _, ok := s2.Copy("x.mp4"); ok {
		t.Fatal("a record whose file is gone counts as a copy")
	}
}

func TestStoreCatchUpSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenStore(dir)
	if ok, err := s.CatchUp(0); !ok || err != nil {
		t.Fatal("a new store is caught up at 0", err)
	}
	if ok, _ := s.CatchUp(42); !ok {
		t.Fatal("moving forward is caught up")
	}
	s2, _ := OpenStore(dir)
	for _, tc := range []struct {
		applied uint64
		want    bool
	}{{0, false}, {41, false}, {42, true}, {50, true}, {49, false}} {
		if ok, _ := s2.CatchUp(tc.applied); ok != tc.want {
			t.Errorf("after a restart, CatchUp(%d) = %v, want %v", tc.applied, ok, tc.want)
		}
	}
}
