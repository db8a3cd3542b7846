package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cluster is what the Manager needs of the consensus layer.
type Cluster interface {
	Apply(ctx context.Context, cmd []byte) ([]byte, error)
	IsLeader() bool
}

// Peer is another node as the Manager sees it.
type Peer struct {
	Name       string
	Alive      bool
	Replicates bool
	// StreamsURL is the base URL of the peer's stream endpoint, ending in
	// "/": GET StreamsURL + name returns the stream's bytes.
	StreamsURL string
	User       string
	Password   string
}

// Peers tells the Manager about the other nodes.
type Peers interface {
	Peer(name string) (Peer, bool)
	Peers() []Peer
}

// Options configure a Manager.
type Options struct {
	Self       string // this node's name
	Replicates bool   // stream_load_balancer.plugin_switch
	FSM        *FSM
	Store      *Store
	Cluster    Cluster
	Peers      Peers
	// SourceClient fetches sources (pullStream URIs); PeerClient fetches from
	// peers' API proxies. Both default to clients with sane timeouts.
	SourceClient *http.Client
	PeerClient   *http.Client
	// LiveClient reads live sources and relays: no overall timeout.
	LiveClient *http.Client
	Relay      RelayOptions
	Logger     *slog.Logger
	// Registerer, when set, gets the per-stream live metrics
	// (castmesh_live_*).
	Registerer prometheus.Registerer
}

// Manager is the reconciler that makes this node carry every stream of the
// set: it starts a task per stream that is not yet complete here, stops
// tasks and deletes copies of streams that were removed, and, on the
// leader, moves the origin of pulled streams away from dead nodes.
type Manager struct {
	opts Options
	log  *slog.Logger

	wake chan struct{}

	mu     sync.Mutex
	tasks  map[string]*task
	states map[string]*streamState
	lives  map[string]*liveStream
	// committed is closed and replaced whenever a copy completes, so that
	// WaitCopy can wait without polling.
	committed chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type task struct {
	configID uint64
	origin   string
	cancel   context.CancelFunc
	done     chan struct{}
}

// errExcluded marks a stream the origin refuses to replicate to this node.
var errExcluded = errors.New("the origin does not replicate to this node (destination_ems_apiproxies enable = false)")

// NewManager returns a Manager; Run starts it.
func NewManager(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SourceClient == nil {
		o.SourceClient = &http.Client{Transport: newTransport()}
	}
	if o.PeerClient == nil {
		o.PeerClient = &http.Client{Transport: newTransport()}
	}
	if o.LiveClient == nil {
		o.LiveClient = &http.Client{Transport: newTransport()}
	}
	if o.Relay == (RelayOptions{}) {
		o.Relay = DefaultRelayOptions
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts: o, log: o.Logger.With("component", "streams"),
		wake:      make(chan struct{}, 1),
		tasks:     map[string]*task{},
		states:    map[string]*streamState{},
		lives:     map[string]*liveStream{},
		committed: make(chan struct{}),
		ctx:       ctx, cancel: cancel,
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(newLiveCollector(m))
	}
	return m
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 15 * time.Second
	t.MaxIdleConnsPerHost = 16
	return t
}

// Run reconciles until Close, on every change of the set, on every
// membership change signalled through changes, and every few seconds.
func (m *Manager) Run(changes <-chan struct{}) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		tick := time.NewTicker(3 * time.Second)
		defer tick.Stop()
		for {
			m.reconcile()
			select {
			case <-m.ctx.Done():
				return
			case <-m.opts.FSM.Changed():
			case <-changes:
			case <-m.wake:
			case <-tick.C:
			}
		}
	}()
}

// Close stops every task and waits for them, then ends every live stream
// for its viewers and peers.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ls := range m.lives {
		ls.relay.Close()
	}
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) state(name string, configID uint64) *streamState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[name]
	if st == nil || st.configID != configID {
		st = &streamState{configID: configID}
		st.set(StatePending, "")
		m.states[name] = st
	}
	return st
}

func (m *Manager) reconcile() {
	// Record how far the set has been seen before acting on it, and
	// delete nothing while it is behind what this node saw before.
	list, at := m.opts.FSM.ListAt()
	caughtUp, err := m.opts.Store.CatchUp(at)
	if err != nil {
		m.log.Error("record the applied index", "err", err)
	}
	want := map[string]Stream{}
	for _, s := range list {
		want[s.Name] = s
		m.reconcileStream(s, caughtUp)
	}
	// Drop what the set no longer holds: tasks, states and files. A state
	// or relay made for an entry newer than the list (a source client
	// whose stream was committed meanwhile) is not the list's to drop.
	m.mu.Lock()
	var gone []string
	for name, t := range m.tasks {
		if _, ok := want[name]; !ok {
			t.cancel()
			gone = append(gone, name)
		}
	}
	for name, st := range m.states {
		if _, ok := want[name]; !ok && st.configID <= at {
			delete(m.states, name)
		}
	}
	m.mu.Unlock()
	m.dropLive(want, at)
	for _, name := range gone {
		m.stopTask(name)
	}
	for _, name := range m.opts.Store.Names() {
		if _, ok := want[name]; !ok && caughtUp && ValidateName(name) == nil {
			if err := m.opts.Store.Delete(name); err != nil {
				m.log.Warn("delete removed stream", "stream", name, "err", err)
			} else {
				m.log.Info("stream removed", "stream", name)
			}
		}
	}
	if m.opts.Cluster.IsLeader() {
		m.failover(want)
	}
}

func (m *Manager) reconcileStream(s Stream, caughtUp bool) {
	st := m.state(s.Name, s.ConfigID)
	if s.Kind == KindLive {
		m.reconcileLive(s, st)
		return
	}
	if c, ok := m.opts.Store.Copy(s.Name); ok {
		if c.ConfigID == s.ConfigID {
			st.mu.Lock()
			st.size = c.Size
			st.mu.Unlock()
			st.bytes.Store(c.Size)
			st.set(StateActive, "")
			return
		}
		if !caughtUp {
			return // an older entry being replayed: wait for the current one
		}
		// The name was removed and added again while this node was away.
		m.stopTask(s.Name)
		m.opts.Store.Delete(s.Name)
	}
	if why := m.excluded(s); why != "" {
		m.stopTask(s.Name)
		st.set(StateExcluded, why)
		return
	}
	m.mu.Lock()
	t := m.tasks[s.Name]
	running := t != nil && t.configID == s.ConfigID && t.origin == s.Origin
	m.mu.Unlock()
	if running {
		return
	}
	if t != nil {
		m.stopTask(s.Name)
	}
	if st.state() == StateExcluded || (st.state() == StateError && s.Origin == m.opts.Self && !s.KeepAlive) {
		return // given up: only a new config brings it back
	}
	m.startTask(s, st, m.runFileTask)
}

// reconcileLive keeps a task feeding this node's relay of s, except on the
// origin of a pushed stream, which its source client feeds.
func (m *Manager) reconcileLive(s Stream, st *streamState) {
	m.live(s)
	if why := m.excluded(s); why != "" {
		m.stopTask(s.Name)
		st.set(StateExcluded, why)
		return
	}
	m.mu.Lock()
	t := m.tasks[s.Name]
	running := t != nil && t.configID == s.ConfigID && t.origin == s.Origin
	m.mu.Unlock()
	if running {
		return
	}
	if t != nil {
		m.stopTask(s.Name)
	}
	switch {
	case s.Origin == m.opts.Self && s.Source == SourcePush:
		if st.state() == StatePending || st.state() == StateReconnecting {
			st.set(StateOffline, "waiting for the source client")
		}
	case st.state() == StateExcluded, st.state() == StateError && s.Origin == m.opts.Self:
		// given up: only a new config brings it back
	default:
		m.startTask(s, st, m.runLiveTask)
	}
}

// excluded says why this node does not carry s, or "" when it does.
func (m *Manager) excluded(s Stream) string {
	if s.Origin == m.opts.Self {
		return ""
	}
	if !m.opts.Replicates {
		return "replication is disabled on this node (plugin_switch)"
	}
	if p, ok := m.opts.Peers.Peer(s.Origin); ok && !p.Replicates {
		return "the origin does not replicate (plugin_switch disabled on " + s.Origin + ")"
	}
	return ""
}

func (m *Manager) startTask(s Stream, st *streamState, run func(context.Context, Stream, *streamState)) {
	ctx, cancel := context.WithCancel(m.ctx)
	t := &task{configID: s.ConfigID, origin: s.Origin, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.tasks[s.Name] = t
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(t.done)
		run(ctx, s, st)
	}()
}

func (m *Manager) stopTask(name string) {
	m.mu.Lock()
	t := m.tasks[name]
	delete(m.tasks, name)
	m.mu.Unlock()
	if t != nil {
		t.cancel()
		<-t.done
	}
}

// runFileTask copies s to this node until it is complete, retrying with
// backoff. Without keepAlive the origin gives up on its source after the
// first failure, as EMS does; copies from peers are always retried.
func (m *Manager) runFileTask(ctx context.Context, s Stream, st *streamState) {
	backoff := 50 * time.Millisecond
	for {
		err := m.fetchFile(ctx, s, st)
		if err == nil || ctx.Err() != nil {
			if err == nil {
				m.log.Info("stream copy complete", "stream", s.Name, "bytes", st.bytes.Load(), "from", st.upstream)
			}
			m.finishTask(s.Name)
			return
		}
		if errors.Is(err, errExcluded) {
			st.set(StateExcluded, err.Error())
			m.finishTask(s.Name)
			return
		}
		var notReady errNotReadyUpstream
		if !errors.As(err, &notReady) {
			st.set(StateError, err.Error())
			m.log.Warn("stream copy failed", "stream", s.Name, "err", err, "retry_in", backoff)
			if s.Origin == m.opts.Self && !s.KeepAlive {
				m.finishTask(s.Name)
				return
			}
		}
		select {
		case <-ctx.Done():
			m.finishTask(s.Name)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (m *Manager) finishTask(name string) {
	m.mu.Lock()
	delete(m.tasks, name)
	m.mu.Unlock()
	m.poke()
}

// errNotReadyUpstream is an upstream that does not have the stream yet: a
// normal condition while the origin is still pulling.
type errNotReadyUpstream struct{ status string }

func (e errNotReadyUpstream) Error() string { return "upstream not ready: " + e.status }

// fetchFile makes one attempt at copying s: from its source on the origin,
// from the origin (or, when the origin is down, any live peer) elsewhere.
func (m *Manager) fetchFile(ctx context.Context, s Stream, st *streamState) error {
	if s.Origin == m.opts.Self {
		return m.download(ctx, s, st, m.opts.SourceClient, s.Source, nil, "source")
	}
	candidates := []Peer{}
	if p, ok := m.opts.Peers.Peer(s.Origin); ok && p.Alive {
		candidates = append(candidates, p)
	} else {
		for _, p := range m.opts.Peers.Peers() {
			if p.Alive && p.Name != m.opts.Self {
				candidates = append(candidates, p)
			}
		}
	}
	if len(candidates) == 0 {
		return errNotReadyUpstream{"origin " + s.Origin + " is unreachable and no other peer is alive"}
	}
	var errs []error
	for _, p := range candidates {
		auth := func(r *http.Request) {
			if p.User != "" || p.Password != "" {
				r.SetBasicAuth(p.User, p.Password)
			}
			r.Header.Set(NodeHeader, m.opts.Self)
		}
		err := m.download(ctx, s, st, m.opts.PeerClient, p.StreamsURL+s.Name, auth, p.Name)
		if err == nil || errors.Is(err, errExcluded) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Headers of the peer protocol.
const (
	NodeHeader   = "X-Castmesh-Node"   // the name of the node asking for a stream
	DigestHeader = "X-Castmesh-Sha256" // hex SHA-256 of a complete file stream
)

// download fetches url into s's partial file, resuming from what is there,
// and commits it when complete.
func (m *Manager) download(ctx context.Context, s Stream, st *streamState, client *http.Client, url string, prepare func(*http.Request), upstream string) error {
	f, offset, err := m.opts.Store.Partial(s.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if prepare != nil {
		prepare(req)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	st.mu.Lock()
	st.upstream = upstream
	st.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	total := int64(-1)
	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 { // the server ignored the Range: start over
			if err := f.Truncate(0); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			offset = 0
		}
		total = resp.ContentLength
	case http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			m.opts.Store.DiscardPartial(s.Name)
			return fmt.Errorf("bad Content-Range %q for a resume at %d", resp.Header.Get("Content-Range"), offset)
		}
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		m.opts.Store.DiscardPartial(s.Name) // the partial is longer than the resource
		return fmt.Errorf("%s: range %d- not satisfiable; starting over", url, offset)
	case http.StatusForbidden:
		if upstream != "source" && resp.Header.Get(NodeHeader) != "" {
			return errExcluded
		}
		return fmt.Errorf("%s: %s", redact(url), resp.Status)
	case http.StatusServiceUnavailable, http.StatusNotFound:
		if upstream != "source" {
			return errNotReadyUpstream{resp.Status}
		}
		return fmt.Errorf("%s: %s", redact(url), resp.Status)
	default:
		return fmt.Errorf("%s: %s", redact(url), resp.Status)
	}
	if total < 0 {
		return fmt.Errorf("%s: no Content-Length: a live source cannot be stored as a file stream", redact(url))
	}
	st.mu.Lock()
	st.size = total
	st.mu.Unlock()
	st.bytes.Store(offset)
	st.set(StatePulling, "from "+upstream)
	if _, err := io.Copy(f, io.TeeReader(resp.Body, countWriter{&st.bytes})); err != nil {
		return fmt.Errorf("copy from %s interrupted at %d of %d bytes: %w", upstream, st.bytes.Load(), total, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := m.opts.Store.Commit(s.Name, s.ConfigID, total, resp.Header.Get(DigestHeader)); err != nil {
		return err
	}
	st.set(StateActive, "")
	m.mu.Lock()
	close(m.committed)
	m.committed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

type countWriter struct{ n interface{ Add(int64) int64 } }

func (c countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// parseContentRange parses "bytes START-END/SIZE".
func parseContentRange(v string) (start, size int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(v, "/")
	s, _, found2 := strings.Cut(rng, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	size, err2 := strconv.ParseInt(sz, 10, 64)
	return start, size, err1 == nil && err2 == nil && start >= 0 && size >= start
}

// redact drops the password of a URL for error messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// failover moves the origin of pulled streams off dead nodes, to this node
// (the leader) when it replicates, else to the first live replicating peer.
func (m *Manager) failover(want map[string]Stream) {
	for _, s := range want {
		if s.Source == SourcePush || s.Origin == m.opts.Self {
			continue
		}
		p, known := m.opts.Peers.Peer(s.Origin)
		if !known || p.Alive {
			continue
		}
		to := ""
		if m.opts.Replicates {
			to = m.opts.Self
		} else {
			peers := m.opts.Peers.Peers()
			slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
			for _, q := range peers {
				if q.Alive && q.Replicates {
					to = q.Name
					break
				}
			}
		}
		if to == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		_, err := m.opts.Cluster.Apply(ctx, ReassignCommand(s.Name, s.Origin, to))
		cancel()
		m.log.Info("origin failover", "stream", s.Name, "from", s.Origin, "to", to, "err", err)
	}
}

// PullRequest is the pullStream command's arguments.
type PullRequest struct {
	URI       string
	Name      string
	KeepAlive bool
}

// Pull adds a stream pulled from r.URI with this node as its origin. It
// first opens the source, so that a wrong URI is an error now rather than
// a stream that never plays, and learns from it whether the stream is live.
func (m *Manager) Pull(ctx context.Context, r PullRequest) (Stream, error) {
	if !strings.HasPrefix(r.URI, "http://") && !strings.HasPrefix(r.URI, "https://") {
		return Stream{}, fmt.Errorf("uri %q: only http:// and https:// sources can be pulled", redact(r.URI))
	}
	if r.Name == "" {
		name, err := NameFromURI(r.URI)
		if err != nil {
			return Stream{}, fmt.Errorf("cannot compute localStreamName from uri: %w; give one", err)
		}
		r.Name = name
	}
	if err := ValidateName(r.Name); err != nil {
		return Stream{}, err
	}
	if _, ok := m.opts.FSM.Get(r.Name); ok {
		return Stream{}, fmt.Errorf("%w: %s", ErrExists, r.Name)
	}
	kind, err := m.probeSource(ctx, r.URI)
	if err != nil {
		return Stream{}, err
	}
	s := Stream{Name: r.Name, Source: r.URI, Kind: kind, Origin: m.opts.Self, KeepAlive: r.KeepAlive, CreatedAt: time.Now().UTC()}
	resp, err := m.opts.Cluster.Apply(ctx, AddCommand(s))
	if err != nil {
		return Stream{}, err
	}
	return DecodeResponse(resp)
}

func (m *Manager) probeSource(ctx context.Context, uri string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return "", fmt.Errorf("uri %q: %w", redact(uri), err)
	}
	resp, err := m.opts.SourceClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot open source: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("source %s answered %s", redact(uri), resp.Status)
	}
	if resp.ContentLength < 0 {
		return KindLive, nil
	}
	return KindFile, nil
}

// Remove removes the stream with the given config id (or name) everywhere.
func (m *Manager) Remove(ctx context.Context, name string, configID uint64) (Stream, error) {
	resp, err := m.opts.Cluster.Apply(ctx, RemoveCommand(name, configID))
	if err != nil {
		return Stream{}, err
	}
	return DecodeResponse(resp)
}

// Streams returns the replicated set.
func (m *Manager) Streams() []Stream { return m.opts.FSM.List() }

// Stream returns one stream of the set.
func (m *Manager) Stream(name string) (Stream, bool) { return m.opts.FSM.Get(name) }

// StreamByID returns the stream with the given config id.
func (m *Manager) StreamByID(id uint64) (Stream, bool) { return m.opts.FSM.ByID(id) }

// Statuses returns this node's state of every stream of the set.
func (m *Manager) Statuses() []Status {
	list := m.opts.FSM.List()
	out := make([]Status, 0, len(list))
	for _, s := range list {
		st := m.state(s.Name, s.ConfigID).snapshot(s.Name)
		if c, ok := m.opts.Store.Copy(s.Name); ok && c.ConfigID == s.ConfigID {
			st.SHA256 = c.SHA256
		}
		if s.Kind == KindLive {
			ls := m.live(s)
			_, dropped, _, _ := ls.relay.Stats()
			live := &LiveStatus{BitrateBPS: ls.relay.Bitrate(), ViewersDropped: dropped}
			if s.Origin != m.opts.Self {
				lag := time.Duration(ls.lagNS.Load())
				if last := ls.lastUnit.Load(); st.Current.State == StateReconnecting && last > 0 {
					lag += time.Since(time.Unix(0, last))
				}
				live.LagMS = lag.Milliseconds()
			}
			st.Live = live
		}
		out = append(out, st)
	}
	return out
}

// Ready reports whether this node carries every stream it should; when
// not, it says which stream is missing and why.
func (m *Manager) Ready() (bool, string) {
	// After a restart the set is empty until raft replays it: a node that
	// has not seen as far as before may be missing streams it will carry.
	list, at := m.opts.FSM.ListAt()
	if seen := m.opts.Store.Seen(); at < seen {
		return false, fmt.Sprintf("replaying the stream set after a restart (at index %d of %d)", at, seen)
	}
	for _, s := range list {
		st := m.state(s.Name, s.ConfigID).snapshot(s.Name)
		switch st.Current.State {
		case StateActive, StateExcluded, StateLive, StateOffline:
		default:
			return false, fmt.Sprintf("stream %s is %s %s", s.Name, st.Current.State, st.Current.Description)
		}
	}
	return true, ""
}

// Reader is an open copy of a stream being served; Close releases it.
type Reader struct {
	*os.File
	Copy   Copy
	Stream Stream
	state  *streamState
}

// Close closes the file and stops counting the viewer.
func (r *Reader) Close() error {
	r.state.viewers.Add(-1)
	return r.File.Close()
}

// Open opens name for a viewer. ErrNotFound: not in the set; ErrNotReady:
// being copied; ErrNotCarried: this node does not carry it by design.
func (m *Manager) Open(name string) (*Reader, error) {
	s, ok := m.opts.FSM.Get(name)
	if !ok {
		return nil, ErrNotFound
	}
	st := m.state(s.Name, s.ConfigID)
	if st.state() == StateExcluded {
		return nil, ErrNotCarried
	}
	f, c, err := m.opts.Store.Open(name)
	if err != nil {
		return nil, err
	}
	if c.ConfigID != s.ConfigID {
		f.Close()
		return nil, ErrNotReady
	}
	st.viewers.Add(1)
	return &Reader{File: f, Copy: c, Stream: s, state: st}, nil
}

// OpenWhenReady is Open that waits, until ctx is done, while this node's
// copy is still being pulled: a peer asking the origin for a stream it is
// still fetching gets it the moment it is complete.
func (m *Manager) OpenWhenReady(ctx context.Context, name string) (*Reader, error) {
	for {
		m.mu.Lock()
		committed := m.committed
		m.mu.Unlock()
		r, err := m.Open(name)
		if !errors.Is(err, ErrNotReady) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return nil, ErrNotReady
		case <-committed:
		}
	}
}
