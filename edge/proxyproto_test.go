package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// proxyV2 builds a version 2 header.
func proxyV2(cmd, famProto byte, addrs []byte, tlv []byte) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, famProto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlv)))
	b = append(b, addrs...)
	return append(b, tlv...)
}

func v2inet(src, dst string, sport, dport uint16) []byte {
	var b []byte
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func TestReadProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		want  string // source address:port, "" when the peer is to be used
		found bool
		bad   bool
		rest  string // what the HTTP server reads next
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n"), "203.0.113.9:56324", true, false, "GET / HTTP/1.1\r\n"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 1 2\r\nGET"), "[2001:db8::9]:1", true, false, "GET"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\nGET"), "", true, false, "GET"},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET"), "", true, false, "GET"},
		{"no header: GET", []byte("GET / HTTP/1.1\r\n"), "", false, false, "GET / HTTP/1.1\r\n"},
		{"no header: POST", []byte("POST / HTTP/1.1\r\n"), "", false, false, "POST / HTTP/1.1\r\n"},
		{"no header: PUT", []byte("PUT /x HTTP/1.1\r\n"), "", false, false, "PUT /x HTTP/1.1\r\n"},
		{"no header: CRLF first", []byte("\r\nGET / HTTP/1.1\r\n"), "", false, false, "\r\nGET / HTTP/1.1\r\n"},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::9 192.0.2.1 1 2\r\n"), "", true, true, ""},
		{"v1 bad port", []byte("PROXY TCP4 203.0.113.9 192.0.2.1 65536 443\r\n"), "", true, true, ""},
		{"v1 leading zero port", []byte("PROXY TCP4 203.0.113.9 192.0.2.1 080 443\r\n"), "", true, true, ""},
		{"v1 too few fields", []byte("PROXY TCP4 203.0.113.9\r\n"), "", true, true, ""},
		{"v1 no CRLF", []byte("PROXY TCP4 203.0.113.9 192.0.2.1 1 2\n"), "", true, true, ""},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n"), "", true, true, ""},
		{"v1 cut off", []byte("PROXY TCP4 203.0.113.9"), "", true, true, ""},
		{"v2 inet", append(proxyV2(1, 0x11, v2inet("203.0.113.9", "192.0.2.1", 4711, 443), nil), "GET"...), "203.0.113.9:4711", true, false, "GET"},
		{"v2 inet6 with TLVs", append(proxyV2(1, 0x21, v2inet("2001:db8::9", "2001:db8::1", 7, 443), []byte{0x01, 0, 2, 'h', '2'}), "GET"...), "[2001:db8::9]:7", true, false, "GET"},
		{"v2 local", append(proxyV2(0, 0x00, nil, nil), "GET"...), "", true, false, "GET"},
		{"v2 unspec", append(proxyV2(1, 0x00, nil, []byte{1, 2, 3}), "GET"...), "", true, false, "GET"},
		{"v2 udp is not a viewer", append(proxyV2(1, 0x12, v2inet("203.0.113.9", "192.0.2.1", 1, 2), nil), "GET"...), "", true, false, "GET"},
		{"v2 short length", proxyV2(1, 0x11, v2inet("203.0.113.9", "192.0.2.1", 1, 2)[:8], nil), "", true, true, ""},
		{"v2 bad version", append(append([]byte(nil), proxyV2Sig...), 0x31, 0x11, 0, 0), "", true, true, ""},
		{"v2 bad command", append(append([]byte(nil), proxyV2Sig...), 0x22, 0x11, 0, 0), "", true, true, ""},
		{"v2 bad family", append(append([]byte(nil), proxyV2Sig...), 0x21, 0x41, 0, 0), "", true, true, ""},
		{"v2 cut off", proxyV2(1, 0x11, v2inet("203.0.113.9", "192.0.2.1", 1, 2), nil)[:20], "", true, true, ""},
	} {
		br := bufio.NewReaderSize(bytes.NewReader(tc.in), 512)
		src, found, err := readProxyHeader(br)
		if tc.bad {
			if !errors.Is(err, ErrProxyHeader) {
				t.Errorf("%s: err = %v, want ErrProxyHeader", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := ""
		if src.IsValid() {
			got = src.String()
		}
		if got != tc.want || found != tc.found {
			t.Errorf("%s: got %q found=%v, want %q found=%v", tc.name, got, found, tc.want, tc.found)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != tc.rest {
			t.Errorf("%s: the server would read %q next, want %q", tc.name, rest, tc.rest)
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::9 2001:db8::1 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(proxyV2(1, 0x11, v2inet("203.0.113.9", "192.0.2.1", 4711, 443), nil))
	f.Add(proxyV2(1, 0x21, v2inet("2001:db8::9", "2001:db8::1", 7, 443), []byte{1, 0, 2, 'h', '2'}))
	f.Add(proxyV2(0, 0x31, make([]byte, 216), nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 512)
		src, found, err := readProxyHeader(br)
		if err != nil {
			if len(in) > 0 && !errors.Is(err, ErrProxyHeader) {
				t.Fatalf("%q: error %v does not wrap ErrProxyHeader", in, err)
			}
			return
		}
		if !found {
			// Nothing consumed: the HTTP server sees every byte.
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, in) {
				t.Fatalf("no header found in %q, but %d bytes were consumed", in, len(in)-len(rest))
			}
			return
		}
		if src.IsValid() && src.Addr().Zone() != "" {
			t.Fatalf("%q: address with a zone %v", in, src)
		}
	})
}

// TestProxyListener runs an HTTP server behind the listener: a trusted
// peer's PROXY header sets RemoteAddr, an untrusted peer's is not read, a
// malformed one closes the connection, and a silent one times out.
func TestProxyListener(t *testing.T) {
	var trusted atomic.Pointer[trustedProxies]
	setTrusted := func(list ...string) {
		tp, err := parseTrustedProxies(list)
		if err != nil {
			t.Fatal(err)
		}
		trusted.Store(&tp)
	}
	setTrusted("127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := newProxyListener(ln, func() trustedProxies { return *trusted.Load() }, nil)
	pl.wait = 200 * time.Millisecond // a short wait for the test
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(pl)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	ask := func(prefix []byte) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(append(prefix, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", errors.New(resp.Status)
		}
		return string(b), nil
	}
	if got, err := ask([]byte("PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\n")); err != nil || got != "203.0.113.9:56324" {
		t.Errorf("v1 from a trusted peer: %q, %v", got, err)
	}
	if got, err := ask(proxyV2(1, 0x21, v2inet("2001:db8::9", "2001:db8::1", 7, 443), nil)); err != nil || got != "[2001:db8::9]:7" {
		t.Errorf("v2 from a trusted peer: %q, %v", got, err)
	}
	if got, err := ask(nil); err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("no header from a trusted peer: %q, %v", got, err)
	}
	if got, err := ask([]byte("PROXY TCP4 203.0.113.9 nonsense 1 2\r\n")); err == nil {
		t.Errorf("malformed header served: %q", got)
	}

	// A trusted peer that sends half a header is closed by the header
	// timeout, not left hanging.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("PROXY TCP4 "))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil || time.Since(start) > 3*time.Second || (len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 400"))) {
		t.Errorf("half a header: read %q, %v after %v, want a 400 or the connection closed", got, err, time.Since(start))
	}
	c.Close()

	// Not trusted: the header is the HTTP server's to reject (400).
	setTrusted("10.0.0.0/8")
	if got, err := ask([]byte("PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\n")); err == nil {
		t.Errorf("header from an untrusted peer believed: %q", got)
	}
	if got, err := ask(nil); err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("plain request from an untrusted peer: %q, %v", got, err)
	}
}
