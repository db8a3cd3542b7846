package edge

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	tp, err := parseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"untrusted peer: its header is ignored", "198.51.100.1", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer, one hop", "10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"rightmost untrusted", "10.1.2.3", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"several header lines", "192.0.2.7", []string{"1.1.1.1", "203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{"all trusted: the leftmost", "10.1.2.3", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"with ports", "::1", []string{"[2001:db8::5]:4711, 10.0.0.2:80"}, "2001:db8::5"},
		{"bracketed v6", "::1", []string{"[2001:db8::6]"}, "2001:db8::6"},
		{"malformed hop: the last good one", "10.1.2.3", []string{"203.0.113.9, junk, 10.0.0.5"}, "10.0.0.5"},
		{"malformed right away: the peer", "10.1.2.3", []string{"unknown"}, "10.1.2.3"},
		{"empty entries skipped", "10.1.2.3", []string{"203.0.113.9, , "}, "203.0.113.9"},
		{"no header", "10.1.2.3", nil, "10.1.2.3"},
		{"mapped peer", "::ffff:10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
	} {
		h := http.Header{}
		for _, v := range tc.xff {
			h.Add("X-Forwarded-For", v)
		}
		got := tp.clientAddr(a(tc.peer).Unmap(), h)
		if got != a(tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, got, tc.want)
		}
	}
	if _, err := parseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
	if got := peerAddr("[::ffff:127.0.0.1]:80"); got != a("127.0.0.1") {
		t.Errorf("peerAddr mapped = %v", got)
	}
}

func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.9", "1.1.1.1, 10.0.0.1", "[::1]:80, junk", ",,,", "10.0.0.1:99999", "[2001:db8::1%eth0]"} {
		f.Add(s)
	}
	tp, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := netip.MustParseAddr("10.0.0.1")
	f.Fuzz(func(t *testing.T, xff string) {
		got := tp.clientAddr(peer, http.Header{"X-Forwarded-For": {xff}})
		if !got.IsValid() {
			t.Fatalf("%q gave an invalid address", xff)
		}
		if got != peer && !strings.Contains(xff, got.String()) && !strings.Contains(strings.ToLower(xff), got.String()) {
			// Every answer is the peer or an address written in the header
			// (in some spelling that parses to it).
			found := false
			for _, hop := range strings.Split(xff, ",") {
				if a, ok := parseForwardedHop(strings.TrimSpace(hop)); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("%q gave %v, which it does not contain", xff, got)
			}
		}
	})
}
