package edge

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/castmesh/castmesh/shaping"
	"github.com/castmesh/castmesh/streams"
)

// Streams opens a stream for a viewer: a file's local copy, or a live
// stream's relay. ManagerStreams adapts a *streams.Manager.
type Streams interface {
	Stream(name string) (streams.Stream, bool)
	// OpenCopy opens this node's copy of a file stream for one viewer, or
	// fails with streams.ErrNotFound, ErrNotCarried or ErrNotReady. The
	// edge takes over f (and may close it at once: open copies are
	// shared); done is called when the response is over.
	OpenCopy(name string) (f *os.File, c streams.Copy, done func(), err error)
	OpenLive(name string, burst time.Duration) (*streams.LiveView, error)
}

// ManagerStreams gives the edge a node's stream manager.
func ManagerStreams(m *streams.Manager) Streams { return managerStreams{m} }

type managerStreams struct{ *streams.Manager }

func (m managerStreams) OpenCopy(name string) (*os.File, streams.Copy, func(), error) {
	rd, err := m.Open(name)
	if err != nil {
		return nil, streams.Copy{}, nil, err
	}
	// Closing rd again after the edge closed its file only counts the
	// viewer out.
	return rd.File, rd.Copy, func() { rd.Close() }, nil
}

// Options configure the edge handler.
type Options struct {
	Streams Streams
	// Health reports whether this node should receive viewers, and why not.
	Health   func() (ok bool, why string)
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Config is the vhosts, rules and caps (LoadConfig); nil: the defaults
	// of a node with no config file (one vhost, throttling off).
	Config *Config
	// Pacer schedules paced sessions (one per node); nil: New makes one
	// and Close stops it.
	Pacer *shaping.Pacer
	// WriteTimeout drops a viewer that takes no data for this long.
	// Default 20 s.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is how long a viewer may take no data before it is
// dropped (nginx's send_timeout is 60 s; a player that stops reading for
// 20 s is gone or paused, and pausing players reconnect with a Range).
const DefaultWriteTimeout = 20 * time.Second

// Server is the edge's http.Handler.
type Server struct {
	opts         Options
	log          *slog.Logger
	m            *metrics
	pacer        *shaping.Pacer
	ownPacer     bool
	files        *fileCache
	writeTimeout time.Duration

	state atomic.Pointer[edgeState]
}

// edgeState is what a reload replaces as a whole.
type edgeState struct {
	hosts   *hostTable
	vhosts  map[string]*vhost
	trusted trustedProxies
}

// New returns the edge handler.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	s := &Server{
		opts:         o,
		log:          o.Logger.With("component", "edge"),
		m:            newMetrics(o.Registry),
		pacer:        o.Pacer,
		writeTimeout: o.WriteTimeout,
	}
	s.files = newFileCache(s.log)
	cfg := o.Config
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if s.pacer == nil {
		s.pacer = shaping.NewPacer(shaping.PacerConfig{NodeCap: cfg.NodeTrafficCap})
		s.ownPacer = true
	}
	s.Apply(cfg)
	return s
}

// DefaultConfig is the edge of a node with no config file.
func DefaultConfig() *Config {
	v := VHostConfig{Name: "default", Hosts: []string{"*"}, Settings: shaping.DefaultSettings()}
	return &Config{VHosts: map[string]VHostConfig{"default": v}}
}

// Close stops the pacer if New made it.
func (s *Server) Close() {
	if s.ownPacer {
		s.pacer.Close()
	}
}

// Apply switches to a new config (from LoadConfig): new requests get the
// new vhosts and rules at once; open sessions keep their policy. A vhost
// that stays keeps its pacing group, whose cap changes in place, so its
// sessions go on sharing it; the node cap changes in place too.
func (s *Server) Apply(cfg *Config) {
	old := s.state.Load()
	st := &edgeState{hosts: newHostTable(), vhosts: map[string]*vhost{}, trusted: cfg.trusted}
	for name, vc := range cfg.VHosts {
		vh := &vhost{
			name:       name,
			settings:   vc.Settings,
			rules:      vc.Rules,
			sessionCap: vc.SessionCap,
			m:          s.m.forVHost(name),
		}
		if old != nil && old.vhosts[name] != nil {
			vh.group = old.vhosts[name].group
			vh.group.SetCap(vc.TrafficCap)
		} else {
			vh.group = s.pacer.NewGroup(name, vc.TrafficCap)
		}
		st.vhosts[name] = vh
		for _, h := range vc.Hosts {
			st.hosts.add(h, vh)
		}
		if name == "default" {
			st.hosts.def = vh
		}
	}
	if s.pacer.NodeCap() != cfg.NodeTrafficCap {
		s.pacer.SetNodeCap(cfg.NodeTrafficCap)
	}
	s.state.Store(st)
}

// maxLiveBurst bounds a live viewer's burst: a relay drops a viewer that
// is its lag limit behind the live edge, and a burst that long would start
// the viewer dropped (STON's examples have 10 s boosts).
var maxLiveBurst = streams.DefaultRelayOptions.LagLimit - 2*time.Second

// HealthPath is the load balancer's health check.
const HealthPath = "/health"

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath {
		s.serveHealth(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.error(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	st := s.state.Load()
	vh := st.hosts.lookup(r.Host)
	if vh == nil {
		s.error(w, http.StatusNotFound, "no virtual host serves "+r.Host)
		return
	}
	// The overrides decide the policy and are then removed: the rest of
	// the query is what finds the stream (and would go upstream).
	var query url.Values
	if vh.settings.QueryString && r.URL.RawQuery != "" {
		query = r.URL.Query()
		r.URL.RawQuery = shaping.StripParams(r.URL.RawQuery, vh.settings.BandwidthParam, vh.settings.RatioParam, vh.settings.BoostParam)
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if streams.ValidateName(name) != nil {
		s.error(w, http.StatusNotFound, "not found")
		return
	}
	req := s.shapingRequest(st, r)
	if stream, ok := s.opts.Streams.Stream(name); ok && stream.Kind == streams.KindLive {
		// A live stream has no file to take a rate from; its boost is
		// the burst of recent data a new viewer gets at once.
		pol := shaping.Decide(vh.settings, vh.rules, req, query, 0)
		burst := min(time.Duration(vh.boostSeconds(pol)*float64(time.Second)), maxLiveBurst)
		s.serveLive(w, r, name, burst, vh)
		return
	}
	f, cp, done, err := s.opts.Streams.OpenCopy(name)
	switch {
	case errors.Is(err, streams.ErrNotFound), errors.Is(err, streams.ErrNotCarried):
		s.error(w, http.StatusNotFound, "not found")
		return
	case errors.Is(err, streams.ErrNotReady):
		w.Header().Set("Retry-After", "1")
		s.error(w, http.StatusServiceUnavailable, "this node is still pulling the stream; retry shortly")
		return
	case err != nil:
		s.log.Error("open stream", "stream", name, "err", err)
		s.error(w, http.StatusInternalServerError, "internal error")
		return
	}
	defer done()
	oc, err := s.files.acquire(copyKey{name: name, etag: cp.ETag()}, f)
	if err != nil {
		s.log.Error("open stream copy", "stream", name, "err", err)
		s.error(w, http.StatusInternalServerError, "internal error")
		return
	}
	defer s.files.release(oc)

	var bitrate float64
	if oc.info != nil && ownRateExt(name) {
		bitrate = oc.info.BitrateBPS
	}
	pol := shaping.Decide(vh.settings, vh.rules, req, query, bitrate)

	h := w.Header()
	h.Set("Content-Type", ContentType(name))
	h.Set("ETag", cp.ETag())
	h.Set("Accept-Ranges", "bytes")
	d := &delivery{w: w, rc: http.NewResponseController(w), ctx: r.Context(), s: s, vh: vh, oc: oc, pol: pol}
	d.rf, _ = w.(io.ReaderFrom)
	defer d.finish()
	http.ServeContent(d, r, "", cp.ModTime, &content{oc: oc})
	if d.code == 0 {
		d.code = http.StatusOK
	}
	s.m.requests.WithLabelValues(http.StatusText(d.code)).Inc()
}

// shapingRequest is what throttling.txt conditions look at: the client's
// address, the header (with Host, which net/http keeps apart) and the
// path.
func (s *Server) shapingRequest(st *edgeState, r *http.Request) *shaping.Request {
	if _, ok := r.Header["Host"]; !ok && r.Host != "" {
		r.Header["Host"] = []string{r.Host}
	}
	return &shaping.Request{
		Addr:   st.trusted.clientAddr(peerAddr(r.RemoteAddr), r.Header),
		Header: r.Header,
		Path:   r.URL.Path,
	}
}

// ownRateExt reports whether a rule's "x" may take the rate from the file:
// STON reads the encoding rate of .mp4, .m4a and .mp3 only.
func ownRateExt(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".mp4", ".m4a", ".mp3":
		return true
	}
	return false
}

func (s *Server) error(w http.ResponseWriter, code int, msg string) {
	s.m.requests.WithLabelValues(http.StatusText(code)).Inc()
	http.Error(w, http.StatusText(code)+": "+msg, code)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ok, why := true, ""
	if s.opts.Health != nil {
		ok, why = s.opts.Health()
	}
	code, status := http.StatusOK, "ok"
	if !ok {
		code, status = http.StatusServiceUnavailable, "unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(map[string]string{"status": status, "reason": why})
	}
}

// ContentType is the media type of a stream, from its name's extension.
func ContentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".m4a":
		return "audio/mp4"
	case ".mp3":
		return "audio/mpeg"
	case ".aac":
		return "audio/aac"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
