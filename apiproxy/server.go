package apiproxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/castmesh/castmesh/cluster"
	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/streams"
)

// Streams is what the API needs of the stream set and this node's copies.
type Streams interface {
	Pull(ctx context.Context, r streams.PullRequest) (streams.Stream, error)
	Remove(ctx context.Context, name string, configID uint64) (streams.Stream, error)
	Streams() []streams.Stream
	Stream(name string) (streams.Stream, bool)
	StreamByID(id uint64) (streams.Stream, bool)
	Statuses() []streams.Status
	OpenWhenReady(ctx context.Context, name string) (*streams.Reader, error)
	ServeRelay(w http.ResponseWriter, r *http.Request, name string, from uint64)
}

// Cluster is what the API needs of membership and consensus.
type Cluster interface {
	ApplyLocal(ctx context.Context, cmd []byte) ([]byte, error)
	Members() []cluster.Member
	Leader() (cluster.Member, bool)
	Self() cluster.Member
	Join(addrs []string) (int, error)
	Servers() ([]cluster.Server, error)
	Healthy() bool
}

// Options configure the API server.
type Options struct {
	Config    config.Config
	Version   string
	Streams   Streams
	Cluster   Cluster
	Directory *Directory
	// Leave is called by the "leave" command after the answer is sent; it
	// leaves the cluster gracefully and stops the node.
	Leave    func()
	Metrics  http.Handler // served at /metrics, behind the same auth
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Server is the API proxy's http.Handler.
type Server struct {
	opts     Options
	log      *slog.Logger
	prefix   string
	userHash [32]byte
	passHash [32]byte
	commands map[string]func(r *http.Request, args Args) Envelope

	requests   *prometheus.CounterVec
	authFailed prometheus.Counter
}

// New returns the API server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		opts:     o,
		log:      o.Logger.With("component", "apiproxy"),
		prefix:   "/" + o.Config.API.PseudoDomain + "/",
		userHash: sha256.Sum256([]byte(o.Config.API.UserName)),
		passHash: sha256.Sum256([]byte(o.Config.API.Password)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "castmesh_api_requests_total", Help: "API proxy commands by command and status.",
		}, []string{"command", "status"}),
		authFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "castmesh_api_auth_failures_total", Help: "API requests refused for wrong or missing credentials.",
		}),
	}
	if o.Registry != nil {
		o.Registry.MustRegister(s.requests, s.authFailed)
	}
	s.commands = map[string]func(*http.Request, Args) Envelope{
		"pullstream":     s.pullStream,
		"listconfig":     s.listConfig,
		"liststreams":    s.listStreams,
		"getstreaminfo":  s.getStreamInfo,
		"removeconfig":   s.removeConfig,
		"shutdownstream": s.shutdownStream,
		"version":        s.version,
		"members":        s.members,
		"leader":         s.leader,
		"join":           s.join,
		"leave":          s.leave,
		"nodestatus":     s.nodeStatus,
	}
	return s
}

// ServeHTTP authenticates and routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.authFailed.Inc()
		user, _, _ := r.BasicAuth()
		s.log.Warn("API request refused: wrong or missing credentials", "remote", r.RemoteAddr, "user", user, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Basic realm="castmesh", charset="UTF-8"`)
		http.Error(w, "401 unauthorized: this API needs HTTP basic authentication", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/metrics" && s.opts.Metrics != nil {
		s.opts.Metrics.ServeHTTP(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.prefix)
	if !ok {
		http.Error(w, fmt.Sprintf("404 not found: commands live under %s<command>", s.prefix), http.StatusNotFound)
		return
	}
	if name, ok := strings.CutPrefix(rest, "streams/"); ok {
		s.serveStream(w, r, name)
		return
	}
	if rest == "cluster/apply" {
		s.applyForwarded(w, r)
		return
	}
	cmd := strings.ToLower(strings.Trim(rest, "/"))
	env := s.runCommand(r, cmd)
	label := cmd
	if _, ok := s.commands[cmd]; !ok {
		label = "unknown"
	}
	s.requests.WithLabelValues(label, env.Status).Inc()
	writeJSON(w, http.StatusOK, env)
}

func (s *Server) runCommand(r *http.Request, cmd string) Envelope {
	handler, ok := s.commands[cmd]
	if !ok {
		return failed(fmt.Sprintf("unknown command %q", cmd), nil)
	}
	args, err := ParseArgs(r)
	if err != nil {
		return failed("bad arguments: "+err.Error(), nil)
	}
	return handler(r, args)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Config.API.Authentication == "none" {
		return true
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	// Compare digests so that neither the length nor the content leaks.
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(u[:], s.userHash[:])&subtle.ConstantTimeCompare(p[:], s.passHash[:]) == 1
}

// serveStream gives a peer the bytes of a stream this node has, waiting a
// while if this node is still copying it.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := streams.ValidateName(name); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if peer := r.Header.Get(streams.NodeHeader); peer != "" && !s.opts.Directory.ReplicatesTo(peer) {
		w.Header().Set(streams.NodeHeader, s.opts.Cluster.Self().Name)
		http.Error(w, "403 forbidden: replication to "+peer+" is disabled in destination_ems_apiproxies", http.StatusForbidden)
		return
	}
	if st, ok := s.opts.Streams.Stream(name); ok && st.Kind == streams.KindLive {
		from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		s.opts.Streams.ServeRelay(w, r, name, from)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rd, err := s.opts.Streams.OpenWhenReady(ctx, name)
	switch {
	case errors.Is(err, streams.ErrNotFound):
		http.Error(w, "404 not found: no stream "+name, http.StatusNotFound)
		return
	case errors.Is(err, streams.ErrNotReady), errors.Is(err, streams.ErrNotCarried):
		w.Header().Set("Retry-After", "1")
		http.Error(w, "503 "+err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		s.log.Error("open stream for peer", "stream", name, "err", err)
		http.Error(w, "500 "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer rd.Close()
	w.Header().Set(streams.DigestHeader, rd.Copy.SHA256)
	w.Header().Set("ETag", rd.Copy.ETag())
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", rd.Copy.ModTime, rd.File)
}

// applyForwarded applies a Raft command a follower forwarded to this node.
func (s *Server) applyForwarded(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	cmd, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "400 "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := s.opts.Cluster.ApplyLocal(r.Context(), cmd)
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(resp)
	}
}

// pullStream: uri (mandatory), localStreamName, keepAlive (default 1).
func (s *Server) pullStream(r *http.Request, args Args) Envelope {
	data := map[string]any{}
	for k, v := range args {
		data[k] = v
	}
	uri, _ := args.Get("uri")
	if uri == "" {
		return failed("pullStream: uri is mandatory", data)
	}
	keepAlive := true
	if v, ok := args.Get("keepAlive"); ok {
		b, err := parseBool("keepAlive", v)
		if err != nil {
			return failed("pullStream: "+err.Error(), data)
		}
		keepAlive = b
	}
	name, _ := args.Get("localStreamName")
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	st, err := s.opts.Streams.Pull(ctx, streams.PullRequest{URI: uri, Name: name, KeepAlive: keepAlive})
	if err != nil {
		return failed("pullStream: "+err.Error(), data)
	}
	data["uri"] = uri
	data["localStreamName"] = st.Name
	data["keepAlive"] = keepAlive
	data["configId"] = st.ConfigID
	data["operationType"] = 1
	data["origin"] = st.Origin
	data["kind"] = st.Kind
	return succeeded("Stream "+st.Name+" committed to the cluster; every node pulls it from "+st.Origin, data)
}

// ConfigEntry is one stream in listConfig's answer.
type ConfigEntry struct {
	ConfigID        uint64                    `json:"configId"`
	LocalStreamName string                    `json:"localStreamName"`
	URI             string                    `json:"uri"`
	KeepAlive       bool                      `json:"keepAlive"`
	OperationType   int                       `json:"operationType"`
	Kind            string                    `json:"kind"`
	Origin          string                    `json:"origin"`
	CreatedAt       time.Time                 `json:"createdAt"`
	Status          EntryStatus               `json:"status"`
	Nodes           map[string]streams.Status `json:"nodes"`
}

// EntryStatus is EMS's status object: this node's current and previous state.
type EntryStatus struct {
	Current  streams.Condition `json:"current"`
	Previous streams.Condition `json:"previous"`
}

// NodeStatus is one node's answer to "nodestatus".
type NodeStatus struct {
	Node    string           `json:"node"`
	Healthy bool             `json:"healthy"`
	Leader  string           `json:"leader"`
	Streams []streams.Status `json:"streams"`
	Error   string           `json:"error,omitempty"`
}

func (s *Server) localStatus() NodeStatus {
	leader, _ := s.opts.Cluster.Leader()
	return NodeStatus{
		Node:    s.opts.Cluster.Self().Name,
		Healthy: s.opts.Cluster.Healthy(),
		Leader:  leader.Name,
		Streams: s.opts.Streams.Statuses(),
	}
}

// listConfig: every stream of the set with this node's status and, under
// "nodes", every member's status of it.
func (s *Server) listConfig(r *http.Request, _ Args) Envelope {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	nodes := s.gatherStatuses(ctx)
	self := s.opts.Cluster.Self().Name
	data := map[string][]ConfigEntry{"pull": {}, "push": {}}
	for _, st := range s.opts.Streams.Streams() {
		e := ConfigEntry{
			ConfigID: st.ConfigID, LocalStreamName: st.Name, URI: st.Source, KeepAlive: st.KeepAlive,
			OperationType: 1, Kind: st.Kind, Origin: st.Origin, CreatedAt: st.CreatedAt,
			Nodes: map[string]streams.Status{},
		}
		for _, n := range nodes {
			ns := streams.Status{Name: st.Name, ConfigID: st.ConfigID,
				Current: streams.Condition{State: "unreachable", Description: n.Error}}
			for _, x := range n.Streams {
				if x.Name == st.Name && x.ConfigID == st.ConfigID {
					ns = x
				}
			}
			e.Nodes[n.Node] = ns
			if n.Node == self {
				e.Status = EntryStatus{Current: ns.Current, Previous: ns.Previous}
			}
		}
		key := "pull"
		if st.Source == streams.SourcePush {
			key, e.OperationType = "push", 2
		}
		data[key] = append(data[key], e)
	}
	return succeeded("Run-time configuration", data)
}

// gatherStatuses asks every alive member for its status, in parallel.
func (s *Server) gatherStatuses(ctx context.Context) []NodeStatus {
	members := s.opts.Cluster.Members()
	out := make([]NodeStatus, len(members))
	done := make(chan struct{}, len(members))
	self := s.opts.Cluster.Self().Name
	for i, m := range members {
		go func() {
			defer func() { done <- struct{}{} }()
			switch {
			case m.Name == self:
				out[i] = s.localStatus()
				return
			case m.State != "alive":
				out[i] = NodeStatus{Node: m.Name, Error: "member is " + m.State}
				return
			}
			var ns NodeStatus
			err := s.opts.Directory.Client(m).Call(ctx, "nodeStatus", nil, &ns)
			if err != nil {
				ns = NodeStatus{Node: m.Name, Error: err.Error()}
			}
			out[i] = ns
		}()
	}
	for range members {
		<-done
	}
	return out
}

func (s *Server) nodeStatus(_ *http.Request, _ Args) Envelope {
	return succeeded("Node status", s.localStatus())
}

// listStreams: the streams this node serves now.
func (s *Server) listStreams(_ *http.Request, _ Args) Envelope {
	var list []map[string]any
	for _, st := range s.opts.Streams.Statuses() {
		if st.Current.State != streams.StateActive {
			continue
		}
		stream, _ := s.opts.Streams.Stream(st.Name)
		list = append(list, map[string]any{
			"uniqueId": st.ConfigID, "name": st.Name, "localStreamName": st.Name, "type": "INP",
			"kind": stream.Kind, "origin": stream.Origin, "bytes": st.Bytes, "viewers": st.Viewers,
		})
	}
	return succeeded("Available streams", list)
}

// lookup finds a stream by "id" (configId) or "localStreamName".
func (s *Server) lookup(args Args) (streams.Stream, error) {
	if v, ok := args.Get("id"); ok && v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return streams.Stream{}, fmt.Errorf("argument id=%q: expected a configId number", v)
		}
		if st, ok := s.opts.Streams.StreamByID(id); ok {
			return st, nil
		}
		return streams.Stream{}, fmt.Errorf("no stream with configId %d", id)
	}
	if v, ok := args.Get("localStreamName"); ok && v != "" {
		if st, ok := s.opts.Streams.Stream(v); ok {
			return st, nil
		}
		return streams.Stream{}, fmt.Errorf("no stream called %q", v)
	}
	return streams.Stream{}, errors.New("give id (the configId) or localStreamName")
}

func (s *Server) getStreamInfo(_ *http.Request, args Args) Envelope {
	st, err := s.lookup(args)
	if err != nil {
		return failed("getStreamInfo: "+err.Error(), nil)
	}
	data := map[string]any{"stream": st}
	for _, x := range s.opts.Streams.Statuses() {
		if x.Name == st.Name {
			data["status"] = x
		}
	}
	return succeeded("Stream information", data)
}

// removeConfig: id (configId) mandatory; stops the stream everywhere and forgets it.
func (s *Server) removeConfig(r *http.Request, args Args) Envelope {
	if v, _ := args.Get("id"); v == "" {
		return failed("removeConfig: id (the configId) is mandatory", nil)
	}
	return s.remove(r, args, "removeConfig")
}

func (s *Server) remove(r *http.Request, args Args, cmd string) Envelope {
	st, err := s.lookup(args)
	if err != nil {
		return failed(cmd+": "+err.Error(), nil)
	}
	removed, err := s.opts.Streams.Remove(r.Context(), "", st.ConfigID)
	if err != nil {
		return failed(cmd+": "+err.Error(), nil)
	}
	return succeeded("Stream "+removed.Name+" removed from every node", map[string]any{
		"configId": removed.ConfigID, "localStreamName": removed.Name, "uri": removed.Source,
	})
}

// shutdownStream: localStreamName or id; permanently (default 1) removes
// the config everywhere. A file stream has nothing running to stop, so
// permanently=0 leaves it as it is and says so.
func (s *Server) shutdownStream(r *http.Request, args Args) Envelope {
	permanently := true
	if v, ok := args.Get("permanently"); ok {
		b, err := parseBool("permanently", v)
		if err != nil {
			return failed("shutdownStream: "+err.Error(), nil)
		}
		permanently = b
	}
	if !permanently {
		st, err := s.lookup(args)
		if err != nil {
			return failed("shutdownStream: "+err.Error(), nil)
		}
		return succeeded("Stream "+st.Name+" is a file stream: nothing runs to shut down; use permanently=1 to remove it", st)
	}
	return s.remove(r, args, "shutdownStream")
}

func (s *Server) version(_ *http.Request, _ Args) Envelope {
	return succeeded("castmesh version", map[string]any{"version": s.opts.Version, "product": "castmesh"})
}

// MemberInfo is one node in the "members" answer.
type MemberInfo struct {
	cluster.Member
	Raft string `json:"raft"` // "voter", "nonvoter" or "none"
}

func (s *Server) members(_ *http.Request, _ Args) Envelope {
	servers, _ := s.opts.Cluster.Servers()
	var out []MemberInfo
	for _, m := range s.opts.Cluster.Members() {
		role := "none"
		for _, srv := range servers {
			if srv.ID == m.Name {
				role = map[bool]string{true: "voter", false: "nonvoter"}[srv.Voter]
			}
		}
		out = append(out, MemberInfo{Member: m, Raft: role})
	}
	return succeeded("Cluster members", out)
}

func (s *Server) leader(_ *http.Request, _ Args) Envelope {
	m, ok := s.opts.Cluster.Leader()
	if !ok {
		return failed("no leader is known right now", nil)
	}
	return succeeded("Cluster leader", m)
}

// join: addresses (comma separated host:gossip_port) of members to join.
func (s *Server) join(_ *http.Request, args Args) Envelope {
	v, _ := args.Get("addresses")
	if v == "" {
		v, _ = args.Get("join")
	}
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return failed("join: addresses (host:gossip_port, comma separated) is mandatory", nil)
	}
	n, err := s.opts.Cluster.Join(addrs)
	if err != nil {
		return failed("join: "+err.Error(), map[string]any{"contacted": n})
	}
	return succeeded("Joined", map[string]any{"contacted": n})
}

func (s *Server) leave(_ *http.Request, _ Args) Envelope {
	if s.opts.Leave == nil {
		return failed("leave is not available on this node", nil)
	}
	// The node answers before it goes: its HTTP server drains this request.
	go s.opts.Leave()
	return succeeded("Leaving the cluster and stopping", map[string]any{"node": s.opts.Cluster.Self().Name})
}
