package edge

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies is edge.trusted_proxies: the peers whose X-Forwarded-For
// and PROXY protocol header are believed.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads CIDRs and single addresses ("10.0.0.0/8",
// "192.0.2.7", "::1").
func parseTrustedProxies(list []string) (trustedProxies, error) {
	var out trustedProxies
	for i, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap().WithZone("")
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("edge.trusted_proxies element %d: expected a CIDR or an IP address, got %q", i+1, s)
	}
	return out, nil
}

// contains reports whether a is a trusted proxy. IPv4-mapped IPv6
// addresses count as IPv4.
func (t trustedProxies) contains(a netip.Addr) bool {
	if len(t) == 0 || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses a net/http RemoteAddr ("192.0.2.1:5000", "[::1]:5000").
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap().WithZone("")
}

// clientAddr is the viewer's address for $IP[...] conditions: the peer
// (already the PROXY protocol's source when a trusted balancer sent one),
// or, when the peer is a trusted proxy, the rightmost X-Forwarded-For
// entry that is not a trusted proxy itself. Entries a client wrote to the
// left of an untrusted hop are never believed.
func (t trustedProxies) clientAddr(peer netip.Addr, h http.Header) netip.Addr {
	if !t.contains(peer) {
		return peer
	}
	vals := h["X-Forwarded-For"]
	if len(vals) == 0 {
		return peer
	}
	return t.rightmostUntrusted(peer, vals)
}

// rightmostUntrusted walks the X-Forwarded-For hops from the right (the
// hop nearest this node) and returns the first one that is not a trusted
// proxy. A malformed entry stops the walk: what is left of it cannot be
// trusted, so the last good hop is the client. When every hop is trusted,
// the leftmost is.
func (t trustedProxies) rightmostUntrusted(peer netip.Addr, vals []string) netip.Addr {
	client := peer
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			var hop string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				hop, v = v, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue // "a, , b" and trailing commas: nothing there
			}
			a, ok := parseForwardedHop(hop)
			if !ok {
				return client
			}
			client = a
			if !t.contains(a) {
				return a
			}
		}
	}
	return client
}

// parseForwardedHop reads one X-Forwarded-For entry: an address, an
// address with a port ("192.0.2.1:4711", "[2001:db8::1]:4711") or a
// bracketed IPv6 address.
func parseForwardedHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
