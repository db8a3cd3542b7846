package streams

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Copy is what this node holds on disk of a file stream, recorded once the
// copy is complete and verified.
type Copy struct {
	Name     string    `json:"name"`
	ConfigID uint64    `json:"configId"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	ModTime  time.Time `json:"modTime"`
}

// ETag is the strong entity tag of the copy, derived from its digest.
func (c Copy) ETag() string { return `"` + c.SHA256[:32] + `"` }

// Store keeps file streams under data_dir: complete copies in media/,
// downloads in progress in partial/, and a record of each complete copy in
// state/ so that a restarted node knows what it has without re-reading it.
// Names are validated by ValidateName, so paths never leave the directory.
type Store struct {
	dir string

	mu     sync.RWMutex
	copies map[string]Copy
	seen   uint64 // the highest Raft index this store has acted on
}

// OpenStore opens (creating) the store under dir and loads its records.
func OpenStore(dir string) (*Store, error) {
	s := &Store{dir: dir, copies: map[string]Copy{}}
	for _, sub := range []string{"media", "partial", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, err
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "seen-index")); err == nil {
		s.seen, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	stateDir := filepath.Join(dir, "state")
	err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var c Copy
		if json.Unmarshal(b, &c) != nil || ValidateName(c.Name) != nil {
			return nil // a damaged record only costs a re-pull
		}
		if fi, err := os.Stat(s.mediaPath(c.Name)); err == nil && fi.Size() == c.Size {
			s.copies[c.Name] = c
		}
		return nil
	})
	return s, err
}

func (s *Store) mediaPath(name string) string {
	return filepath.Join(s.dir, "media", filepath.FromSlash(name))
}
func (s *Store) partialPath(name string) string {
	return filepath.Join(s.dir, "partial", filepath.FromSlash(name))
}
func (s *Store) statePath(name string) string {
	return filepath.Join(s.dir, "state", filepath.FromSlash(name)+".json")
}

// CatchUp records that the stream set has been seen up to Raft index
// applied, and reports whether that is at least as far as this store has
// ever seen: only then is a name missing from the set really removed,
// rather than not yet replayed after a restart.
func (s *Store) CatchUp(applied uint64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if applied < s.seen {
		return false, nil
	}
	if applied > s.seen {
		if err := writeFileAtomic(filepath.Join(s.dir, "seen-index"), []byte(strconv.FormatUint(applied, 10))); err != nil {
			return false, err
		}
		s.seen = applied
	}
	return true, nil
}

// Seen is the highest Raft index CatchUp has recorded, across restarts.
func (s *Store) Seen() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.seen
}

// Copy returns the complete copy of name, if this node has one.
func (s *Store) Copy(name string) (Copy, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.copies[name]
	return c, ok
}

// Copies returns every complete copy.
func (s *Store) Copies() []Copy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Copy, 0, len(s.copies))
	for _, c := range s.copies {
		out = append(out, c)
	}
	return out
}

// Open opens the complete copy of name for reading.
func (s *Store) Open(name string) (*os.File, Copy, error) {
	c, ok := s.Copy(name)
	if !ok {
		return nil, c, ErrNotReady
	}
	f, err := os.Open(s.mediaPath(name))
	return f, c, err
}

// Partial opens the download file of name for appending and returns its
// current size, so an interrupted download resumes where it stopped.
func (s *Store) Partial(name string) (*os.File, int64, error) {
	p := s.partialPath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// DiscardPartial drops a download that cannot be resumed.
func (s *Store) DiscardPartial(name string) error {
	err := os.Remove(s.partialPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Commit verifies the finished download of name against wantSHA (hex; empty
// to accept any), moves it into media/ and records it.
func (s *Store) Commit(name string, configID uint64, wantSize int64, wantSHA string) (Copy, error) {
	p := s.partialPath(name)
	f, err := os.Open(p)
	if err != nil {
		return Copy{}, err
	}
	h := sha256.New()
	size, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return Copy{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if (wantSize >= 0 && size != wantSize) || (wantSHA != "" && !strings.EqualFold(sum, wantSHA)) {
		s.DiscardPartial(name)
		return Copy{}, fmt.Errorf("verification failed: got %d bytes sha256 %s, want %d bytes sha256 %s", size, sum, wantSize, wantSHA)
	}
	dst := s.mediaPath(name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return Copy{}, err
	}
	if err := os.Rename(p, dst); err != nil {
		return Copy{}, err
	}
	c := Copy{Name: name, ConfigID: configID, Size: size, SHA256: sum, ModTime: time.Now().UTC().Truncate(time.Second)}
	os.Chtimes(dst, c.ModTime, c.ModTime)
	b, _ := json.Marshal(c)
	if err := writeFileAtomic(s.statePath(name), b); err != nil {
		return Copy{}, err
	}
	s.mu.Lock()
	s.copies[name] = c
	s.mu.Unlock()
	return c, nil
}

// Delete forgets name and removes its files.
func (s *Store) Delete(name string) error {
	s.mu.Lock()
	delete(s.copies, name)
	s.mu.Unlock()
	var errs []error
	for _, p := range []string{s.statePath(name), s.mediaPath(name), s.partialPath(name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		s.pruneDirs(p)
	}
	return errors.Join(errs...)
}

// pruneDirs removes the empty parent directories of p left by a deletion,
// up to the store's own subdirectories.
func (s *Store) pruneDirs(p string) {
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		rel, err := filepath.Rel(s.dir, d)
		if err != nil || !strings.Contains(rel, string(filepath.Separator)) {
			return
		}
		if os.Remove(d) != nil {
			return
		}
	}
}

// Names returns the names of every copy, partial or complete, on disk, so
// that the reconciler can remove what the set no longer holds.
func (s *Store) Names() []string {
	seen := map[string]bool{}
	for _, sub := range []string{"media", "partial"} {
		root := filepath.Join(s.dir, sub)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(root, p)
				seen[filepath.ToSlash(rel)] = true
			}
			return nil
		})
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	return out
}

func writeFileAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
