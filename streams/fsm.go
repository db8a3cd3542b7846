package streams

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Command types: the first byte of a Raft log entry. A type this version
// does not know is an error, never a silent divergence.
const (
	cmdAdd      byte = 1
	cmdRemove   byte = 2
	cmdReassign byte = 3
)

type removeCmd struct {
	Name     string `json:"name,omitempty"`
	ConfigID uint64 `json:"configId,omitempty"`
}

type reassignCmd struct {
	Name   string `json:"name"`
	Origin string `json:"origin"`
	// From guards against a stale reassignment: it applies only while the
	// origin is still From.
	From string `json:"from"`
}

// AddCommand encodes the Raft command that adds s (ConfigID is set by the FSM).
func AddCommand(s Stream) []byte { return encode(cmdAdd, s) }

// RemoveCommand encodes the Raft command that removes a stream by name or id.
func RemoveCommand(name string, configID uint64) []byte {
	return encode(cmdRemove, removeCmd{Name: name, ConfigID: configID})
}

// ReassignCommand encodes the Raft command that moves a stream's origin.
func ReassignCommand(name, from, to string) []byte {
	return encode(cmdReassign, reassignCmd{Name: name, From: from, Origin: to})
}

func encode(t byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are encoded
	}
	return append([]byte{t}, b...)
}

// DecodeResponse turns an FSM response (a JSON stream) back into a Stream.
func DecodeResponse(b []byte) (Stream, error) {
	var s Stream
	err := json.Unmarshal(b, &s)
	return s, err
}

// FSM is the replicated stream set. Apply returns the affected Stream as
// JSON, or an error.
type FSM struct {
	mu      sync.RWMutex
	streams map[string]Stream
	applied uint64 // index of the last entry applied (or restored)
	changed chan struct{}
}

// NewFSM returns an empty stream set.
func NewFSM() *FSM {
	return &FSM{streams: map[string]Stream{}, changed: make(chan struct{}, 1)}
}

// Changed signals (coalesced) that the set changed.
func (f *FSM) Changed() <-chan struct{} { return f.changed }

func (f *FSM) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// List returns the streams sorted by ConfigID.
func (f *FSM) List() []Stream {
	out, _ := f.ListAt()
	return out
}

// ListAt is List with the index it reflects: what has a ConfigID above it
// is newer than the list.
func (f *FSM) ListAt() ([]Stream, uint64) {
	f.mu.RLock()
	out := make([]Stream, 0, len(f.streams))
	for _, s := range f.streams {
		out = append(out, s)
	}
	at := f.applied
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ConfigID < out[j].ConfigID })
	return out, at
}

// AppliedIndex is the Raft index of the last entry applied. A node that
// restarts replays its log: until the index is back where it was, the set
// it shows is an old one.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// Get returns the stream called name.
func (f *FSM) Get(name string) (Stream, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.streams[name]
	return s, ok
}

// ByID returns the stream with the given config id.
func (f *FSM) ByID(id uint64) (Stream, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.streams {
		if s.ConfigID == id {
			return s, true
		}
	}
	return Stream{}, false
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		f.mu.Lock()
		f.applied = max(f.applied, l.Index)
		f.mu.Unlock()
		return fmt.Errorf("empty command")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = max(f.applied, l.Index)
	var (
		s   Stream
		err error
	)
	switch body := l.Data[1:]; l.Data[0] {
	case cmdAdd:
		s, err = f.add(body, l.Index)
	case cmdRemove:
		s, err = f.remove(body)
	case cmdReassign:
		s, err = f.reassign(body)
	default:
		return fmt.Errorf("unknown command type %d (is this node older than the leader?)", l.Data[0])
	}
	if err != nil {
		return err
	}
	f.notify()
	b, _ := json.Marshal(s)
	return b
}

func (f *FSM) add(body []byte, index uint64) (Stream, error) {
	var s Stream
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("decode add: %w", err)
	}
	if err := ValidateName(s.Name); err != nil {
		return s, err
	}
	if _, ok := f.streams[s.Name]; ok {
		return s, fmt.Errorf("%w: %s", ErrExists, s.Name)
	}
	for name := range f.streams {
		if conflicts(name, s.Name) {
			return s, fmt.Errorf("%w: %s and %s", ErrConflict, s.Name, name)
		}
	}
	s.ConfigID = index
	f.streams[s.Name] = s
	return s, nil
}

func (f *FSM) remove(body []byte) (Stream, error) {
	var c removeCmd
	if err := json.Unmarshal(body, &c); err != nil {
		return Stream{}, fmt.Errorf("decode remove: %w", err)
	}
	for name, s := range f.streams {
		if (c.Name != "" && name == c.Name) || (c.ConfigID != 0 && s.ConfigID == c.ConfigID) {
			delete(f.streams, name)
			return s, nil
		}
	}
	return Stream{}, ErrNotFound
}

func (f *FSM) reassign(body []byte) (Stream, error) {
	var c reassignCmd
	if err := json.Unmarshal(body, &c); err != nil {
		return Stream{}, fmt.Errorf("decode reassign: %w", err)
	}
	s, ok := f.streams[c.Name]
	if !ok {
		return s, ErrNotFound
	}
	if s.Origin != c.From {
		return s, fmt.Errorf("origin of %s is %s, not %s: reassignment is stale", s.Name, s.Origin, c.From)
	}
	s.Origin = c.Origin
	f.streams[c.Name] = s
	return s, nil
}

// Snapshot implements raft.FSM with a copy taken under the lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot{Applied: f.AppliedIndex(), Streams: f.List()}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var snap snapshot
	if err := json.NewDecoder(rc).Decode(&snap); err != nil {
		return fmt.Errorf("restore stream set: %w", err)
	}
	m := make(map[string]Stream, len(snap.Streams))
	for _, s := range snap.Streams {
		m[s.Name] = s
	}
	f.mu.Lock()
	f.streams = m
	f.applied = snap.Applied
	f.mu.Unlock()
	f.notify()
	return nil
}

type snapshot struct {
	Applied uint64   `json:"applied"`
	Streams []Stream `json:"streams"`
}

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
