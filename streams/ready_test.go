package streams

import (
	"strings"
	"testing"
)

// A restarted node is not ready (its health check fails) until raft has
// replayed the set as far as the node had seen it before.
func TestNotReadyWhileReplayingAfterRestart(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CatchUp(3); err != nil {
		t.Fatal(err)
	}
	store, err = OpenStore(dir) // the restart
	if err != nil {
		t.Fatal(err)
	}
	fsm := NewFSM()
	log := &localLog{fsm: fsm}
	m := NewManager(Options{Self: "n1", Replicates: true, FSM: fsm, Store: store, Cluster: log, Peers: noPeers{}})
	defer m.Close()
	if ok, why := m.Ready(); ok || !strings.Contains(why, "replaying") {
		t.Fatalf("Ready() = %v %q with an empty set behind the index seen before", ok, why)
	}
	for range 3 {
		log.Apply(t.Context(), RemoveCommand("nothing", 0)) // any entry moves the index
	}
	if ok, why := m.Ready(); !ok {
		t.Fatalf("Ready() = false %q once the set is replayed", why)
	}
}
