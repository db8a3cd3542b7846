// Package node is castmesh's composition root: it wires config, cluster,
// streams, the API proxy and the edge into one running node. castmeshd and
// the multi-node tests both use it, so tests run the wiring users run.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/castmesh/castmesh/apiproxy"
	"github.com/castmesh/castmesh/cluster"
	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/edge"
	"github.com/castmesh/castmesh/shaping"
	"github.com/castmesh/castmesh/streams"
)

// Version is the product version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Node is one running castmesh node.
type Node struct {
	cfg config.Config
	log *slog.Logger

	cluster   *cluster.Cluster
	manager   *streams.Manager
	directory *apiproxy.Directory
	viewers   *edge.Server
	pacer     *shaping.Pacer

	servers   []*http.Server
	apiURL    string
	edgeURL   string
	ingestURL string

	stopOnce sync.Once
	done     chan struct{}
	wg       sync.WaitGroup
}

// New starts a node on cfg (already loaded and validated). Whatever New
// started is stopped again when it fails half-way.
func New(cfg config.Config, log *slog.Logger) (n *Node, err error) {
	if log == nil {
		log = slog.Default()
	}
	n = &Node{cfg: cfg, log: log.With("node", cfg.Node.Name), done: make(chan struct{})}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// The vhosts' rules files are read before anything listens: a node
	// never starts on a throttling.txt it cannot parse.
	edgeCfg, err := edge.LoadConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}

	apiLn, err := listen(cfg.Node.BindAddr, cfg.API.EWSPort, cfg.API.TLSCert, cfg.API.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("api listener: %w", err)
	}
	cleanup = append(cleanup, func() { apiLn.Close() })
	edgeLn, err := listen(cfg.Node.BindAddr, cfg.Edge.Port, "", "")
	if err != nil {
		return nil, fmt.Errorf("edge listener: %w", err)
	}
	cleanup = append(cleanup, func() { edgeLn.Close() })
	var edgeTLSLn net.Listener
	var edgeTLS *tls.Config
	if cfg.Edge.TLSPort != 0 {
		if edgeTLS, err = edgeTLSConfig(cfg.Edge); err != nil {
			return nil, fmt.Errorf("edge https listener: %w", err)
		}
		if edgeTLSLn, err = listen(cfg.Node.BindAddr, cfg.Edge.TLSPort, "", ""); err != nil {
			return nil, fmt.Errorf("edge https listener: %w", err)
		}
		cleanup = append(cleanup, func() { edgeTLSLn.Close() })
	}
	var ingestLn net.Listener
	if cfg.Ingest.SourcePassword != "" {
		if ingestLn, err = listen(cfg.Node.BindAddr, cfg.Ingest.Port, "", ""); err != nil {
			return nil, fmt.Errorf("ingest listener: %w", err)
		}
		cleanup = append(cleanup, func() { ingestLn.Close() })
	}

	apiScheme := "http"
	if cfg.API.TLSCert != "" {
		apiScheme = "https"
	}
	advertise := cfg.Node.AdvertiseAddr
	if advertise == "" {
		advertise = cfg.Node.BindAddr
	}
	meta := cluster.Meta{
		API:          net.JoinHostPort(advertise, port(apiLn)),
		APIScheme:    apiScheme,
		PseudoDomain: cfg.API.PseudoDomain,
		Edge:         net.JoinHostPort(advertise, port(edgeLn)),
		Zone:         cfg.Node.Zone,
		Ingest:       addrOf(advertise, ingestLn),
		Replicates:   cfg.StreamLoadBalancer.Enabled(),
	}
	n.apiURL = apiScheme + "://" + meta.API + "/" + cfg.API.PseudoDomain
	n.edgeURL = "http://" + meta.Edge

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	fsm := streams.NewFSM()
	store, err := streams.OpenStore(filepath.Join(cfg.Node.DataDir, "streams"))
	if err != nil {
		return nil, fmt.Errorf("stream store: %w", err)
	}
	peerHTTP := &http.Client{Transport: peerTransport()}
	// Forwarded writes never reuse a connection: on a pooled one to a
	// leader that was just cut off the request would hang with an unknown
	// outcome, while a fresh dial fails fast and is safe to retry on the
	// new leader. Writes are rare; the extra connect costs nothing.
	forwardTransport := peerTransport()
	forwardTransport.DisableKeepAlives = true
	forwardHTTP := &http.Client{Transport: forwardTransport}
	n.directory = apiproxy.NewDirectory(cfg, peerHTTP, func(name string) (cluster.Member, bool) {
		return n.cluster.Member(name)
	})
	n.cluster, err = cluster.New(cluster.Options{
		Config: cfg,
		Meta:   meta,
		FSM:    fsm,
		Forward: func(ctx context.Context, leader cluster.Member, cmd []byte) ([]byte, error) {
			c := n.directory.Client(leader)
			c.HTTP = forwardHTTP
			return c.Apply(ctx, cmd)
		},
		Logger:     n.log,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cleanup = append(cleanup, func() { n.cluster.Close() })

	n.manager = streams.NewManager(streams.Options{
		Self:       cfg.Node.Name,
		Replicates: cfg.StreamLoadBalancer.Enabled(),
		FSM:        fsm,
		Store:      store,
		Cluster:    n.cluster,
		Peers:      peers{n},
		PeerClient: peerHTTP,
		Logger:     n.log,
		Registerer: reg,
	})
	n.manager.Run(n.cluster.Changes())
	cleanup = append(cleanup, n.manager.Close)

	api := apiproxy.New(apiproxy.Options{
		Config:    cfg,
		Version:   Version,
		Streams:   n.manager,
		Cluster:   n.cluster,
		Directory: n.directory,
		Leave: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.Leave(ctx); err != nil {
				n.log.Error("leave", "err", err)
			}
		},
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Logger:   n.log,
		Registry: reg,
	})
	n.pacer = shaping.NewPacer(shaping.PacerConfig{NodeCap: edgeCfg.NodeTrafficCap, MaxGrantsPerSec: pacerGrantBudget(n.log)})
	cleanup = append(cleanup, n.pacer.Close)
	n.viewers = edge.New(edge.Options{Streams: edge.ManagerStreams(n.manager), Health: n.Health, Logger: n.log, Registry: reg, Config: edgeCfg, Pacer: n.pacer})

	n.serve(apiLn, api)
	// Trusted balancers may open edge connections with a PROXY protocol
	// header; the listener looks for one only on their connections.
	n.serve(n.viewers.ProxyListener(edgeLn), n.viewers)
	if edgeTLSLn != nil {
		// The PROXY header of a trusted balancer comes before the TLS
		// handshake, so that listener is beneath TLS.
		n.serve(tls.NewListener(n.viewers.ProxyListener(edgeTLSLn), edgeTLS), n.viewers)
	}
	if ingestLn != nil {
		n.serve(ingestLn, streams.NewIngestHandler(n.manager, cfg.Ingest.SourceUser, cfg.Ingest.SourcePassword))
		n.ingestURL = "http://" + meta.Ingest
	}
	n.log.Info("node started", "api", n.apiURL, "edge", n.edgeURL, "ingest", n.ingestURL, "data_dir", cfg.Node.DataDir)
	return n, nil
}

// serve runs h on ln. Every server has header and idle timeouts; bodies
// are bounded by the handlers (the API's are small, ingest's are streams).
func (n *Node) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.servers = append(n.servers, srv)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("server stopped", "addr", ln.Addr(), "err", err)
		}
	}()
}

func listen(host string, p int, cert, key string) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
	if err != nil || cert == "" {
		return ln, err
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}), nil
}

// edgeTLSConfig is the HTTPS viewer listener's TLS (edge.tls_port),
// asking viewers for a certificate signed by edge.client_ca when it is set.
func edgeTLSConfig(e config.Edge) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(e.TLSCert, e.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if e.ClientCA != "" {
		pem, err := os.ReadFile(e.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("edge.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("edge.client_ca %s: no PEM certificate in it", e.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// pacerGrantBudget reads CASTMESH_PACER_MAX_GRANTS_PER_SEC, a benchmark
// knob for shaping.PacerConfig.MaxGrantsPerSec (0: the default; negative:
// never lengthen the grant period). See shaping/DESIGN.md.
func pacerGrantBudget(log *slog.Logger) float64 {
	v := os.Getenv("CASTMESH_PACER_MAX_GRANTS_PER_SEC")
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		log.Warn("CASTMESH_PACER_MAX_GRANTS_PER_SEC is not a number; using the default", "value", v)
		return 0
	}
	return f
}

func port(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }

func addrOf(host string, ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return net.JoinHostPort(host, port(ln))
}

// peerTransport calls other nodes. Peers are on the cluster's network: a
// connect that takes a second is a dead or cut-off peer, and failing fast
// lets a forwarded write move on to the new leader.
func peerTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 15 * time.Second
	t.MaxIdleConnsPerHost = 16
	return t
}

// Health is the load balancer's view: the node is in a cluster with a
// leader and carries every stream it should.
func (n *Node) Health() (bool, string) {
	if !n.cluster.Healthy() {
		return false, "not in a cluster with a leader"
	}
	return n.manager.Ready()
}

// Reload applies a new config that Load accepted. Peer credentials and
// switches take effect at once; keys that need a restart are named in a
// warning and keep their running values.
func (n *Node) Reload(cfg config.Config) error {
	// Rules files are re-read first: one that does not parse fails the
	// reload, and the running rules (and everything else) stay.
	edgeCfg, err := edge.LoadConfig(cfg)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	n.directory.Update(cfg)
	n.viewers.Apply(edgeCfg)
	old := n.cfg
	var restart []string
	if cfg.Node != old.Node {
		restart = append(restart, "[node]")
	}
	if fmt.Sprint(cfg.Cluster) != fmt.Sprint(old.Cluster) {
		restart = append(restart, "[cluster]")
	}
	if cfg.API != old.API {
		restart = append(restart, "[api]")
	}
	if cfg.StreamLoadBalancer.PluginSwitch != old.StreamLoadBalancer.PluginSwitch {
		restart = append(restart, "stream_load_balancer.plugin_switch")
	}
	oe, ne := old.Edge, cfg.Edge
	if oe.Port != ne.Port || oe.TLSPort != ne.TLSPort || oe.TLSCert != ne.TLSCert || oe.TLSKey != ne.TLSKey || oe.ClientCA != ne.ClientCA {
		restart = append(restart, "edge listeners (port, tls_port, tls_cert, tls_key, client_ca)")
	}
	// What the edge applied in place is the running config now.
	n.cfg.Edge.VHosts, n.cfg.Edge.TrustedProxies, n.cfg.Edge.NodeTrafficCap = cfg.Edge.VHosts, cfg.Edge.TrustedProxies, cfg.Edge.NodeTrafficCap
	if len(restart) > 0 {
		n.log.Warn("config reloaded; these settings change only on restart", "keys", restart)
	}
	return nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Node.Name }

// APIURL is the base URL of the node's API proxy (…/<pseudo_domain>).
func (n *Node) APIURL() string { return n.apiURL }

// IngestURL is the base URL of the node's ingest listener ("" when off).
func (n *Node) IngestURL() string { return n.ingestURL }

// EdgeURL is the base URL of the node's edge listener.
func (n *Node) EdgeURL() string { return n.edgeURL }

// Cluster gives tests and tools the node's cluster.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// Done is closed when the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Close stops the node without leaving the cluster: it comes back with its
// streams when started again on the same data directory.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range n.servers {
			s.Shutdown(ctx)
			s.Close()
		}
		n.manager.Close()
		n.pacer.Close()
		err = n.cluster.Close()
		n.wg.Wait()
		close(n.done)
	})
	return err
}

// Leave leaves the cluster gracefully, then stops the node.
func (n *Node) Leave(ctx context.Context) error {
	err := n.cluster.Leave(ctx)
	return errors.Join(err, n.Close())
}

// peers shows the cluster's members to the stream manager.
type peers struct{ n *Node }

func (p peers) peer(m cluster.Member) streams.Peer {
	c := p.n.directory.Client(m)
	return streams.Peer{
		Name: m.Name, Alive: m.State == "alive", Replicates: m.Meta.Replicates,
		StreamsURL: c.BaseURL + "/streams/", User: c.User, Password: c.Password,
	}
}

func (p peers) Peer(name string) (streams.Peer, bool) {
	m, ok := p.n.cluster.Member(name)
	if !ok {
		return streams.Peer{}, false
	}
	return p.peer(m), true
}

func (p peers) Peers() []streams.Peer {
	var out []streams.Peer
	for _, m := range p.n.cluster.Members() {
		out = append(out, p.peer(m))
	}
	return out
}
