package streams

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// localLog applies commands straight to the FSM, as a one-node raft would;
// the multi-node tests in node/ run the real thing.
type localLog struct {
	mu    sync.Mutex
	fsm   *FSM
	index uint64
}

func (l *localLog) Apply(_ context.Context, cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	switch r := l.fsm.Apply(&raft.Log{Index: l.index, Data: cmd}).(type) {
	case error:
		return nil, r
	default:
		return r.([]byte), nil
	}
}

func (l *localLog) IsLeader() bool { return true }

type noPeers struct{}

func (noPeers) Peer(string) (Peer, bool) { return Peer{}, false }
func (noPeers) Peers() []Peer            { return nil }

func newTestManager(t *testing.T) (*Manager, string) {
	dir := t.TempDir()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	fsm := NewFSM()
	m := NewManager(Options{Self: "n1", Replicates: true, FSM: fsm, Store: store, Cluster: &localLog{fsm: fsm}, Peers: noPeers{}})
	m.Run(nil)
	t.Cleanup(m.Close)
	return m, dir
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for " + what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestManagerPullsResumesAndRemoves(t *testing.T) {
	body := []byte(strings.Repeat("castmesh ", 20000))
	var plainGets, ranged atomic.Int64
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		} else if plainGets.Add(1) == 2 {
			// The first is pullStream's probe; the second, the download, is
			// cut half-way through.
			w.Header().Set("Content-Length", "180000")
			w.Write(body[:90000])
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "", time.Unix(1, 0), strings.NewReader(string(body)))
	}))
	defer src.Close()

	m, dir := newTestManager(t)
	s, err := m.Pull(context.Background(), PullRequest{URI: src.URL + "/a.mp3", Name: "radio/a.mp3", KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Origin != "n1" || s.Kind != KindFile || s.ConfigID == 0 {
		t.Fatalf("pulled %+v", s)
	}
	waitUntil(t, "the copy to complete", func() bool {
		r, err := m.Open("radio/a.mp3")
		if err != nil {
			return false
		}
		defer r.Close()
		got, _ := os.ReadFile(filepath.Join(dir, "media", "radio", "a.mp3"))
		return sha256.Sum256(got) == sha256.Sum256(body)
	})
	if ranged.Load() == 0 {
		t.Error("the interrupted download was not resumed with a Range request")
	}
	if ok, why := m.Ready(); !ok {
		t.Fatalf("not ready: %s", why)
	}

	if _, err := m.Pull(context.Background(), PullRequest{URI: src.URL + "/a.mp3", Name: "radio/a.mp3"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate pull: %v", err)
	}
	if _, err := m.Remove(context.Background(), "", s.ConfigID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the copy to be deleted", func() bool {
		_, err := os.Stat(filepath.Join(dir, "media", "radio", "a.mp3"))
		return os.IsNotExist(err)
	})
	if _, err := m.Open("radio/a.mp3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open after remove: %v", err)
	}
}

func TestManagerRefusesBadSources(t *testing.T) {
	m, _ := newTestManager(t)
	down := httptest.NewServer(http.NotFoundHandler())
	defer down.Close()
	for _, uri := range []string{"ftp://x/a.mp3", "file:///etc/passwd", down.URL + "/missing.mp3", "http://127.0.0.1:1/closed.mp3"} {
		if _, err := m.Pull(context.Background(), PullRequest{URI: uri, Name: "x.mp3"}); err == nil {
			t.Errorf("pull of %s succeeded", uri)
		}
	}
	if len(m.Streams()) != 0 {
		t.Fatalf("refused pulls left streams: %v", m.Streams())
	}
}
