package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castmesh/castmesh/media"
)

// Live stream states on a node.
const (
	StateLive         = "live"         // receiving from the source or the origin
	StateOffline      = "offline"      // configured, but its source is not connected
	StateReconnecting = "reconnecting" // the connection to the source or origin was lost
)

func init() {
	stateCodes[StateLive] = 6
	stateCodes[StateOffline] = 7
	stateCodes[StateReconnecting] = 8
}

// Errors of live ingest.
var (
	ErrSourceBusy  = errors.New("a source is already connected to this mount")
	ErrNotPush     = errors.New("the name belongs to a pulled stream")
	ErrUnsupported = errors.New("unsupported content type: castmesh relays audio/mpeg (MP3) and video/mp4 or audio/mp4 (fragmented MP4)")
)

// liveStream is this node's side of a live stream: the relay its viewers
// read, and what feeds it.
type liveStream struct {
	relay    *Relay
	configID uint64

	mu          sync.Mutex
	contentType string
	meta        http.Header // ice-* / icy-* headers of the source

	source   atomic.Bool  // origin: a source (client or pull) is feeding the relay
	lastUnit atomic.Int64 // unix ns of the last unit published
	lagNS    atomic.Int64 // peers: how far behind the origin's live edge

	tlMu sync.Mutex
	tl   *timeline // fMP4 decode times, kept going across source sessions
}

// noteHeader and noteFragment keep the fMP4 timeline of what this node's
// relay carries; shift (a source feeds this node) moves a new session's
// timestamps on from there.
func (ls *liveStream) noteHeader(h []byte) {
	ls.tlMu.Lock()
	ls.tl.header(h)
	ls.tlMu.Unlock()
}

func (ls *liveStream) noteFragment(data []byte, d time.Duration, shift bool) {
	ls.tlMu.Lock()
	ls.tl.fragment(data, d, shift)
	ls.tlMu.Unlock()
}

// startSource prepares the relay for a new source session on this node:
// its units are numbered above anything a peer may hold (see Rebase).
func (ls *liveStream) startSource() {
	ls.relay.Rebase(uint64(time.Now().UnixMicro()))
	ls.tlMu.Lock()
	ls.tl.newSession()
	ls.tlMu.Unlock()
}

func (ls *liveStream) setFormat(contentType string, meta http.Header) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if contentType != "" {
		ls.contentType = contentType
	}
	if meta != nil {
		ls.meta = meta
	}
}

func (ls *liveStream) format() (string, http.Header) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.contentType, ls.meta
}

// live returns the live side of s, creating it on first use.
func (m *Manager) live(s Stream) *liveStream {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.lives[s.Name]
	if ls == nil || ls.configID != s.ConfigID {
		if ls != nil {
			ls.relay.Close() // the name was removed and added again
		}
		ls = &liveStream{relay: NewRelay(m.opts.Relay), configID: s.ConfigID, tl: newTimeline()}
		m.lives[s.Name] = ls
	}
	return ls
}

// dropLive closes the relays of streams no longer in the set as of index
// at; a relay made for a newer entry stays.
func (m *Manager) dropLive(want map[string]Stream, at uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, ls := range m.lives {
		if s, ok := want[name]; (!ok || s.Kind != KindLive) && ls.configID <= at {
			ls.relay.Close()
			delete(m.lives, name)
		}
	}
}

// metaHeaders keeps a source's Icecast metadata.
func metaHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "ice-") || strings.HasPrefix(lk, "icy-") {
			out[k] = v
		}
	}
	return out
}

// kindOf maps a source's Content-Type to the splitter's kind.
func kindOf(contentType string) (media.Kind, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "audio/mpeg", "audio/mp3", "audio/mpeg3":
		return media.KindMP3, nil
	case "video/mp4", "audio/mp4", "video/iso.segment", "audio/iso.segment":
		return media.KindFMP4, nil
	case "", "application/octet-stream":
		return "", nil // detect from the bytes
	}
	return "", fmt.Errorf("%w (got %q)", ErrUnsupported, mt)
}

// feed cuts body into units and publishes them until body ends.
func (m *Manager) feed(ctx context.Context, name string, ls *liveStream, kind media.Kind, body io.Reader, idle time.Duration, setDeadline func(time.Time) error) error {
	var sp *media.Splitter
	sp = media.NewSplitter(kind, func(u media.Unit) error {
		data := append([]byte(nil), u.Data...)
		if u.Header {
			ls.noteHeader(data)
			ls.relay.SetHeader(data)
			return nil
		}
		if sp.Kind() == media.KindFMP4 {
			ls.noteFragment(data, u.Duration, true)
		}
		ls.relay.Publish(Unit{Data: data, Duration: u.Duration, Key: u.Keyframe})
		ls.lastUnit.Store(time.Now().UnixNano())
		return nil
	})
	buf := make([]byte, 32<<10)
	for ctx.Err() == nil {
		if setDeadline != nil {
			setDeadline(time.Now().Add(idle))
		}
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := sp.Write(buf[:n]); werr != nil {
				return werr
			}
			if ct, _ := ls.format(); ct == "" && sp.Kind() != "" {
				ls.setFormat(sp.Kind().ContentType(false), nil)
			}
		}
		if err == io.EOF {
			sp.Flush()
			return nil
		}
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Ingestion is a source client's claim on a live stream.
type Ingestion struct {
	m    *Manager
	s    Stream
	ls   *liveStream
	st   *streamState
	kind media.Kind
	done bool
}

// OpenIngest claims name for a source client pushing contentType: it adds
// the stream to the set (this node its origin) or, when the stream exists
// and its source is gone, makes this node its origin. ErrSourceBusy: a
// source already feeds it, here or on its origin.
func (m *Manager) OpenIngest(ctx context.Context, name, contentType string, meta http.Header) (*Ingestion, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	kind, err := kindOf(contentType)
	if err != nil {
		return nil, err
	}
	s, exists := m.opts.FSM.Get(name)
	var resp []byte
	switch {
	case exists && s.Source != SourcePush:
		return nil, fmt.Errorf("%w: %s", ErrNotPush, name)
	case !exists:
		resp, err = m.opts.Cluster.Apply(ctx, AddCommand(Stream{Name: name, Source: SourcePush, Kind: KindLive, Origin: m.opts.Self, KeepAlive: true, CreatedAt: time.Now().UTC()}))
	case s.Origin != m.opts.Self:
		if m.sourceConnectedAt(ctx, s) {
			return nil, ErrSourceBusy
		}
		resp, err = m.opts.Cluster.Apply(ctx, ReassignCommand(name, s.Origin, m.opts.Self))
	}
	if err != nil {
		return nil, err
	}
	if resp != nil {
		if s, err = DecodeResponse(resp); err != nil {
			return nil, err
		}
	}
	ls := m.live(s)
	if !ls.source.CompareAndSwap(false, true) {
		return nil, ErrSourceBusy
	}
	ls.setFormat(contentType, metaHeaders(meta))
	return &Ingestion{m: m, s: s, ls: ls, st: m.state(s.Name, s.ConfigID), kind: kind}, nil
}

// Feed relays body until it ends, then releases the claim. setDeadline,
// when not nil, bounds each read so that a silent source is let go.
func (in *Ingestion) Feed(ctx context.Context, body io.Reader, setDeadline func(time.Time) error) error {
	defer in.Close()
	in.ls.startSource()
	in.st.mu.Lock()
	in.st.upstream = "source"
	in.st.mu.Unlock()
	in.st.set(StateLive, "source connected")
	in.m.log.Info("source connected", "stream", in.s.Name)
	err := in.m.feed(ctx, in.s.Name, in.ls, in.kind, io.TeeReader(body, countWriter{&in.st.bytes}), 30*time.Second, setDeadline)
	in.m.log.Info("source disconnected", "stream", in.s.Name, "err", err)
	return err
}

// Close releases the claim without feeding.
func (in *Ingestion) Close() {
	if !in.done {
		in.done = true
		in.ls.source.Store(false)
		in.st.set(StateOffline, "source disconnected")
	}
}

// sourceConnectedAt asks the origin of s whether a source feeds it now.
func (m *Manager) sourceConnectedAt(ctx context.Context, s Stream) bool {
	p, ok := m.opts.Peers.Peer(s.Origin)
	if !ok || !p.Alive {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, p.StreamsURL+s.Name, nil)
	req.SetBasicAuth(p.User, p.Password)
	req.Header.Set(NodeHeader, m.opts.Self)
	resp, err := m.opts.PeerClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.Header.Get(SourceHeader) == "connected"
}

// SourceHeader says, on a live stream's peer endpoint, whether the origin's
// source is connected.
const SourceHeader = "X-Castmesh-Source"

// runLiveTask keeps this node's relay of s fed: from the source URI on the
// origin of a pulled stream, from the origin on every other node. A pushed
// stream's origin needs no task: its source client feeds it.
func (m *Manager) runLiveTask(ctx context.Context, s Stream, st *streamState) {
	ls := m.live(s)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if cur, ok := m.opts.FSM.Get(s.Name); !ok || cur.Origin != s.Origin || cur.ConfigID != s.ConfigID {
			break // the reconciler starts the task for the new origin
		}
		var err error
		start := time.Now()
		if s.Origin == m.opts.Self {
			err = m.pullLive(ctx, s, ls, st)
		} else {
			err = m.relayFromOrigin(ctx, s, ls, st)
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errExcluded) {
			st.set(StateExcluded, err.Error())
			break
		}
		if s.Origin == m.opts.Self && !s.KeepAlive {
			st.set(StateError, fmt.Sprintf("source ended (%v); keepAlive is off", err))
			break
		}
		st.set(StateReconnecting, fmt.Sprint(err))
		m.log.Debug("live stream interrupted", "stream", s.Name, "origin", s.Origin, "err", err, "retry_in", backoff)
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	m.finishTask(s.Name)
}

// pullLive relays a live HTTP source on its origin.
func (m *Manager) pullLive(ctx context.Context, s Stream, ls *liveStream, st *streamState) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Source, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Icy-MetaData", "0") // plain audio: no interleaved metadata
	resp, err := m.opts.LiveClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("source %s answered %s", redact(s.Source), resp.Status)
	}
	kind, err := kindOf(resp.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	if !ls.source.CompareAndSwap(false, true) {
		return ErrSourceBusy
	}
	defer ls.source.Store(false)
	ls.startSource()
	ls.setFormat(resp.Header.Get("Content-Type"), metaHeaders(resp.Header))
	st.mu.Lock()
	st.upstream = "source"
	st.mu.Unlock()
	st.set(StateLive, "from source")
	err = m.feed(ctx, s.Name, ls, kind, io.TeeReader(resp.Body, countWriter{&st.bytes}), 0, nil)
	if err == nil {
		err = errors.New("source ended")
	}
	return err
}

// relayFromOrigin copies the origin's relay into this node's, resuming
// after the last unit received, from this origin or an earlier one: units
// keep their origin's numbers on every node (see Unit.Seq).
func (m *Manager) relayFromOrigin(ctx context.Context, s Stream, ls *liveStream, st *streamState) error {
	p, ok := m.opts.Peers.Peer(s.Origin)
	if !ok || !p.Alive {
		return fmt.Errorf("origin %s is not reachable", s.Origin)
	}
	// The relay's next number is where to resume: units keep their
	// origin's numbers, and a node that was an origin itself numbered its
	// own above them. (Were this node's numbering ahead of the origin's,
	// clocks being far apart, the origin answers from its live edge.)
	from := ls.relay.NextSeq()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.StreamsURL+s.Name+"?from="+strconv.FormatUint(from, 10), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(p.User, p.Password)
	req.Header.Set(NodeHeader, m.opts.Self)
	resp, err := m.opts.LiveClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusForbidden && resp.Header.Get(NodeHeader) != "":
		return errExcluded
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("origin %s answered %s", s.Origin, resp.Status)
	case resp.Header.Get("Content-Type") != RelayContentType:
		return fmt.Errorf("origin %s answered %q, not the relay protocol", s.Origin, resp.Header.Get("Content-Type"))
	}
	ls.setFormat(resp.Header.Get(MediaTypeHeader), metaHeaders(resp.Header))
	st.mu.Lock()
	st.upstream = s.Origin
	st.mu.Unlock()
	m.log.Debug("relaying from the origin", "stream", s.Name, "origin", s.Origin, "from", from)
	fr := newFrameReader(resp.Body)
	// The origin sends a ping every second when it has nothing else:
	// silence for longer is a dead link (a cut, or a host gone without a
	// reset), and closing the body ends the read.
	alive := time.AfterFunc(relayIdle, func() { resp.Body.Close() })
	defer alive.Stop()
	for {
		f, err := fr.next()
		if err != nil {
			return fmt.Errorf("relay from %s: %w", s.Origin, err)
		}
		alive.Reset(relayIdle)
		st.bytes.Add(int64(len(f.data)))
		switch f.typ {
		case frameHeader:
			h := append([]byte(nil), f.data...)
			ls.noteHeader(h)
			ls.relay.SetHeader(h)
		case frameUnit:
			if ls.source.Load() {
				// A source feeds this node now: it has become the origin,
				// and what the old one sends is at best an echo.
				return errSourceHere
			}
			// The origin sends from the number asked for, or from its own
			// live edge when that is lower: new units either way.
			data := append([]byte(nil), f.data...)
			if len(ls.relay.Header()) > 0 { // fMP4: note where its time got to
				ls.noteFragment(data, f.dur, false)
			}
			ls.relay.PublishAt(Unit{Data: data, Duration: f.dur, Key: f.key()}, f.seq)
			ls.lastUnit.Store(time.Now().UnixNano())
			ls.lagNS.Store(int64(max(f.edge-f.time-f.dur, 0)))
		case framePing:
			if ls.relay.EdgeTime() == 0 {
				break
			}
			// Nothing new at the origin: its edge is where this node is.
			ls.lagNS.Store(0)
		}
		if f.sourceConnected() {
			st.set(StateLive, "from "+s.Origin)
		} else {
			st.set(StateOffline, "the origin's source is not connected")
		}
	}
}

var errSourceHere = errors.New("a source feeds this node's relay now: not relaying from another node")

// relayIdle is how long a peer waits for a frame before it takes its link
// to the origin for dead: three missed pings.
const relayIdle = 3 * time.Second

// MediaTypeHeader carries a live stream's media type on the peer protocol.
const MediaTypeHeader = "X-Castmesh-Media-Type"

// ServeRelay streams name's relay to a peer in the relay protocol, from
// sequence number from (0: a burst of the whole buffer).
func (m *Manager) ServeRelay(w http.ResponseWriter, r *http.Request, name string, from uint64) {
	s, ok := m.opts.FSM.Get(name)
	if !ok || s.Kind != KindLive {
		http.Error(w, "404 not a live stream", http.StatusNotFound)
		return
	}
	ls := m.live(s)
	h := w.Header()
	contentType, meta := ls.format()
	for k, v := range meta {
		h[k] = v
	}
	h.Set("Content-Type", RelayContentType)
	h.Set(MediaTypeHeader, contentType)
	h.Set("Cache-Control", "no-store")
	if ls.source.Load() || m.relaying(s) {
		h.Set(SourceHeader, "connected")
	}
	if r.Method == http.MethodHead {
		return
	}
	// The header goes now: a peer waits for it before it reads frames, and
	// the first frame may be a while.
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if rc.Flush() != nil {
		return
	}
	var rd *RelayReader
	if from == 0 {
		rd = ls.relay.NewReader(m.opts.Relay.Window)
	} else {
		rd = ls.relay.NewReaderFrom(from)
	}
	defer rd.Close()
	flags := func(key bool) byte {
		var f byte
		if key {
			f |= flagKey
		}
		if ls.source.Load() || m.relaying(s) {
			f |= flagSource
		}
		return f
	}
	write := func(f frame) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(w, f); err != nil {
			return err
		}
		return rc.Flush()
	}
	var sentHeader []byte
	for {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		u, err := rd.Next(ctx)
		cancel()
		switch {
		case err == nil:
			// The header goes before the first unit, and again when a
			// reconnected source brought a new one.
			if hdr := ls.relay.Header(); len(hdr) > 0 && !bytes.Equal(hdr, sentHeader) {
				if write(frame{typ: frameHeader, flags: flags(false), data: hdr}) != nil {
					return
				}
				sentHeader = hdr
			}
			if write(frame{typ: frameUnit, flags: flags(u.Key), seq: u.Seq, time: u.Time, dur: u.Duration, edge: ls.relay.EdgeTime(), data: u.Data}) != nil {
				return
			}
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			if write(frame{typ: framePing, flags: flags(false), edge: ls.relay.EdgeTime()}) != nil {
				return
			}
		default:
			return
		}
	}
}

// relaying reports whether this node, not the origin, is receiving s from
// its origin right now (so that it can tell a peer of its own the source
// is connected).
func (m *Manager) relaying(s Stream) bool {
	if s.Origin == m.opts.Self {
		return false
	}
	st := m.state(s.Name, s.ConfigID)
	return st.state() == StateLive
}

// LiveView is a viewer's open live stream; Close releases it.
type LiveView struct {
	*RelayReader
	ContentType string
	Meta        http.Header
	state       *streamState
}

// Close stops counting the viewer.
func (v *LiveView) Close() {
	v.RelayReader.Close()
	if v.state != nil {
		v.state.viewers.Add(-1)
	}
}

// NewLiveView is a view of a relay that no Manager counts, for tests of
// what serves viewers.
func NewLiveView(r *Relay, burst time.Duration, contentType string, meta http.Header) *LiveView {
	return &LiveView{RelayReader: r.NewReader(burst), ContentType: contentType, Meta: meta}
}

// OpenLive opens name's relay for a viewer, starting burst behind the live
// edge.
func (m *Manager) OpenLive(name string, burst time.Duration) (*LiveView, error) {
	s, ok := m.opts.FSM.Get(name)
	if !ok {
		return nil, ErrNotFound
	}
	st := m.state(s.Name, s.ConfigID)
	if st.state() == StateExcluded {
		return nil, ErrNotCarried
	}
	ls := m.live(s)
	contentType, meta := ls.format()
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	st.viewers.Add(1)
	return &LiveView{RelayReader: ls.relay.NewReader(burst), ContentType: contentType, Meta: meta, state: st}, nil
}
