package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"github.com/castmesh/castmesh/config"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotLeader: the call must run on the leader and this node is not it
	// (ApplyLocal). Send the command to the leader instead, or use Apply.
	ErrNotLeader = errors.New("cluster: this node is not the leader")
	// ErrNoLeader: no leader is known, so nothing can be committed now (an
	// election is running, or a majority of voters is down). Retry later.
	ErrNoLeader = errors.New("cluster: no leader is known")
	// ErrClosed: the Cluster was closed or has left; start a new one.
	ErrClosed = errors.New("cluster: closed")
)

// Member states, as Member.State reports them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect" // not reported: memberlist does not expose suspicion
	StateDead    = "dead"    // stopped answering probes; it may come back
	StateLeft    = "left"    // left gracefully (Leave)
)

// maxVoters is the number of raft voters the leader keeps: members beyond
// it replicate as non-voters and are promoted when a voter leaves.
const maxVoters = 5

// How long the leader keeps members it no longer hears from.
const (
	reapLeft = 5 * time.Minute
	reapDead = 24 * time.Hour
)

// Member is a node as gossip sees it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"` // gossip host:port
	Meta  Meta   `json:"meta"`
	State string `json:"state"` // StateAlive, StateSuspect, StateDead or StateLeft
}

// Server is one entry of the raft configuration.
type Server struct {
	ID      string `json:"id"`      // node name
	Address string `json:"address"` // raft host:port
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	State   string `json:"state"` // the member's gossip state; "" when gossip does not know it
}

// Options configure a Cluster.
type Options struct {
	// Config supplies node (name, data_dir, bind/advertise addresses) and
	// cluster (ports, join, bootstrap_expect, gossip_key, Timings).
	Config config.Config
	// Meta is what this node advertises; the caller fills the addresses it
	// actually bound. Raft, BootstrapExpect, InCluster and Leaving are
	// filled by the Cluster.
	Meta Meta
	// FSM is the replicated state machine. Its Apply returns []byte or error.
	FSM raft.FSM
	// Forward sends a command to the leader when this node is a follower
	// and returns the leader's answer (see Apply). An error that wraps
	// ErrNotLeader or ErrNoLeader, or a failure to dial, is retried.
	Forward func(ctx context.Context, leader Member, cmd []byte) ([]byte, error)
	// Logger receives the cluster's logs, raft's and memberlist's included
	// (their INFO as Debug). nil: slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the cluster's metrics.
	Registerer prometheus.Registerer
}

type memberEntry struct {
	Member
	since time.Time // when State last changed
}

// Cluster is this node's membership (memberlist) and consensus (raft).
type Cluster struct {
	opts   Options
	log    *slog.Logger
	t      config.Timings
	name   string
	expect int
	join   []string // configured join targets, without this node's own address
	known  []string // gossip addresses saved by the last run (peers.json)

	savedPeers []string // what peers.json holds; used by run only

	raftLn  net.Listener
	trans   *raft.NetworkTransport
	store   *raftboltdb.BoltStore
	raft    *raft.Raft
	ml      *memberlist.Memberlist
	obs     *raft.Observer
	obsCh   chan raft.Observation
	metrics *metrics

	gossipAddr string

	mu         sync.Mutex
	meta       Meta
	left       bool
	members    map[string]*memberEntry
	leaderWait chan struct{} // closed and replaced when the leader changes

	changes   chan struct{}
	kick      chan struct{}
	joined    atomic.Bool // a join to a configured target (or Join) succeeded
	joinTries atomic.Int64
	hasState  atomic.Bool // the raft log is not empty, or a leader was seen
	closed    atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	lifeMu    sync.Mutex // orders Leave's gossip calls before memberlist's Shutdown
}

// New binds gossip and raft, opens raft under <data_dir>/raft, bootstraps a
// lone node at once when that is the configuration (bootstrap_expect 1, no
// join), and starts joining and bootstrapping in the background. It does
// not wait for a leader (see WaitForLeader). On error, whatever it started
// is stopped again.
func New(opts Options) (_ *Cluster, err error) {
	cfg := opts.Config
	if cfg.Node.Name == "" {
		return nil, errors.New("node.name is empty: every node needs a unique name")
	}
	if cfg.Node.DataDir == "" {
		return nil, errors.New("node.data_dir is empty")
	}
	if opts.FSM == nil {
		return nil, errors.New("cluster: Options.FSM is nil")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Cluster{
		opts:       opts,
		log:        log.With("component", "cluster"),
		t:          timings(cfg.Cluster.Timings),
		name:       cfg.Node.Name,
		expect:     max(cfg.Cluster.BootstrapExpect, 1),
		members:    map[string]*memberEntry{},
		leaderWait: make(chan struct{}),
		changes:    make(chan struct{}, 1),
		kick:       make(chan struct{}, 1),
		obsCh:      make(chan raft.Observation, 16),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	bind := cfg.Node.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
	}
	advertise, err := advertiseAddr(bind, cfg.Node.AdvertiseAddr)
	if err != nil {
		return nil, err
	}
	var secret []byte
	if cfg.Cluster.GossipKey != "" {
		secret, err = base64.StdEncoding.DecodeString(cfg.Cluster.GossipKey)
		if err != nil || (len(secret) != 16 && len(secret) != 24 && len(secret) != 32) {
			return nil, errors.New("cluster.gossip_key: expected the base64 of a 16, 24 or 32-byte key")
		}
	}
	c.join = withoutSelf(cfg.Cluster.Join, cfg.Cluster.GossipPort, bind, advertise)
	c.known = withoutSelf(readPeers(cfg.Node.DataDir), cfg.Cluster.GossipPort, bind, advertise)
	c.savedPeers = readPeers(cfg.Node.DataDir)

	// Raft: stores, transport, then raft itself.
	dir := filepath.Join(cfg.Node.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft data dir: %w", err)
	}
	c.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s (is another castmeshd using this data_dir?): %w", filepath.Join(dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLog(log, "raft"))
	if err != nil {
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	logs, err := raft.NewLogCache(512, c.store)
	if err != nil {
		return nil, err
	}
	existing, err := raft.HasExistingState(logs, c.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	c.hasState.Store(existing)

	c.raftLn, err = net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(cfg.Cluster.RaftPort)))
	if err != nil {
		return nil, fmt.Errorf("raft listener (cluster.raft_port): %w", err)
	}
	raftAdv := &net.TCPAddr{IP: advertise, Port: c.raftLn.Addr().(*net.TCPAddr).Port}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: c.raftLn, advertise: raftAdv},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  newHCLog(log, "raft"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.name)
	rc.HeartbeatTimeout = c.t.RaftHeartbeat
	rc.ElectionTimeout = c.t.RaftElection
	rc.LeaderLeaseTimeout = c.t.RaftLease
	rc.CommitTimeout = c.t.RaftCommit
	rc.ShutdownOnRemove = false // Leave and Close decide when to stop
	rc.Logger = newHCLog(log, "raft")
	c.raft, err = raft.NewRaft(rc, opts.FSM, logs, c.store, snaps, c.trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	c.obs = raft.NewObserver(c.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.PeerObservation, raft.RaftState:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(c.obs)

	c.meta = opts.Meta
	c.meta.Raft = raftAdv.String()
	c.meta.BootstrapExpect = c.expect
	c.meta.Leaving = false
	if !existing && c.expect == 1 && len(c.join) == 0 {
		// The single-node default: nobody to wait for, nobody to join.
		err := c.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(c.meta.Raft)},
		}}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("bootstrap single-node cluster: %w", err)
		}
		c.hasState.Store(true)
		c.log.Info("bootstrapped a new single-node cluster", "raft", c.meta.Raft)
	}
	c.meta.InCluster = c.hasState.Load()
	if _, err := encodeMeta(c.meta); err != nil {
		return nil, err
	}

	// Gossip.
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.name
	mc.BindAddr = bind
	mc.BindPort = cfg.Cluster.GossipPort
	mc.AdvertiseAddr = advertise.String()
	mc.AdvertisePort = cfg.Cluster.GossipPort
	mc.ProbeInterval = c.t.GossipProbe
	mc.ProbeTimeout = c.t.GossipProbeWait
	mc.GossipInterval = c.t.GossipInterval
	mc.SuspicionMult = c.t.SuspicionMult
	mc.TCPTimeout = 3 * time.Second
	// Push/pull also lets a node that restarted on new ports refute its old
	// entry (see DESIGN.md); LAN's 30 s would keep it out that long.
	mc.PushPullInterval = min(max(10*c.t.GossipProbe, time.Second), 30*time.Second)
	// A crashed node that comes back on another address may take its name
	// back as soon as it is known to be dead.
	mc.DeadNodeReclaimTime = time.Nanosecond
	mc.SecretKey = secret
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	mc.Logger = newStdLogger(log, "memberlist")
	c.ml, err = memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip (cluster.gossip_port): %w", err)
	}
	c.gossipAddr = c.ml.LocalNode().Address()

	if opts.Registerer != nil {
		c.metrics, err = newMetrics(c, opts.Registerer)
		if err != nil {
			return nil, fmt.Errorf("cluster metrics: %w", err)
		}
	}

	c.wg.Add(2)
	go c.run()
	go c.joinLoop()
	c.log.Info("cluster started", "node", c.name, "gossip", c.gossipAddr, "raft", c.meta.Raft,
		"bootstrap_expect", c.expect, "join", c.join, "existing_state", existing)
	return c, nil
}

// advertiseAddr is the IP peers use to reach this node: advertise_addr,
// else bind_addr, else (bind_addr unspecified) a private address of the host.
func advertiseAddr(bind, advertise string) (net.IP, error) {
	a := advertise
	if a == "" {
		a = bind
	}
	ip := net.ParseIP(a)
	if ip == nil {
		addrs, err := net.LookupIP(a)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("node.advertise_addr %q: not an IP address and does not resolve", a)
		}
		ip = addrs[0]
	}
	if ip.IsUnspecified() {
		priv, err := sockaddr.GetPrivateIP()
		if err != nil || priv == "" {
			return nil, fmt.Errorf("node.bind_addr is %s and no private IP was found to advertise: set node.advertise_addr", a)
		}
		ip = net.ParseIP(priv)
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return ip, nil
}

// withoutSelf drops this node's own gossip address from a join list, so
// that one list can be given to every node.
func withoutSelf(join []string, gossipPort int, bind string, advertise net.IP) []string {
	var out []string
	for _, a := range join {
		if gossipPort != 0 {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				host, port = a, strconv.Itoa(gossipPort)
			}
			if port == strconv.Itoa(gossipPort) && (host == bind || host == advertise.String()) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// streamLayer is raft's transport over a listener we bound ourselves, so
// that port 0 works and the advertised address is advertise_addr.
type streamLayer struct {
	net.Listener
	advertise net.Addr
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", string(address))
}

// signal sends to a cap-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Cluster) wake()          { signal(c.kick) }
func (c *Cluster) signalChanges() { signal(c.changes) }

// Changes signals, coalesced, every change of membership, of a member's
// metadata, of the raft configuration or of leadership. It has one
// consumer; a missed signal is folded into the pending one.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// Self is this node as the others see it.
func (c *Cluster) Self() Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.selfLocked()
}

func (c *Cluster) selfLocked() Member {
	state := StateAlive
	if c.left {
		state = StateLeft
	}
	return Member{Name: c.name, Addr: c.gossipAddr, Meta: c.meta, State: state}
}

// Members lists the members gossip knows, dead and left ones included
// (until they are forgotten), sorted by name.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, 0, len(c.members)+1)
	self := false
	for _, e := range c.members {
		if e.Name == c.name {
			self = true
			out = append(out, c.selfLocked())
			continue
		}
		out = append(out, e.Member)
	}
	if !self && c.gossipAddr != "" {
		out = append(out, c.selfLocked())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Member returns the member called name.
func (c *Cluster) Member(name string) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if name == c.name {
		return c.selfLocked(), true
	}
	e, ok := c.members[name]
	if !ok {
		return Member{}, false
	}
	return e.Member, true
}

// Leader is the current raft leader, as a member. When gossip does not
// know the leader yet, only Name and Meta.Raft are set.
func (c *Cluster) Leader() (Member, bool) {
	if c.closed.Load() {
		return Member{}, false
	}
	addr, id := c.raft.LeaderWithID()
	if id == "" {
		return Member{}, false
	}
	if m, ok := c.Member(string(id)); ok {
		return m, true
	}
	return Member{Name: string(id), Meta: Meta{Raft: string(addr)}}, true
}

// IsLeader reports whether this node is the raft leader.
func (c *Cluster) IsLeader() bool {
	return !c.closed.Load() && c.raft.State() == raft.Leader
}

// WaitForLeader waits until a leader is known and gossip knows it, or ctx
// is done.
func (c *Cluster) WaitForLeader(ctx context.Context) (Member, error) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		c.mu.Lock()
		changed := c.leaderWait
		c.mu.Unlock()
		if c.closed.Load() {
			return Member{}, ErrClosed
		}
		if m, ok := c.Leader(); ok && m.Addr != "" {
			return m, nil
		}
		poll.Reset(25 * time.Millisecond)
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			return Member{}, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-c.ctx.Done():
			return Member{}, ErrClosed
		}
	}
}

// Healthy reports whether this node is in a raft configuration and knows
// a leader: what a load balancer's health check needs of the cluster.
func (c *Cluster) Healthy() bool {
	if c.closed.Load() {
		return false
	}
	switch c.raft.State() {
	case raft.Leader, raft.Follower:
	default:
		return false
	}
	if _, id := c.raft.LeaderWithID(); id == "" {
		return false
	}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return hasServer(f.Configuration(), c.name)
}

// Servers lists the raft configuration with each server's gossip state.
func (c *Cluster) Servers() ([]Server, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leader := c.raft.LeaderWithID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		srv := Server{
			ID:      string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  s.ID == leader,
		}
		if m, ok := c.Member(srv.ID); ok {
			srv.State = m.State
		}
		out = append(out, srv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Join contacts existing members by their gossip host:port. It is
// idempotent, and returns how many were contacted.
func (c *Cluster) Join(addrs []string) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	var targets []string
	for _, a := range addrs {
		if a != c.gossipAddr {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return 0, nil
	}
	n, err := c.ml.Join(targets)
	if n > 0 {
		c.joined.Store(true)
		c.wake()
	}
	return n, err
}

// Leave leaves the cluster gracefully, then shuts down: a leader first
// hands leadership over; the node announces it is leaving so the leader
// removes it from the raft configuration, waits (within ctx) to see that
// done, leaves gossip, and stops.
func (c *Cluster) Leave(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	servers, _ := c.Servers()
	others := 0
	for _, s := range servers {
		if s.ID != c.name && s.Voter {
			others++
		}
	}
	if c.IsLeader() && others > 0 {
		c.log.Info("leaving: handing leadership over")
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.log.Warn("leadership transfer failed; leaving anyway", "err", err)
		}
	}

	c.mu.Lock()
	c.meta.Leaving = true
	c.mu.Unlock()
	c.lifeMu.Lock()
	if c.closed.Load() {
		c.lifeMu.Unlock()
		return ErrClosed
	}
	if err := c.ml.UpdateNode(timeLeft(ctx, 5*time.Second)); err != nil {
		c.log.Warn("leaving: announcing it took too long", "err", err)
	}
	c.lifeMu.Unlock()

	// Wait for the leader to remove this node from raft (a leader that
	// could not hand over would wait for nothing).
	if len(servers) > 1 && !c.IsLeader() && !c.waitRemoved(ctx, 10*time.Second) {
		c.log.Warn("leaving: removal from raft not seen yet; the leader removes this node when gossip reports it left")
	}

	c.lifeMu.Lock()
	if c.closed.Load() {
		c.lifeMu.Unlock()
		return ErrClosed
	}
	err := c.ml.Leave(timeLeft(ctx, 5*time.Second))
	c.lifeMu.Unlock()
	c.mu.Lock()
	c.left = true
	c.mu.Unlock()
	c.log.Info("left the cluster", "node", c.name)
	return errors.Join(err, c.Close())
}

// waitRemoved waits until this node's raft configuration no longer has
// it, at most limit (or until ctx is done).
func (c *Cluster) waitRemoved(ctx context.Context, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		f := c.raft.GetConfiguration()
		if f.Error() != nil {
			return false
		}
		if !hasServer(f.Configuration(), c.name) {
			return true
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			return false
		}
	}
}

func hasServer(cfg raft.Configuration, id string) bool {
	for _, s := range cfg.Servers {
		if s.ID == raft.ServerID(id) {
			return true
		}
	}
	return false
}

// timeLeft is the time until ctx's deadline, at most limit.
func timeLeft(ctx context.Context, limit time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(min(time.Until(d), limit), time.Millisecond)
	}
	return limit
}

// Close stops the node abruptly (as a crash would, from the others' view)
// and releases its ports and files. It is idempotent, and safe on a
// Cluster that New gave up on half-way.
func (c *Cluster) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() { c.closeErr = c.shutdown() })
	return c.closeErr
}

func (c *Cluster) shutdown() error {
	c.closed.Store(true)
	c.cancel()
	var errs []error
	if c.raft != nil {
		if c.obs != nil {
			c.raft.DeregisterObserver(c.obs)
		}
		errs = append(errs, c.raft.Shutdown().Error()) // closes the transport too
	} else if c.trans != nil {
		c.trans.Close()
	} else if c.raftLn != nil {
		c.raftLn.Close()
	}
	c.wg.Wait()
	if c.ml != nil {
		c.lifeMu.Lock()
		errs = append(errs, c.ml.Shutdown())
		c.lifeMu.Unlock()
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.metrics != nil {
		c.metrics.unregister()
	}
	return errors.Join(errs...)
}
