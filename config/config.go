package config

import "time"

// Config is a node's whole configuration. Field tags give the snake_case key
// names shared by the TOML and INI forms.
type Config struct {
	Node               Node               `toml:"node"`
	Cluster            Cluster            `toml:"cluster"`
	API                API                `toml:"api"`
	StreamLoadBalancer StreamLoadBalancer `toml:"stream_load_balancer"`
	Ingest             Ingest             `toml:"ingest"`
	Edge               Edge               `toml:"edge"`

	// Source is the file the config was read from ("" for defaults only).
	Source string `toml:"-"`
}

type Node struct {
	Name          string `toml:"name"`
	DataDir       string `toml:"data_dir"`
	BindAddr      string `toml:"bind_addr"`
	AdvertiseAddr string `toml:"advertise_addr"`
	Zone          string `toml:"zone"`
}

type Cluster struct {
	GossipPort      int      `toml:"gossip_port"`
	RaftPort        int      `toml:"raft_port"`
	Join            []string `toml:"join"`
	BootstrapExpect int      `toml:"bootstrap_expect"`
	GossipKey       string   `toml:"gossip_key"`

	// Timings is not part of the file format: tests and benchmarks shorten
	// raft and gossip timings through it. Zero values mean production defaults.
	Timings Timings `toml:"-"`
}

// Timings tunes raft and memberlist. The zero value selects the defaults.
type Timings struct {
	RaftHeartbeat   time.Duration
	RaftElection    time.Duration
	RaftLease       time.Duration
	RaftCommit      time.Duration
	GossipProbe     time.Duration
	GossipProbeWait time.Duration
	GossipInterval  time.Duration
	SuspicionMult   int
}

type API struct {
	EWSPort        int    `toml:"ews_port"`
	PseudoDomain   string `toml:"pseudo_domain"`
	Authentication string `toml:"authentication"` // "basic" or "none"
	UserName       string `toml:"user_name"`
	Password       string `toml:"password"`
	TLSCert        string `toml:"tls_cert"`
	TLSKey         string `toml:"tls_key"`
}

type StreamLoadBalancer struct {
	PluginSwitch             string         `toml:"plugin_switch"` // "enabled" or "disabled"
	DestinationEMSAPIProxies []APIProxyPeer `toml:"destination_ems_apiproxies"`
}

// Enabled reports whether this node takes part in replication.
func (s StreamLoadBalancer) Enabled() bool { return s.PluginSwitch != "disabled" }

// APIProxyPeer is one entry of destination_ems_apiproxies: how to call a
// peer's API proxy and whether that peer replicates at all.
type APIProxyPeer struct {
	Enable         bool   `toml:"enable"`
	Authentication string `toml:"authentication"`
	PseudoDomain   string `toml:"pseudo_domain"`
	Address        string `toml:"address"` // host, or host:gossip_port
	EWSPort        int    `toml:"ews_port"`
	UserName       string `toml:"user_name"`
	Password       string `toml:"password"`
}

type Ingest struct {
	Port           int    `toml:"port"`
	SourceUser     string `toml:"source_user"`
	SourcePassword string `toml:"source_password"` // empty: ingest is off
}

type Edge struct {
	Port           int              `toml:"port"`
	TLSPort        int              `toml:"tls_port"`
	TLSCert        string           `toml:"tls_cert"`
	TLSKey         string           `toml:"tls_key"`
	ClientCA       string           `toml:"client_ca"`
	TrustedProxies []string         `toml:"trusted_proxies"`
	NodeTrafficCap float64          `toml:"node_traffic_cap"` // Mbps, 0 = none
	VHosts         map[string]VHost `toml:"vhosts"`
}

// VHost is one virtual host's delivery and throttling settings (STON terms).
type VHost struct {
	Hosts          []string `toml:"hosts"`
	TrafficCap     float64  `toml:"traffic_cap"` // Mbps
	SessionCap     float64  `toml:"session_cap"` // Kbps
	Throttling     bool     `toml:"throttling"`
	Bandwidth      float64  `toml:"bandwidth"`
	Unit           string   `toml:"unit"`  // kbps | mbps | bytes | kb | mb
	Ratio          float64  `toml:"ratio"` // percent
	Boost          float64  `toml:"boost"` // seconds
	RulesFile      string   `toml:"rules_file"`
	QueryString    bool     `toml:"query_string"`
	BandwidthParam string   `toml:"bandwidth_param"`
	RatioParam     string   `toml:"ratio_param"`
	BoostParam     string   `toml:"boost_param"`
}

// Default returns the configuration of a node started with no file.
func Default() Config {
	return Config{
		Node: Node{DataDir: "./castmesh-data", BindAddr: "127.0.0.1"},
		Cluster: Cluster{
			GossipPort:      7946,
			RaftPort:        8300,
			Join:            []string{},
			BootstrapExpect: 1,
		},
		API: API{
			EWSPort:        8888,
			PseudoDomain:   "apiproxy",
			Authentication: "basic",
			UserName:       "admin",
		},
		StreamLoadBalancer: StreamLoadBalancer{PluginSwitch: "enabled"},
		Ingest:             Ingest{Port: 8000, SourceUser: "source"},
		Edge: Edge{
			Port:           8080,
			TrustedProxies: []string{},
			VHosts:         map[string]VHost{"default": DefaultVHost()},
		},
	}
}

// DefaultVHost returns the settings of a vhost table that sets nothing.
func DefaultVHost() VHost {
	return VHost{
		Hosts:          []string{"*"},
		Bandwidth:      1000,
		Unit:           "kbps",
		Ratio:          100,
		Boost:          5,
		BandwidthParam: "mybandwidth",
		RatioParam:     "myratio",
		BoostParam:     "myboost",
	}
}

// DefaultPeer returns the defaults of one destination_ems_apiproxies entry.
func DefaultPeer() APIProxyPeer {
	return APIProxyPeer{Enable: true, Authentication: "basic", PseudoDomain: "apiproxy", EWSPort: 8888}
}
