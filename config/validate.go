package config

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Validate checks every rule of the config schema and returns all problems
// found, each a *Error naming the key (joined with errors.Join when there
// are several). Load calls it with the lines of the file; called on its own
// it has no lines, and errors name only c.Source and the key.
func (c *Config) Validate() error { return c.validate(nil) }

func (c *Config) validate(pos positions) error {
	v := &validator{file: c.Source, pos: pos}

	// [node]
	n := c.Node
	if n.DataDir == "" {
		v.add("node.data_dir", "must not be empty")
	}
	bind, bindErr := netip.ParseAddr(n.BindAddr)
	if bindErr != nil {
		v.add("node.bind_addr", "expected an IP address such as 127.0.0.1 or 0.0.0.0, got %q", n.BindAddr)
	}
	if n.AdvertiseAddr != "" && n.AdvertiseAddr != n.BindAddr {
		if _, err := netip.ParseAddr(n.AdvertiseAddr); err != nil {
			v.add("node.advertise_addr", "expected an IP address that peers can reach, got %q", n.AdvertiseAddr)
		}
	}

	// [cluster]
	cl := c.Cluster
	v.port("cluster.gossip_port", cl.GossipPort)
	v.port("cluster.raft_port", cl.RaftPort)
	for i, j := range cl.Join {
		if j == "" || strings.ContainsFunc(j, isSpaceOrQuote) {
			v.add("cluster.join", "element %d: expected host:gossip_port of a member, got %q", i+1, j)
		}
	}
	if cl.BootstrapExpect < 1 {
		v.add("cluster.bootstrap_expect", "must be at least 1, got %d", cl.BootstrapExpect)
	}
	if cl.GossipKey != "" {
		key, err := base64.StdEncoding.DecodeString(cl.GossipKey)
		if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
			v.add("cluster.gossip_key", "expected the base64 of a 16, 24 or 32-byte key (make one with: head -c 32 /dev/urandom | base64)")
		}
	}

	// [api]
	a := c.API
	v.port("api.ews_port", a.EWSPort)
	v.pathSegment("api.pseudo_domain", a.PseudoDomain)
	switch a.Authentication {
	case "basic":
		if a.UserName == "" || strings.Contains(a.UserName, ":") {
			v.add("api.user_name", "expected a user name without \":\", got %q", a.UserName)
		}
	case "none":
		if bindErr == nil && !bind.IsLoopback() {
			v.add("api.authentication", `"none" is allowed only when node.bind_addr is a loopback address (it is %s); use "basic"`, n.BindAddr)
		}
	default:
		v.add("api.authentication", `expected "basic" or "none", got %q`, a.Authentication)
	}
	v.pair("api.tls_cert", a.TLSCert, "api.tls_key", a.TLSKey)

	// [stream_load_balancer]
	slb := c.StreamLoadBalancer
	if slb.PluginSwitch != "enabled" && slb.PluginSwitch != "disabled" {
		v.add("stream_load_balancer.plugin_switch", `expected "enabled" or "disabled", got %q`, slb.PluginSwitch)
	}
	peerAt := map[string]int{}
	for i, p := range slb.DestinationEMSAPIProxies {
		key := func(k string) string {
			return keyString("stream_load_balancer", "destination_ems_apiproxies", strconv.Itoa(i+1), k)
		}
		switch {
		case p.Address == "" || strings.ContainsFunc(p.Address, isSpaceOrQuote):
			v.add(key("address"), "expected the peer's host or host:gossip_port, got %q", p.Address)
		case peerAt[p.Address] > 0:
			v.add(key("address"), "%q is already the address of entry %d", p.Address, peerAt[p.Address])
		default:
			peerAt[p.Address] = i + 1
		}
		if p.Authentication != "basic" && p.Authentication != "none" {
			v.add(key("authentication"), `expected "basic" or "none", got %q`, p.Authentication)
		}
		if p.EWSPort < 1 || p.EWSPort > 65535 {
			v.add(key("ews_port"), "expected a port from 1 to 65535, got %d", p.EWSPort)
		}
		v.pathSegment(key("pseudo_domain"), p.PseudoDomain)
		if strings.Contains(p.UserName, ":") {
			v.add(key("user_name"), "must not contain \":\"")
		}
	}

	// [ingest]
	v.port("ingest.port", c.Ingest.Port)

	// [edge]
	e := c.Edge
	v.port("edge.port", e.Port)
	v.port("edge.tls_port", e.TLSPort)
	v.pair("edge.tls_cert", e.TLSCert, "edge.tls_key", e.TLSKey)
	if e.TLSPort != 0 && (e.TLSCert == "" || e.TLSKey == "") {
		v.add("edge.tls_port", "an HTTPS listener needs edge.tls_cert and edge.tls_key")
	}
	if e.ClientCA != "" && e.TLSPort == 0 {
		v.add("edge.client_ca", "client certificates need an HTTPS listener: set edge.tls_port")
	}
	for i, p := range e.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		v.add("edge.trusted_proxies", "element %d: expected a CIDR such as 10.0.0.0/8 or an IP address, got %q", i+1, p)
	}
	v.nonNegative("edge.node_traffic_cap", e.NodeTrafficCap)
	v.ports(c)

	// [edge.vhosts.NAME]
	if _, ok := e.VHosts["default"]; !ok {
		v.add("edge.vhosts", `the "default" vhost is missing`)
	}
	names := make([]string, 0, len(e.VHosts))
	for name := range e.VHosts {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { // "default" first: it keeps "*"
		if (names[i] == "default") != (names[j] == "default") {
			return names[i] == "default"
		}
		return names[i] < names[j]
	})
	claimed := map[string]string{} // host pattern → vhost
	for _, name := range names {
		vh := e.VHosts[name]
		key := func(k string) string { return keyString("edge", "vhosts", name, k) }
		if len(vh.Hosts) == 0 {
			v.add(key("hosts"), `must list at least one host name, "*.example.com" or "*"`)
		}
		for i, h := range vh.Hosts {
			if msg := checkHostPattern(h); msg != "" {
				v.add(key("hosts"), "element %d: %s", i+1, msg)
				continue
			}
			h = strings.ToLower(h)
			if other, dup := claimed[h]; dup {
				hint := ""
				if v.pos != nil && v.pos[key("hosts")] == 0 {
					hint = " (this vhost inherits the default hosts = [\"*\"]; set hosts for it)"
				}
				if other == name {
					v.add(key("hosts"), "%q is listed twice", h)
				} else {
					v.add(key("hosts"), "%q is already claimed by vhost %q%s", h, other, hint)
				}
				continue
			}
			claimed[h] = name
		}
		v.nonNegative(key("traffic_cap"), vh.TrafficCap)
		v.nonNegative(key("session_cap"), vh.SessionCap)
		v.nonNegative(key("bandwidth"), vh.Bandwidth)
		v.nonNegative(key("ratio"), vh.Ratio)
		v.nonNegative(key("boost"), vh.Boost)
		switch vh.Unit {
		case "kbps", "mbps", "bytes", "kb", "mb":
		default:
			v.add(key("unit"), `expected kbps, mbps, bytes, kb or mb, got %q`, vh.Unit)
		}
		if vh.QueryString {
			for _, p := range []struct{ k, val string }{
				{"bandwidth_param", vh.BandwidthParam}, {"ratio_param", vh.RatioParam}, {"boost_param", vh.BoostParam},
			} {
				if p.val == "" || strings.ContainsAny(p.val, "&=?# ") {
					v.add(key(p.k), "expected a query-string parameter name, got %q", p.val)
				}
			}
		}
	}
	return joinErrors(v.errs)
}

type validator struct {
	file string
	pos  positions
	errs []*Error
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: v.pos[key], Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) port(key string, p int) {
	if p < 0 || p > 65535 {
		v.add(key, "expected a port from 0 to 65535 (0 picks a free port), got %d", p)
	}
}

// ports reports two listeners given the same fixed port.
func (v *validator) ports(c *Config) {
	seen := map[int]string{}
	for _, l := range []struct {
		key  string
		port int
	}{
		{"cluster.gossip_port", c.Cluster.GossipPort},
		{"cluster.raft_port", c.Cluster.RaftPort},
		{"api.ews_port", c.API.EWSPort},
		{"ingest.port", c.Ingest.Port},
		{"edge.port", c.Edge.Port},
		{"edge.tls_port", c.Edge.TLSPort},
	} {
		if l.port <= 0 || l.port > 65535 {
			continue
		}
		if other, dup := seen[l.port]; dup {
			// Blame the key written later in the file (or written at all).
			if v.pos[l.key] >= v.pos[other] {
				v.add(l.key, "port %d is already %s", l.port, other)
			} else {
				v.add(other, "port %d is already %s", l.port, l.key)
			}
			continue
		}
		seen[l.port] = l.key
	}
}

// pair reports one of two keys that go together (a cert and its key) set
// without the other.
func (v *validator) pair(k1, v1, k2, v2 string) {
	switch {
	case v1 != "" && v2 == "":
		v.add(k2, "must be set too when %s is set", k1)
	case v1 == "" && v2 != "":
		v.add(k1, "must be set too when %s is set", k2)
	}
}

func (v *validator) nonNegative(key string, x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		v.add(key, "expected a number ≥ 0, got %v", x)
	}
}

// pathSegment checks a pseudo_domain: one URL path segment.
func (v *validator) pathSegment(key, s string) {
	if s == "" || strings.ContainsAny(s, "/?#%") || strings.ContainsFunc(s, isSpaceOrQuote) {
		v.add(key, "expected one URL path segment such as \"apiproxy\", got %q", s)
	}
}

func isSpaceOrQuote(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '"' || r == '\'' || r < 0x20 || r == 0x7f
}

// checkHostPattern returns what is wrong with a vhost host pattern, or "".
// A pattern is "*", "*.example.com" (any name ending in .example.com), an
// exact host name, or an IP address (IPv6 in brackets).
func checkHostPattern(h string) string {
	if h == "*" {
		return ""
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") && name == h {
		if a, err := netip.ParseAddr(name[1 : len(name)-1]); err == nil && a.Is6() {
			return ""
		}
	}
	if name == "" || len(name) > 253 {
		return fmt.Sprintf("expected a host name, \"*.example.com\" or \"*\", got %q", h)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Sprintf("expected a host name, \"*.example.com\" or \"*\", got %q", h)
		}
		for _, r := range label {
			switch {
			case r == '*':
				return fmt.Sprintf("%q: a wildcard may only be the whole first label, as in \"*.example.com\"", h)
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			default:
				return fmt.Sprintf("%q: a host name has only letters, digits, '-', '_' and dots", h)
			}
		}
	}
	return ""
}
