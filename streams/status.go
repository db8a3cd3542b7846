package streams

import (
	"sync"
	"sync/atomic"
	"time"
)

// States of a stream on one node.
const (
	StatePending  = "pending"  // in the set, nothing done yet
	StatePulling  = "pulling"  // copying from the source or the origin
	StateActive   = "active"   // complete and served
	StateError    = "error"    // the last attempt failed; retried unless given up
	StateExcluded = "excluded" // by design this node does not carry it
)

// stateCodes are the numeric codes of listConfig's status objects.
var stateCodes = map[string]int{StatePending: 1, StatePulling: 2, StateActive: 3, StateError: 4, StateExcluded: 5}

// Condition is one entry of a stream's status history, as EMS's listConfig
// reports it: {code, description, timestamp}.
type Condition struct {
	Code        int       `json:"code"`
	State       string    `json:"state"`
	Description string    `json:"description"`
	Timestamp   time.Time `json:"timestamp"`
}

// Status is this node's state of one stream.
type Status struct {
	Name     string    `json:"localStreamName"`
	ConfigID uint64    `json:"configId"`
	Current  Condition `json:"current"`
	Previous Condition `json:"previous"`
	Bytes    int64     `json:"bytes"`
	Size     int64     `json:"size"`
	Viewers  int64     `json:"viewers"`
	Upstream string    `json:"upstream,omitempty"`
	SHA256   string    `json:"sha256,omitempty"`

	// Live is set for live streams only.
	Live *LiveStatus `json:"live,omitempty"`
}

// LiveStatus is what a node reports of a live stream besides its state
// (live, offline, reconnecting), viewers and upstream.
type LiveStatus struct {
	BitrateBPS float64 `json:"bitrate_bps"` // over the relay's buffer
	// LagMS is how far this node is behind the origin's live edge: how
	// much media the origin had that this node had not yet received, plus,
	// while reconnecting, the time since the last unit. 0 on the origin.
	LagMS          int64 `json:"lag_ms"`
	ViewersDropped int64 `json:"viewers_dropped"` // readers dropped for lag
}

// streamState is the live, mutable form of Status.
type streamState struct {
	mu       sync.Mutex
	configID uint64
	cur      Condition
	prev     Condition
	upstream string
	size     int64

	bytes   atomic.Int64
	viewers atomic.Int64
}

func (st *streamState) set(state, desc string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cur.State == state && st.cur.Description == desc {
		return
	}
	if st.cur.State != state {
		st.prev = st.cur
	}
	st.cur = Condition{Code: stateCodes[state], State: state, Description: desc, Timestamp: time.Now().UTC()}
}

func (st *streamState) state() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur.State
}

func (st *streamState) snapshot(name string) Status {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Status{
		Name: name, ConfigID: st.configID, Current: st.cur, Previous: st.prev,
		Bytes: st.bytes.Load(), Size: st.size, Viewers: st.viewers.Load(), Upstream: st.upstream,
	}
}
