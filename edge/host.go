package edge

import "strings"

// hostTable finds the vhost of a request's Host header: an exact name
// first, then the longest "*.suffix" pattern that matches, then "*", then
// the vhost named "default". Names compare without regard to ASCII case and
// without a port or a trailing dot.
type hostTable struct {
	exact map[string]*vhost // "www.example.com", "127.0.0.1", "[::1]"
	wild  map[string]*vhost // ".example.com" for "*.example.com"
	star  *vhost            // hosts = ["*"]
	def   *vhost            // the vhost named "default"
}

func newHostTable() *hostTable {
	return &hostTable{exact: map[string]*vhost{}, wild: map[string]*vhost{}}
}

// add claims a host pattern for vh. config.Validate has checked the
// patterns and that no two vhosts claim the same one.
func (t *hostTable) add(pattern string, vh *vhost) {
	p := strings.ToLower(strings.TrimSuffix(pattern, "."))
	switch {
	case p == "*":
		t.star = vh
	case strings.HasPrefix(p, "*."):
		t.wild[p[1:]] = vh
	default:
		t.exact[p] = vh
	}
}

// lookup returns the vhost for a Host header value; never nil once the
// default vhost is set.
func (t *hostTable) lookup(hostHeader string) *vhost {
	h := normalizeHost(hostHeader)
	if h != "" {
		if vh, ok := t.exact[h]; ok {
			return vh
		}
		if len(t.wild) > 0 && h[0] != '[' {
			// Longest suffix first: the leftmost dot gives the longest.
			for i := 0; i < len(h); i++ {
				if h[i] == '.' && i > 0 {
					if vh, ok := t.wild[h[i:]]; ok {
						return vh
					}
				}
			}
		}
	}
	if t.star != nil {
		return t.star
	}
	return t.def
}

// normalizeHost lowers a Host header's name, drops its port and a trailing
// dot, and keeps an IPv6 literal in brackets. A value that is not a
// plausible host (an empty label, a bad port, spaces, non-ASCII) gives "", which only
// "*" and the default vhost serve.
// It allocates only when the name has upper-case letters.
func normalizeHost(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return ""
		}
		rest := h[end+1:]
		if rest != "" && !isPort(rest) {
			return ""
		}
		h = h[:end+1]
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !isPort(h[i:]) || strings.IndexByte(h[:i], ':') >= 0 {
			return ""
		}
		h = h[:i]
	}
	if h == "" || h[0] == '.' || strings.Contains(h, "..") {
		return "" // an empty label
	}
	h = strings.TrimSuffix(h, ".")
	upper := false
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c == '/' || c >= 0x7f {
			return "" // host names are ASCII (IDNA sends punycode)
		}
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if upper {
		return strings.ToLower(h)
	}
	return h
}

// isPort reports whether s is ":" followed by up to 5 digits (or nothing,
// which RFC 3986 allows).
func isPort(s string) bool {
	if s == "" || s[0] != ':' || len(s) > 6 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
