package cluster

import (
	"time"

	"github.com/castmesh/castmesh/config"
)

// Production timings, chosen for a LAN (see DESIGN.md, "Timings"):
//
//   - raft: a follower calls an election after 200–400 ms without the
//     leader, and wins in one round trip (FACTS.md measured ~290 ms from
//     start to leader with these figures), so a crashed leader is replaced in
//     well under a second. The lease is half the heartbeat, as raft wants it
//     ≤ heartbeat. CommitTimeout 10 ms is how late followers learn the commit
//     index of an idle leader: entries reach every FSM within ~15 ms, for
//     ~70 empty AppendEntries a second per follower when idle.
//   - memberlist: LAN settings with probes twice as often and a shorter
//     suspicion: a crashed node is declared dead after ~2–2.5 s instead of
//     ~6 s (origin failover of streams waits on it).
const (
	defaultRaftHeartbeat   = 200 * time.Millisecond
	defaultRaftElection    = 200 * time.Millisecond
	defaultRaftLease       = 100 * time.Millisecond
	defaultRaftCommit      = 10 * time.Millisecond
	defaultGossipProbe     = 500 * time.Millisecond
	defaultGossipProbeWait = 250 * time.Millisecond
	defaultGossipInterval  = 100 * time.Millisecond
	defaultSuspicionMult   = 3
)

// timings resolves config.Timings: zero fields take the defaults above, and
// the raft figures are made consistent (election ≥ heartbeat, lease ≤
// heartbeat) so that a partial override cannot make raft refuse to start.
func timings(t config.Timings) config.Timings {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.RaftHeartbeat, defaultRaftHeartbeat)
	def(&t.RaftElection, defaultRaftElection)
	def(&t.RaftLease, defaultRaftLease)
	def(&t.RaftCommit, defaultRaftCommit)
	def(&t.GossipProbe, defaultGossipProbe)
	def(&t.GossipProbeWait, defaultGossipProbeWait)
	def(&t.GossipInterval, defaultGossipInterval)
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = defaultSuspicionMult
	}
	if t.RaftElection < t.RaftHeartbeat {
		t.RaftElection = t.RaftHeartbeat
	}
	if t.RaftLease > t.RaftHeartbeat {
		t.RaftLease = t.RaftHeartbeat / 2
	}
	if t.GossipProbeWait >= t.GossipProbe {
		t.GossipProbeWait = t.GossipProbe / 2
	}
	return t
}

// loopTick is how often the cluster's own loop looks at raft and the
// members when nothing woke it: often enough to bootstrap and reconcile
// promptly, rarely enough to cost nothing.
func loopTick(t config.Timings) time.Duration {
	return min(max(t.RaftHeartbeat, 20*time.Millisecond), 500*time.Millisecond)
}

// reconnectInterval is how often dead members are asked to rejoin gossip
// (as serf's reconnect does), so that a node restarted without a usable
// join list, or a healed partition, merges back.
func reconnectInterval(t config.Timings) time.Duration {
	return min(max(20*t.GossipProbe, time.Second), 30*time.Second)
}
