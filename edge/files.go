package edge

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/castmesh/castmesh/media"
)

// Open files are shared between the sessions of one copy of a stream.
//
// A paced viewer lasts minutes and writes a little every second or so. One
// descriptor per viewer would cost 10,000 descriptors for 10,000 viewers
// on top of their 10,000 sockets, past the 20,000 a process may open here.
// sendfile on Linux sends from a descriptor's own file position, so
// descriptors cannot simply be shared: a write borrows one from the copy's
// pool, seeks it, sends and gives it back. Writes that do not block take
// microseconds, so a pool stays at a few descriptors however many viewers
// there are. The pool opens more as needed by reopening the same inode
// (/proc/self/fd), so a copy replaced or removed on disk keeps serving its
// viewers what they started on.

// copyKey names one copy of a stream: its name and its ETag (a copy
// replaced by a new one has another digest, hence another ETag).
type copyKey struct{ name, etag string }

// maxPooledFiles bounds the idle descriptors a copy keeps; beyond it a
// returned descriptor is closed.
const maxPooledFiles = 64

// maxProbed bounds the media descriptions kept for copies no viewer has
// open.
const maxProbed = 4096

// probeResult is what media.Probe found in a copy; info is nil for a file
// that is not MP4/M4A/MP3 (it has no header, and no rate of its own).
type probeResult struct {
	info *media.Info
	err  error
}

// fileCache holds the open copies and what media.Probe found in each copy,
// probed once.
type fileCache struct {
	log *slog.Logger

	mu     sync.Mutex
	open   map[copyKey]*openCopy
	probed map[copyKey]probeResult
}

func newFileCache(log *slog.Logger) *fileCache {
	return &fileCache{log: log, open: map[copyKey]*openCopy{}, probed: map[copyKey]probeResult{}}
}

// openCopy is a copy with viewers: one descriptor kept for the inode
// (base) and a pool of descriptors to send from.
type openCopy struct {
	key   copyKey
	refs  int // under fileCache.mu
	ready chan struct{}
	err   error // set before ready is closed

	base *os.File
	size int64
	info *media.Info

	mu   sync.Mutex
	idle []*os.File
}

// acquire returns the open copy that f (a viewer's freshly opened copy
// named by key) belongs to, opening and probing it on first use. It takes
// over f: f is closed before acquire returns. Release the copy when the
// response is done.
func (fc *fileCache) acquire(key copyKey, f *os.File) (*openCopy, error) {
	fc.mu.Lock()
	if oc, ok := fc.open[key]; ok {
		oc.refs++
		fc.mu.Unlock()
		f.Close()
		<-oc.ready
		if oc.err != nil {
			fc.release(oc)
			return nil, oc.err
		}
		return oc, nil
	}
	oc := &openCopy{key: key, refs: 1, ready: make(chan struct{})}
	fc.open[key] = oc
	pr, probed := fc.probed[key]
	fc.mu.Unlock()

	oc.err = oc.openBase(f)
	if oc.err == nil && !probed {
		info, err := media.Probe(oc.base, oc.size)
		pr = probeResult{info: info, err: err}
		if err != nil {
			fc.log.Debug("not a media file this edge recognises: no header, no encoding rate", "stream", key.name, "reason", err)
		}
		fc.mu.Lock()
		if len(fc.probed) >= maxProbed {
			for k := range fc.probed { // any one: this is a bound, not an LRU
				delete(fc.probed, k)
				break
			}
		}
		fc.probed[key] = pr
		fc.mu.Unlock()
	}
	oc.info = pr.info
	close(oc.ready)
	if oc.err != nil {
		fc.release(oc)
		return nil, oc.err
	}
	return oc, nil
}

// openBase keeps a descriptor of f's inode, independent of f.
func (oc *openCopy) openBase(f *os.File) error {
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	base, err := reopen(f)
	if err != nil {
		return err
	}
	oc.base, oc.size = base, st.Size()
	return nil
}

// release drops a viewer's hold; the last one closes the descriptors.
func (fc *fileCache) release(oc *openCopy) {
	fc.mu.Lock()
	oc.refs--
	last := oc.refs == 0
	if last && fc.open[oc.key] == oc {
		delete(fc.open, oc.key)
	}
	fc.mu.Unlock()
	if !last {
		return
	}
	oc.mu.Lock()
	idle := oc.idle
	oc.idle = nil
	oc.mu.Unlock()
	for _, f := range idle {
		f.Close()
	}
	if oc.base != nil {
		oc.base.Close()
	}
}

// borrow returns a descriptor of the copy to send from; give it back.
func (oc *openCopy) borrow() (*os.File, error) {
	oc.mu.Lock()
	if n := len(oc.idle); n > 0 {
		f := oc.idle[n-1]
		oc.idle = oc.idle[:n-1]
		oc.mu.Unlock()
		return f, nil
	}
	oc.mu.Unlock()
	return reopen(oc.base)
}

func (oc *openCopy) giveBack(f *os.File) {
	oc.mu.Lock()
	if len(oc.idle) < maxPooledFiles {
		oc.idle = append(oc.idle, f)
		oc.mu.Unlock()
		return
	}
	oc.mu.Unlock()
	f.Close()
}

// reopen opens the inode behind f again, with a file position of its own.
func reopen(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd uintptr
	if err := sc.Control(func(d uintptr) { fd = d }); err != nil {
		return nil, err
	}
	g, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err == nil {
		return g, nil
	}
	// No /proc: the path names the same file unless it was replaced.
	if g, err2 := os.Open(f.Name()); err2 == nil {
		return g, nil
	}
	return nil, err
}

// content is the io.ReadSeeker http.ServeContent is given: a position in
// the copy. ServeContent only seeks it and hands it to the response's
// ReadFrom as an *io.LimitedReader, where the delivery sends it by
// sendfile; Read (used for multipart ranges) reads at the position.
type content struct {
	oc  *openCopy
	off int64
}

var errSeek = errors.New("edge: seek out of range")

func (c *content) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.oc.size
	default:
		return c.off, errSeek
	}
	if offset < 0 {
		return c.off, errSeek
	}
	c.off = offset
	return offset, nil
}

func (c *content) Read(p []byte) (int, error) {
	if c.off >= c.oc.size {
		return 0, io.EOF
	}
	if rest := c.oc.size - c.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.oc.base.ReadAt(p, c.off) // positional: safe to share
	c.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
