package streams

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// applyAt applies cmd as the log entry at index i and returns the response.
func applyAt(f *FSM, i uint64, cmd []byte) any {
	return f.Apply(&raft.Log{Index: i, Data: cmd})
}

func mustStream(t *testing.T, resp any) Stream {
	t.Helper()
	b, ok := resp.([]byte)
	if !ok {
		t.Fatalf("response %v (%T), want a stream", resp, resp)
	}
	s, err := DecodeResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFSMAddRemoveReassign(t *testing.T) {
	f := NewFSM()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := mustStream(t, applyAt(f, 7, AddCommand(Stream{Name: "vod/a.mp4", Source: "http://x/a.mp4", Kind: KindFile, Origin: "n1", CreatedAt: created})))
	if s.ConfigID != 7 || s.Origin != "n1" || !s.CreatedAt.Equal(created) {
		t.Fatalf("added %+v", s)
	}
	select {
	case <-f.Changed():
	default:
		t.Fatal("no change signalled")
	}

	for _, tc := range []struct {
		name string
		want error
	}{
		{"vod/a.mp4", ErrExists},
		{"vod", ErrConflict},
		{"vod/a.mp4/b", ErrConflict},
		{"../etc/passwd", ErrBadName},
	} {
		resp := applyAt(f, 8, AddCommand(Stream{Name: tc.name, Origin: "n1"}))
		if err, ok := resp.(error); !ok || !errors.Is(err, tc.want) {
			t.Errorf("add %q: got %v, want %v", tc.name, resp, tc.want)
		}
	}

	if resp := applyAt(f, 9, ReassignCommand("vod/a.mp4", "n9", "n2")); resp.(error) == nil {
		t.Fatal("stale reassignment applied")
	}
	if s := mustStream(t, applyAt(f, 10, ReassignCommand("vod/a.mp4", "n1", "n2"))); s.Origin != "n2" {
		t.Fatalf("reassign: origin %s", s.Origin)
	}
	if got, _ := f.Get("vod/a.mp4"); got.Origin != "n2" || got.ConfigID != 7 {
		t.Fatalf("after reassign: %+v", got)
	}
	if s := mustStream(t, applyAt(f, 11, RemoveCommand("", 7))); s.Name != "vod/a.mp4" {
		t.Fatalf("removed %+v", s)
	}
	if resp := applyAt(f, 12, RemoveCommand("vod/a.mp4", 0)); !errors.Is(resp.(error), ErrNotFound) {
		t.Fatalf("second remove: %v", resp)
	}
	if len(f.List()) != 0 {
		t.Fatalf("left %v", f.List())
	}
}

func TestFSMRejectsUnknownCommand(t *testing.T) {
	f := NewFSM()
	for _, cmd := range [][]byte{nil, {99, '{', '}'}, {cmdAdd, 'x'}} {
		if _, ok := applyAt(f, 1, cmd).(error); !ok {
			t.Errorf("command %v: no error", cmd)
		}
	}
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := NewFSM()
	for i, name := range []string{"a.mp3", "live/b.mp4", "c.m4a"} {
		mustStream(t, applyAt(f, uint64(10+i), AddCommand(Stream{Name: name, Origin: "n1", Source: "http://s/" + name})))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot must not leak into it.
	applyAt(f, 20, RemoveCommand("a.mp3", 0))

	g := NewFSM()
	if err := g.Restore(io.NopCloser(&out.Buffer)); err != nil {
		t.Fatal(err)
	}
	got := g.List()
	if len(got) != 3 || got[0].Name != "a.mp3" || got[1].ConfigID != 11 || got[2].Source != "http://s/c.m4a" {
		t.Fatalf("restored %+v", got)
	}
	if err := g.Restore(io.NopCloser(bytes.NewBufferString("{garbage"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
}
