package edge

import (
	"strings"
	"testing"
)

func testHostTable() (*hostTable, map[string]*vhost) {
	vs := map[string]*vhost{}
	for _, n := range []string{"default", "www", "wild", "deep", "ip", "ip6"} {
		vs[n] = &vhost{name: n}
	}
	t := newHostTable()
	t.def = vs["default"]
	t.add("www.example.com", vs["www"])
	t.add("*.example.com", vs["wild"])
	t.add("*.cdn.example.com", vs["deep"])
	t.add("127.0.0.1", vs["ip"])
	t.add("[::1]", vs["ip6"])
	return t, vs
}

func TestHostLookup(t *testing.T) {
	tab, _ := testHostTable()
	for _, tc := range []struct{ host, want string }{
		{"www.example.com", "www"},
		{"WWW.Example.COM", "www"},
		{"www.example.com:8080", "www"},
		{"www.example.com.", "www"},
		{"img.example.com", "wild"},
		{"a.b.example.com", "wild"},
		{"x.cdn.example.com", "deep"}, // the longest suffix wins
		{"cdn.example.com", "wild"},
		{"example.com", "default"}, // "*.example.com" wants a label before it
		{"notexample.com", "default"},
		{"127.0.0.1:80", "ip"},
		{"[::1]:8080", "ip6"},
		{"[::1]", "ip6"},
		{"", "default"},
		{"www.example.com:80:80", "default"},
		{"www.example.com:http", "default"},
		{"bad host", "default"},
		{"[::1", "default"},
		{".example.com", "default"},
	} {
		if got := tab.lookup(tc.host); got == nil || got.name != tc.want {
			t.Errorf("lookup(%q) = %v, want %s", tc.host, got, tc.want)
		}
	}
	// "*" takes what no name claims, before the default vhost.
	star := &vhost{name: "star"}
	tab.add("*", star)
	if got := tab.lookup("other.org"); got != star {
		t.Errorf("with a \"*\" vhost: lookup(other.org) = %v", got)
	}
	if got := tab.lookup("www.example.com"); got.name != "www" {
		t.Errorf("with a \"*\" vhost: lookup(www.example.com) = %v", got)
	}
}

func FuzzHostLookup(f *testing.F) {
	for _, s := range []string{"www.example.com", "A.B.EXAMPLE.COM:99", "[::1]:1", "[", "]:", "...", "*.example.com", "x.cdn.example.com.", "127.0.0.1:65536"} {
		f.Add(s)
	}
	tab, vs := testHostTable()
	f.Fuzz(func(t *testing.T, host string) {
		got := tab.lookup(host)
		if got == nil {
			t.Fatalf("lookup(%q) = nil with a default vhost", host)
		}
		// Case never matters.
		if other := tab.lookup(asciiUpper(host)); other != got {
			t.Fatalf("lookup(%q) = %s but lookup(upper) = %s", host, got.name, other.name)
		}
		h := normalizeHost(host)
		if h != asciiLower(h) || strings.HasSuffix(h, ".") {
			t.Fatalf("normalizeHost(%q) = %q", host, h)
		}
		// A wildcard match is a real suffix match.
		switch got {
		case vs["wild"]:
			if !strings.HasSuffix(h, ".example.com") || len(h) <= len(".example.com") {
				t.Fatalf("%q (normalized %q) matched *.example.com", host, h)
			}
		case vs["www"]:
			if h != "www.example.com" {
				t.Fatalf("%q (normalized %q) matched www.example.com", host, h)
			}
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
