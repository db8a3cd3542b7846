// Package streams owns the replicated stream set and what this node does
// about it.
//
// The FSM (fsm.go) is the Raft state machine holding the desired set: which
// streams exist, where each comes from and which node is its origin. The
// Store (store.go) is this node's disk copy of file streams under data_dir.
// The Manager (manager.go) is the reconciler: it watches the FSM and the
// membership and makes the local node carry every stream of the set —
// pulling from the source when this node is the origin, from the origin's
// API proxy otherwise — and drops what was removed.
//
// Live streams (live.go) come from source clients on the ingest port
// (ingest.go) or from pulled live HTTP sources, and are fanned out by one
// Relay per stream per node (relay.go) to the edge's viewers and to peers,
// which copy it from the origin in the relay protocol (relaywire.go).
// DESIGN.md says why they are built that way.
package streams
