package shaping

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
)

// Request is what a rule condition looks at in a viewer's request.
type Request struct {
	// Addr is the client address: the socket peer, or the address a trusted
	// proxy reported (X-Forwarded-For, PROXY protocol). IPv4-mapped IPv6
	// addresses match IPv4 conditions.
	Addr netip.Addr
	// Header is the request's header. Names are looked up in canonical form,
	// as http.Header.Get does.
	Header http.Header
	// Path is the request's URL path without the query (r.URL.Path).
	Path string
}

// CondKind is what a condition term tests.
type CondKind uint8

// The kinds of condition terms.
const (
	CondIP     CondKind = iota + 1 // $IP[...]: the client address
	CondHeader                     // $HEADER[...]: a request header
	CondURL                        // $URL[...] or a bare /path pattern: the URL path
)

// headerMode is how a $HEADER term tests its header.
type headerMode uint8

const (
	headerPresent headerMode = iota // $HEADER[name]
	headerEmpty                     // $HEADER[name:]
	headerValue                     // $HEADER[name: pattern]
)

// ipMode is how a $IP term tests the address.
type ipMode uint8

const (
	ipSingle ipMode = iota // $IP[a]
	ipRange                // $IP[a-b]
	ipPrefix               // $IP[a/n] or $IP[a/mask]
)

// Cond is one term of a rule's condition, possibly negated with '!'. A rule
// holds when all of its terms (joined by '&') hold.
type Cond struct {
	Kind   CondKind
	Negate bool

	// $IP
	ipMode ipMode
	lo, hi netip.Addr // single: lo; range: lo..hi
	prefix netip.Prefix

	// $HEADER
	name      string // as written
	canonName string // textproto canonical form, the http.Header key
	hmode     headerMode

	// $HEADER value pattern and $URL pattern
	pat glob
}

// Match reports whether the term (with its negation) holds for req.
func (c *Cond) Match(req *Request) bool {
	return c.match(req) != c.Negate
}

func (c *Cond) match(req *Request) bool {
	switch c.Kind {
	case CondIP:
		a := req.Addr.Unmap()
		if !a.IsValid() {
			return false
		}
		a = a.WithZone("")
		switch c.ipMode {
		case ipSingle:
			return a == c.lo
		case ipRange:
			return a.BitLen() == c.lo.BitLen() && c.lo.Compare(a) <= 0 && a.Compare(c.hi) <= 0
		default:
			return c.prefix.Contains(a)
		}
	case CondHeader:
		vals, ok := req.Header[c.canonName]
		if !ok {
			// Tolerate a hand-built header keyed as the rule writes it.
			vals = req.Header[c.name]
		}
		switch c.hmode {
		case headerPresent:
			return len(vals) > 0
		case headerEmpty:
			for _, v := range vals {
				if strings.TrimSpace(v) == "" {
					return true
				}
			}
			return false
		default:
			for _, v := range vals {
				if c.pat.match(strings.TrimSpace(v)) {
					return true
				}
			}
			return false
		}
	case CondURL:
		return c.pat.match(req.Path)
	}
	return false
}

// String returns the term in throttling.txt syntax.
func (c *Cond) String() string {
	var b strings.Builder
	if c.Negate {
		b.WriteByte('!')
	}
	switch c.Kind {
	case CondIP:
		b.WriteString("$IP[")
		switch c.ipMode {
		case ipSingle:
			b.WriteString(c.lo.String())
		case ipRange:
			b.WriteString(c.lo.String())
			b.WriteByte('-')
			b.WriteString(c.hi.String())
		default:
			b.WriteString(c.prefix.String())
		}
		b.WriteByte(']')
	case CondHeader:
		b.WriteString("$HEADER[")
		b.WriteString(c.name)
		switch c.hmode {
		case headerEmpty:
			b.WriteByte(':')
		case headerValue:
			b.WriteString(": ")
			b.WriteString(c.pat.src)
		}
		b.WriteByte(']')
	case CondURL:
		if strings.Contains(c.pat.src, "]") {
			// Only the bare form can hold ']' (and it cannot hold ',', '&'
			// or '#', so the pattern came from the bare form).
			b.WriteString(c.pat.src)
		} else {
			b.WriteString("$URL[")
			b.WriteString(c.pat.src)
			b.WriteByte(']')
		}
	}
	return b.String()
}

// glob is a pattern where '*' stands for any run of characters (including
// '/' and none at all) and every other character stands for itself.
type glob struct {
	src  string
	fold bool     // ASCII case-insensitive (header values)
	segs []string // src split at '*'; len(segs)-1 stars
}

func newGlob(src string, fold bool) glob {
	return glob{src: src, fold: fold, segs: strings.Split(src, "*")}
}

func (g *glob) match(s string) bool {
	segs := g.segs
	if len(segs) == 1 {
		return g.eq(s, segs[0])
	}
	first, last := segs[0], segs[len(segs)-1]
	if len(s) < len(first)+len(last) || !g.eq(s[:len(first)], first) || !g.eq(s[len(s)-len(last):], last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	// Middle segments: leftmost match of each is optimal for '*' globs.
	for _, seg := range segs[1 : len(segs)-1] {
		i := g.index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return true
}

func (g *glob) eq(a, b string) bool {
	if g.fold {
		return equalFoldASCII(a, b)
	}
	return a == b
}

func (g *glob) index(s, sub string) int {
	if !g.fold {
		return strings.Index(s, sub)
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// equalFoldASCII compares a and b byte by byte, ASCII letters without
// regard to case. (strings.EqualFold would let lengths differ in bytes.)
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseIPSpec parses the inside of $IP[...]. It returns a message (what was
// expected) and the byte offset in spec it refers to on error.
func parseIPSpec(spec string) (c Cond, msg string, at int) {
	c.Kind = CondIP
	if i := strings.IndexByte(spec, '/'); i >= 0 {
		addr, m, off := parseAddr(spec[:i], 0)
		if m != "" {
			return c, m, off
		}
		bits := strings.TrimSpace(spec[i+1:])
		var n int
		if bits != "" && isDigits(bits) {
			v, err := strconv.Atoi(bits)
			if err != nil || v > addr.BitLen() {
				return c, "expected a prefix length of 0 to " + strconv.Itoa(addr.BitLen()), i + 1
			}
			n = v
		} else {
			mask, err := netip.ParseAddr(bits)
			if err != nil || !mask.Is4() || !addr.Is4() {
				return c, "expected a prefix length or an IPv4 netmask after '/'", i + 1
			}
			var ok bool
			if n, ok = maskBits(mask); !ok {
				return c, "expected a contiguous netmask such as 255.255.255.0", i + 1
			}
		}
		c.ipMode = ipPrefix
		c.prefix = netip.PrefixFrom(addr, n).Masked()
		return c, "", 0
	}
	if i := strings.IndexByte(spec, '-'); i >= 0 {
		lo, m, off := parseAddr(spec[:i], 0)
		if m != "" {
			return c, m, off
		}
		rest := spec[i+1:]
		hiText := strings.TrimSpace(rest)
		var hi netip.Addr
		if strings.ContainsAny(hiText, ".:") {
			var m string
			if hi, m, off = parseAddr(rest, i+1); m != "" {
				return c, m, off
			}
			if hi.BitLen() != lo.BitLen() {
				return c, "expected both ends of the range in the same address family", i + 1
			}
		} else {
			// The short form replaces the last part: 192.168.2.1-255,
			// 2001:db8::1-ff.
			base, max := 10, uint64(255)
			if lo.Is6() {
				base, max = 16, 0xffff
			}
			v, err := strconv.ParseUint(hiText, base, 32)
			if hiText == "" || err != nil || v > max {
				if lo.Is4() {
					return c, "expected the range's last octet (0-255) or address after '-'", i + 1
				}
				return c, "expected the range's last group (hex 0-ffff) or address after '-'", i + 1
			}
			b := lo.AsSlice()
			if lo.Is4() {
				b[3] = byte(v)
			} else {
				b[14], b[15] = byte(v>>8), byte(v)
			}
			hi, _ = netip.AddrFromSlice(b)
		}
		if hi.Compare(lo) < 0 {
			return c, "expected the range's end not below its start", i + 1
		}
		c.ipMode, c.lo, c.hi = ipRange, lo, hi
		return c, "", 0
	}
	addr, m, off := parseAddr(spec, 0)
	if m != "" {
		return c, m, off
	}
	c.ipMode, c.lo = ipSingle, addr
	return c, "", 0
}

// parseAddr parses one address of an $IP term (surrounding blanks allowed);
// base is the offset of s in the term, for the error position.
func parseAddr(s string, base int) (netip.Addr, string, int) {
	lead := len(s) - len(strings.TrimLeft(s, " \t"))
	t := strings.TrimSpace(s)
	if t == "" {
		return netip.Addr{}, "expected an IP address", base + lead
	}
	a, err := netip.ParseAddr(t)
	if err != nil {
		if len(t) == 2 && isLetters(t) {
			return a, "GeoIP country codes such as $IP[" + t + "] are not supported: expected an IP address, range or network", base + lead
		}
		return a, "expected an IP address, range (a-b) or network (a/n, a/mask), got " + strconv.Quote(t), base + lead
	}
	if a.Zone() != "" {
		return a, "expected an IP address without a zone", base + lead
	}
	return a.Unmap(), "", 0
}

// maskBits returns the prefix length of a contiguous IPv4 netmask.
func maskBits(m netip.Addr) (int, bool) {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for n < 32 && v&(1<<(31-n)) != 0 {
		n++
	}
	if n < 32 && v<<n != 0 {
		return 0, false
	}
	return n, true
}

// parseHeaderSpec parses the inside of $HEADER[...]: name, name: or
// name: pattern.
func parseHeaderSpec(spec string) (c Cond, msg string, at int) {
	c.Kind = CondHeader
	rawName, rawValue, hasColon := strings.Cut(spec, ":")
	lead := len(rawName) - len(strings.TrimLeft(rawName, " \t"))
	name := strings.TrimSpace(rawName)
	if name == "" {
		return c, "expected a header name", lead
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return c, "expected a header name (letters, digits and !#$%&'*+-.^_`|~), got " + strconv.Quote(name), lead + i
		}
	}
	c.name = name
	c.canonName = textproto.CanonicalMIMEHeaderKey(name)
	valueAt := len(rawName) + 1 + len(rawValue) - len(strings.TrimLeft(rawValue, " \t"))
	value := strings.TrimSpace(rawValue)
	switch {
	case !hasColon:
		c.hmode = headerPresent
	case value == "":
		c.hmode = headerEmpty
	default:
		for i := 0; i < len(value); i++ {
			if value[i] < ' ' && value[i] != '\t' || value[i] == 0x7f {
				return c, "expected a header value without control characters", valueAt + i
			}
		}
		c.hmode = headerValue
		c.pat = newGlob(value, true)
	}
	return c, "", 0
}

// parseURLSpec parses a URL pattern, from $URL[...] or the bare form.
func parseURLSpec(spec string) (c Cond, msg string, at int) {
	c.Kind = CondURL
	lead := len(spec) - len(strings.TrimLeft(spec, " \t"))
	p := strings.TrimSpace(spec)
	if p == "" {
		return c, "expected a URL pattern such as /vod/*.mp4", lead
	}
	if p[0] != '/' && p[0] != '*' {
		return c, "expected a URL pattern starting with '/' or '*', got " + strconv.Quote(p), lead
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] == 0x7f {
			return c, "expected a URL pattern without control characters", lead + i
		}
	}
	c.pat = newGlob(p, false)
	return c, "", 0
}

func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('a' <= s[i] && s[i] <= 'z' || 'A' <= s[i] && s[i] <= 'Z') {
			return false
		}
	}
	return s != ""
}
