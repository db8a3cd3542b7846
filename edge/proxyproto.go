package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) lets
// a load balancer in front of the edge say who the viewer is. A trusted
// peer may start a connection with such a header; it is detected, not
// required, so the same balancer can send health checks without one.
// Headers from untrusted peers are not looked for: their bytes go to the
// HTTP server, which answers 400.

var (
	// proxyV1Prefix starts a version 1 header: "PROXY TCP4 a b p q\r\n".
	proxyV1Prefix = []byte("PROXY ")
	// proxyV2Sig is the 12-byte signature of a version 2 header.
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// ErrProxyHeader is a malformed PROXY protocol header.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

const (
	proxyV1MaxLen  = 107 // the spec's bound, CRLF included
	proxyV2HeadLen = 16
)

// proxyHeaderWait bounds the wait for a PROXY header, as ReadHeaderTimeout
// bounds the request's.
const proxyHeaderWait = 10 * time.Second

// readProxyHeader reads a PROXY protocol header from br if one is there.
// It returns the source address the header gives, found = true when there
// was a header; a header that says LOCAL or UNKNOWN (a balancer's own
// connection) is found with an invalid address, meaning "use the peer".
// Without a header nothing is consumed. A header that starts right but is
// malformed is an error wrapping ErrProxyHeader.
func readProxyHeader(br *bufio.Reader) (src netip.AddrPort, found bool, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	switch first[0] {
	case 'P':
		b, err := br.Peek(len(proxyV1Prefix))
		if err != nil || !bytes.Equal(b, proxyV1Prefix) {
			// "POST", "PUT", "PATCH", or a short read: not a header.
			return netip.AddrPort{}, false, nil
		}
		src, err := readProxyV1(br)
		return src, true, err
	case '\r':
		b, err := br.Peek(len(proxyV2Sig))
		if err != nil || !bytes.Equal(b, proxyV2Sig) {
			return netip.AddrPort{}, false, nil
		}
		src, err := readProxyV2(br)
		return src, true, err
	}
	return netip.AddrPort{}, false, nil
}

// readProxyV1 parses "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
func readProxyV1(br *bufio.Reader) (netip.AddrPort, error) {
	var line []byte
	for len(line) < proxyV1MaxLen {
		c, err := br.ReadByte()
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: v1 line cut off: %v", ErrProxyHeader, err)
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 line longer than %d bytes or not ended by CRLF", ErrProxyHeader, proxyV1MaxLen)
	}
	fields := bytes.Split(line[:len(line)-2], []byte(" "))
	// fields[0] is "PROXY".
	if len(fields) >= 2 && string(fields[1]) == "UNKNOWN" {
		return netip.AddrPort{}, nil // the rest is to be ignored
	}
	if len(fields) != 6 {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 expected PROXY TCP4|TCP6 src dst sport dport", ErrProxyHeader)
	}
	proto := string(fields[1])
	if proto != "TCP4" && proto != "TCP6" {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 protocol %q: expected TCP4, TCP6 or UNKNOWN", ErrProxyHeader, fields[1])
	}
	var addrs [2]netip.Addr
	for i, f := range fields[2:4] {
		a, err := netip.ParseAddr(string(f))
		if err != nil || a.Zone() != "" || (proto == "TCP4") != a.Is4() {
			return netip.AddrPort{}, fmt.Errorf("%w: v1 %s address %q", ErrProxyHeader, proto, f)
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, f := range fields[4:6] {
		p, ok := parseProxyPort(f)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("%w: v1 port %q: expected 0 to 65535", ErrProxyHeader, f)
		}
		ports[i] = p
	}
	return netip.AddrPortFrom(addrs[0], ports[0]), nil
}

// parseProxyPort reads a decimal port without sign or leading zeros.
func parseProxyPort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(n), err == nil
}

// readProxyV2 parses the binary header: signature, version/command,
// family/transport, length, addresses, then TLVs (skipped).
func readProxyV2(br *bufio.Reader) (netip.AddrPort, error) {
	var head [proxyV2HeadLen]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 header cut off: %v", ErrProxyHeader, err)
	}
	if head[12]>>4 != 2 {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 version %d", ErrProxyHeader, head[12]>>4)
	}
	cmd := head[12] & 0x0f
	if cmd > 1 {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 command %d: expected LOCAL (0) or PROXY (1)", ErrProxyHeader, cmd)
	}
	family, transport := head[13]>>4, head[13]&0x0f
	n := int(binary.BigEndian.Uint16(head[14:16]))
	var need int
	switch family {
	case 1: // AF_INET
		need = 12
	case 2: // AF_INET6
		need = 36
	case 0, 3: // AF_UNSPEC, AF_UNIX: no address to use
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: v2 address family %d", ErrProxyHeader, family)
	}
	if n < need {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 length %d is shorter than its addresses (%d)", ErrProxyHeader, n, need)
	}
	body := make([]byte, need)
	if _, err := io.ReadFull(br, body); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 addresses cut off: %v", ErrProxyHeader, err)
	}
	if _, err := br.Discard(n - need); err != nil { // TLVs
		return netip.AddrPort{}, fmt.Errorf("%w: v2 TLVs cut off: %v", ErrProxyHeader, err)
	}
	if cmd == 0 || need == 0 || transport != 1 {
		// LOCAL (the balancer's own check), no address, or not TCP.
		return netip.AddrPort{}, nil
	}
	if family == 1 {
		a := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:10])), nil
	}
	a := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:34])), nil
}

// proxyListener looks for a PROXY protocol header on connections from
// trusted peers. Other connections are returned as they are, so the HTTP
// server sends files from them by sendfile as before.
type proxyListener struct {
	net.Listener
	trusted func() trustedProxies
	log     *slog.Logger
	wait    time.Duration // for the header
}

// ProxyListener wraps an edge listener so that trusted peers (the
// trusted_proxies in force at accept time, so a reload applies to new
// connections) may send a PROXY protocol v1 or v2 header. The header is
// read by the connection's own goroutine, on its first Read or
// RemoteAddr, within 10 s; a malformed one closes the connection.
func (s *Server) ProxyListener(ln net.Listener) net.Listener {
	return newProxyListener(ln, func() trustedProxies { return s.state.Load().trusted }, s.log)
}

func newProxyListener(ln net.Listener, trusted func() trustedProxies, log *slog.Logger) *proxyListener {
	if log == nil {
		log = slog.Default()
	}
	return &proxyListener{Listener: ln, trusted: trusted, log: log, wait: proxyHeaderWait}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tp := l.trusted()
	if len(tp) == 0 {
		return c, nil
	}
	peer := peerAddr(c.RemoteAddr().String())
	if !tp.contains(peer) {
		return c, nil
	}
	return &proxyConn{Conn: c, log: l.log, wait: l.wait}, nil
}

// proxyConn is a connection from a trusted peer whose PROXY header (if
// any) is read lazily, in the connection's goroutine.
type proxyConn struct {
	net.Conn
	log  *slog.Logger
	wait time.Duration
	once sync.Once
	br   *bufio.Reader
	src  net.Addr // from the header; nil: the socket's peer
	err  error
}

func (c *proxyConn) init() {
	c.once.Do(func() {
		c.br = bufio.NewReaderSize(c.Conn, 512)
		c.Conn.SetReadDeadline(time.Now().Add(c.wait))
		src, found, err := readProxyHeader(c.br)
		c.Conn.SetReadDeadline(time.Time{})
		if err != nil {
			c.err = err
			if errors.Is(err, ErrProxyHeader) {
				c.log.Warn("PROXY protocol header rejected", "peer", c.Conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		if found && src.IsValid() {
			c.src = net.TCPAddrFromAddrPort(src)
		}
	})
}

func (c *proxyConn) Read(b []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(b)
}

// RemoteAddr is the viewer's address from the PROXY header, or the peer.
func (c *proxyConn) RemoteAddr() net.Addr {
	c.init()
	if c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}

// ReadFrom lets net/http send files from this connection by sendfile.
func (c *proxyConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite lets net/http half-close as it does on a *net.TCPConn.
func (c *proxyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// writerOnly hides a ReadFrom method, so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }
