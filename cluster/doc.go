// Package cluster owns a castmesh node's membership and consensus.
//
// Membership is gossip (hashicorp/memberlist): every node advertises a
// typed Meta (its raft, API, edge and ingest addresses, zone, replication
// switch, and what bootstrapping needs), encoded and parsed in exactly one
// place (meta.go). Members, Member and Changes are what the rest of
// castmesh sees of it.
//
// Consensus is hashicorp/raft with a raft-boltdb log and stable store and a
// file snapshot store (two kept) under <data_dir>/raft. The package owns:
//
//   - bootstrapping (bootstrap_expect, only on an empty log, only when every
//     member seen agrees and none is already in a cluster);
//   - joining through cluster.join, with retries, and rejoining the members
//     saved in <data_dir>/gossip/peers.json after a restart;
//   - the leader's reconcile of the raft configuration with the members:
//     voters up to five, non-voters beyond, removal of members that left
//     gracefully, promotion when a voter leaves;
//   - Apply, which forwards a follower's command to the leader through the
//     Forward function the composition root supplies;
//   - graceful Leave (leadership handed over first) and abrupt Close.
//
// It does not know what the commands mean: the FSM (streams.FSM) does. See
// DESIGN.md beside this file for why it is built this way.
package cluster
