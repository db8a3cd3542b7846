package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate hands memberlist this node's metadata. memberlist calls it with
// its own locks held: it must not call back into memberlist.
type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	m := d.c.meta
	d.c.mu.Unlock()
	b, err := encodeMeta(m)
	if err != nil || len(b) > limit {
		d.c.log.Error("gossip metadata does not fit", "err", err, "size", len(b), "limit", limit)
		return nil
	}
	return b
}

func (delegate) NotifyMsg([]byte)                  {}
func (delegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (delegate) LocalState(bool) []byte            { return nil }
func (delegate) MergeRemoteState(b []byte, j bool) {}

// events keeps Cluster.members from memberlist's notifications. It only
// updates a map and signals (never blocks), so memberlist is never held up.
type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node)   { e.c.observe(n, StateAlive) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.c.observe(n, StateAlive) }

// NotifyLeave is called for a node that left and for one that died alike
// (memberlist's Node.State is not kept up to date): a node announces a
// graceful leave in its metadata first (Meta.Leaving), which tells them apart.
func (e events) NotifyLeave(n *memberlist.Node) { e.c.observe(n, "") }

func (c *Cluster) observe(n *memberlist.Node, state string) {
	meta, err := decodeMeta(n.Meta)
	c.mu.Lock()
	prev, known := c.members[n.Name]
	if err != nil {
		if known {
			meta = prev.Meta
		}
		c.log.Warn("member with unreadable gossip metadata", "member", n.Name, "addr", n.Address(), "err", err)
	}
	if state == "" {
		state = StateDead
		if meta.Leaving {
			state = StateLeft
		}
	}
	e := &memberEntry{Member: Member{Name: n.Name, Addr: n.Address(), Meta: meta, State: state}, since: time.Now()}
	if known && prev.State == state {
		e.since = prev.since
	}
	c.members[n.Name] = e
	c.mu.Unlock()
	if n.Name != c.name && (!known || prev.State != state) {
		c.log.Info("member "+state, "member", n.Name, "addr", e.Addr)
	}
	c.signalChanges()
	c.wake()
}

// reapMembers forgets members that left long ago or have been dead for
// a day; a member that comes back is simply learnt again.
func (c *Cluster) reapMembers(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, e := range c.members {
		if name == c.name {
			continue
		}
		if (e.State == StateLeft && now.Sub(e.since) > reapLeft) || (e.State == StateDead && now.Sub(e.since) > reapDead) {
			delete(c.members, name)
		}
	}
}
