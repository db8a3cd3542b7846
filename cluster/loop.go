package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// loopState is what run remembers between steps.
type loopState struct {
	leader      raft.ServerID
	established bool   // leader, and the Barrier after winning has passed
	waiting     string // why bootstrap waits, logged once per reason
}

// run is the cluster's own goroutine: it notices leadership changes,
// keeps this node's gossip metadata current, bootstraps when the rules
// allow, and, on the leader, reconciles the raft configuration with the
// members. It wakes on member events, raft observations and a tick.
func (c *Cluster) run() {
	defer c.wg.Done()
	tick := time.NewTicker(loopTick(c.t))
	defer tick.Stop()
	var st loopState
	for {
		c.step(&st)
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-c.obsCh:
		case <-tick.C:
		}
	}
}

func (c *Cluster) step(st *loopState) {
	if c.ctx.Err() != nil {
		return
	}
	if _, id := c.raft.LeaderWithID(); id != st.leader {
		st.leader = id
		if id != "" {
			c.hasState.Store(true)
			c.log.Debug("leader changed", "leader", string(id))
		} else {
			c.log.Debug("no leader")
		}
		c.mu.Lock()
		close(c.leaderWait)
		c.leaderWait = make(chan struct{})
		c.mu.Unlock()
		c.signalChanges()
	}
	if !c.hasState.Load() && c.raft.LastIndex() > 0 {
		c.hasState.Store(true)
	}
	c.refreshMeta()
	if !c.hasState.Load() {
		c.maybeBootstrap(st)
	}

	if c.raft.State() != raft.Leader {
		st.established = false
	} else {
		if !st.established {
			// Everything committed by earlier leaders is applied before
			// this one acts on the configuration (nomad's leaderLoop).
			if err := c.raft.Barrier(10 * time.Second).Error(); err != nil {
				c.log.Warn("barrier after winning leadership failed", "err", err)
				return
			}
			st.established = true
			c.log.Info("leadership established", "node", c.name, "term", c.raft.CurrentTerm())
			c.signalChanges()
		}
		c.reconcile()
	}
	c.reapMembers(time.Now())
	c.savePeers()
}

// refreshMeta republishes this node's metadata when its InCluster flag
// changed.
func (c *Cluster) refreshMeta() {
	in := c.hasState.Load()
	c.mu.Lock()
	changed := c.meta.InCluster != in
	c.meta.InCluster = in
	c.mu.Unlock()
	if changed {
		// A timeout only means no member acknowledged yet: the update is
		// queued and push/pull carries it too.
		_ = c.ml.UpdateNode(2 * c.t.GossipProbe)
	}
}

// maybeBootstrap bootstraps raft when every rule holds (nomad's
// maybeBootstrap): the log is empty (checked by the caller); a configured
// join has succeeded; at least bootstrap_expect alive members are seen;
// they all advertise the same bootstrap_expect; and none is already in a
// cluster. The configuration is exactly the members seen, sorted by name,
// so the nodes that bootstrap propose the same one.
func (c *Cluster) maybeBootstrap(st *loopState) {
	wait := func(reason string, args ...any) {
		if st.waiting != reason {
			st.waiting = reason
			c.log.Info("bootstrap: waiting: "+reason, args...)
		}
	}
	if len(c.join) > 0 && !c.joined.Load() {
		wait("no configured join target reached yet", "join", c.join)
		return
	}
	var servers []raft.Server
	self := false
	for _, m := range c.Members() {
		if m.State != StateAlive || m.Meta.Leaving || m.Meta.Raft == "" {
			continue
		}
		if m.Meta.InCluster {
			wait("a member is already in a cluster; waiting for its leader to add this node", "member", m.Name)
			return
		}
		if m.Meta.BootstrapExpect != c.expect {
			wait("members disagree on bootstrap_expect", "member", m.Name, "theirs", m.Meta.BootstrapExpect, "ours", c.expect)
			return
		}
		self = self || m.Name == c.name
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft)})
	}
	if !self || len(servers) < c.expect {
		wait(fmt.Sprintf("%d of %d expected servers seen", len(servers), c.expect))
		return
	}
	err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		c.log.Error("bootstrap failed", "err", err)
		return
	}
	c.hasState.Store(true)
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	c.log.Info("bootstrapped a new cluster", "servers", ids)
	c.refreshMeta()
}

// reconcile makes the raft configuration follow the members (leader only):
// an alive member missing from it is added, as a voter while there are
// fewer than maxVoters, else as a non-voter; a member that moved its raft
// address is updated; a member that left gracefully is removed; a dead one
// stays (it may come back); non-voters are promoted while voters are fewer
// than maxVoters. Every step is idempotent.
func (c *Cluster) reconcile() {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	servers := f.Configuration().Servers
	byID := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range servers {
		byID[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	members := c.Members()
	alive := map[string]bool{}
	for _, m := range members {
		alive[m.Name] = m.State == StateAlive && !m.Meta.Leaving
	}
	changed := false
	apply := func(what string, m string, f raft.IndexFuture) bool {
		if err := f.Error(); err != nil {
			c.log.Warn("reconcile: "+what+" failed", "member", m, "err", err)
			return false
		}
		c.log.Info("reconcile: "+what, "member", m)
		changed = true
		return true
	}
	const timeout = 5 * time.Second
	for _, m := range members {
		id := raft.ServerID(m.Name)
		srv, in := byID[id]
		addr := raft.ServerAddress(m.Meta.Raft)
		switch {
		case m.Name == c.name:
			if in && addr != "" && srv.Address != addr {
				apply("update own raft address", m.Name, c.addServer(srv.Suffrage, id, addr, timeout))
			}
		case m.State == StateLeft || (m.State == StateAlive && m.Meta.Leaving):
			if in && apply("remove server that left", m.Name, c.raft.RemoveServer(id, 0, timeout)) && srv.Suffrage == raft.Voter {
				voters--
			}
		case m.State == StateAlive && addr != "":
			if in && srv.Address == addr {
				continue
			}
			// A stale server holding this address under another name (a
			// renamed node) would make raft refuse the change.
			for _, s := range servers {
				if s.Address == addr && s.ID != id && !alive[string(s.ID)] {
					if apply("remove stale server at the same address", string(s.ID), c.raft.RemoveServer(s.ID, 0, timeout)) && s.Suffrage == raft.Voter {
						voters--
					}
				}
			}
			switch {
			case in:
				apply("update raft address", m.Name, c.addServer(srv.Suffrage, id, addr, timeout))
			case voters < maxVoters:
				if apply("add voter", m.Name, c.raft.AddVoter(id, addr, 0, timeout)) {
					voters++
				}
			default:
				apply("add non-voter", m.Name, c.raft.AddNonvoter(id, addr, 0, timeout))
			}
		}
	}
	if voters < maxVoters {
		sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
		for _, s := range servers {
			if voters >= maxVoters {
				break
			}
			if s.Suffrage != raft.Voter && alive[string(s.ID)] {
				if apply("promote to voter", string(s.ID), c.raft.AddVoter(s.ID, s.Address, 0, timeout)) {
					voters++
				}
			}
		}
	}
	if changed {
		c.signalChanges()
	}
}

func (c *Cluster) addServer(s raft.ServerSuffrage, id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) raft.IndexFuture {
	if s == raft.Voter {
		return c.raft.AddVoter(id, addr, 0, timeout)
	}
	return c.raft.AddNonvoter(id, addr, 0, timeout)
}

// joinLoop joins the configured targets and the members saved by the last
// run, retrying with backoff until one answers (or, with no configured
// target, until another member shows up); afterwards it asks dead members
// to rejoin now and then, so a node that restarted, or the other side of a
// healed partition, merges back into gossip.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	targets := c.join
	for _, a := range c.known {
		if a != c.gossipAddr && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	backoff := 100 * time.Millisecond
	for try := 0; len(targets) > 0 && !c.joined.Load(); try++ {
		if len(c.join) == 0 && c.othersAlive() {
			break // someone joined us
		}
		n, err := c.ml.Join(targets)
		c.joinTries.Add(1)
		if n > 0 {
			c.joined.Store(true)
			c.log.Info("joined", "contacted", n, "targets", targets)
			c.wake()
			break
		}
		if try < 3 || try%10 == 0 {
			c.log.Warn("join failed; retrying", "targets", targets, "in", backoff, "err", err)
		}
		if !sleep(c.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	tick := time.NewTicker(reconnectInterval(c.t))
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		for _, m := range c.Members() {
			if m.State != StateDead || c.ctx.Err() != nil {
				continue
			}
			if n, _ := c.ml.Join([]string{m.Addr}); n > 0 {
				c.log.Info("reconnected to a member that was dead", "member", m.Name, "addr", m.Addr)
			}
		}
	}
}

// othersAlive reports whether gossip knows another alive member.
func (c *Cluster) othersAlive() bool {
	for _, m := range c.Members() {
		if m.Name != c.name && m.State == StateAlive {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
