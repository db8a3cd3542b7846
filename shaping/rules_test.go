package shaping

import (
	"errors"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// mkreq builds a request: client address, path, then header name/value
// pairs.
func mkreq(ip, path string, header ...string) *Request {
	r := &Request{Path: path, Header: http.Header{}}
	if ip != "" {
		r.Addr = netip.MustParseAddr(ip)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func mustParse(t testing.TB, text string) *Rules {
	t.Helper()
	rs, err := ParseRules("throttling.txt", strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseRules(%q): %v", text, err)
	}
	return rs
}

// TestConditionMatching checks each condition form of STON's acl.txt
// syntax against requests that must and must not match.
func TestConditionMatching(t *testing.T) {
	for _, tc := range []struct {
		cond  string
		match []*Request
		miss  []*Request
	}{
		{"$IP[192.168.1.1]",
			[]*Request{mkreq("192.168.1.1", "/"), mkreq("::ffff:192.168.1.1", "/")},
			[]*Request{mkreq("192.168.1.2", "/"), mkreq("", "/"), mkreq("::1", "/")}},
		{"$IP[192.168.2.1-255]",
			[]*Request{mkreq("192.168.2.1", "/"), mkreq("192.168.2.128", "/"), mkreq("192.168.2.255", "/")},
			[]*Request{mkreq("192.168.2.0", "/"), mkreq("192.168.3.1", "/"), mkreq("192.168.1.255", "/")}},
		{"$IP[10.0.0.5-10.0.1.7]",
			[]*Request{mkreq("10.0.0.5", "/"), mkreq("10.0.0.255", "/"), mkreq("10.0.1.7", "/")},
			[]*Request{mkreq("10.0.0.4", "/"), mkreq("10.0.1.8", "/")}},
		{"$IP[10.0.0.0/24]",
			[]*Request{mkreq("10.0.0.0", "/"), mkreq("10.0.0.77", "/"), mkreq("10.0.0.255", "/")},
			[]*Request{mkreq("10.0.1.0", "/"), mkreq("9.255.255.255", "/")}},
		{"$IP[10.0.0.0/255.255.255.0]",
			[]*Request{mkreq("10.0.0.1", "/"), mkreq("10.0.0.254", "/")},
			[]*Request{mkreq("10.0.1.1", "/")}},
		{"$IP[192.168.4.0/255.255.252.0]",
			[]*Request{mkreq("192.168.4.1", "/"), mkreq("192.168.7.254", "/")},
			[]*Request{mkreq("192.168.8.1", "/"), mkreq("192.168.3.1", "/")}},
		{"$IP[2001:db8::/32]",
			[]*Request{mkreq("2001:db8::1", "/"), mkreq("2001:db8:ffff::1", "/")},
			[]*Request{mkreq("2001:db9::1", "/"), mkreq("10.0.0.1", "/")}},
		{"$IP[2001:db8::1-ff]",
			[]*Request{mkreq("2001:db8::1", "/"), mkreq("2001:db8::ff", "/")},
			[]*Request{mkreq("2001:db8::100", "/"), mkreq("2001:db8::", "/")}},
		{"$IP[::1]",
			[]*Request{mkreq("::1", "/")},
			[]*Request{mkreq("127.0.0.1", "/")}},
		{"!$IP[10.0.0.0/8]",
			[]*Request{mkreq("11.0.0.1", "/"), mkreq("", "/")},
			[]*Request{mkreq("10.1.2.3", "/")}},
		{"$HEADER[cookie]",
			[]*Request{mkreq("", "/", "Cookie", "a=1"), mkreq("", "/", "cookie", "")},
			[]*Request{mkreq("", "/"), mkreq("", "/", "Cookie2", "x")}},
		{"HEADER[cookie]", // STON's own examples omit the '$'
			[]*Request{mkreq("", "/", "Cookie", "a=1")},
			[]*Request{mkreq("", "/")}},
		{"$header[X-Forwarded-Proto]",
			[]*Request{mkreq("", "/", "x-forwarded-proto", "https")},
			[]*Request{mkreq("", "/")}},
		{"$HEADER[referer:]",
			[]*Request{mkreq("", "/", "Referer", ""), mkreq("", "/", "Referer", "  ")},
			[]*Request{mkreq("", "/"), mkreq("", "/", "Referer", "http://a/")}},
		{"$HEADER[user-agent: *Mobile*]",
			[]*Request{mkreq("", "/", "User-Agent", "Mozilla/5.0 (iPhone) Mobile/15E148"), mkreq("", "/", "User-Agent", "mobile"),
				mkreq("", "/", "User-Agent", "curl", "User-Agent", "x MOBILE y")},
			[]*Request{mkreq("", "/"), mkreq("", "/", "User-Agent", "Mozilla/5.0 (X11)")}},
		{"$HEADER[referer: http://www.example.com/*]",
			[]*Request{mkreq("", "/", "Referer", "http://www.example.com/"), mkreq("", "/", "Referer", "HTTP://WWW.EXAMPLE.COM/a/b")},
			[]*Request{mkreq("", "/", "Referer", "http://evil.com/http://www.example.com/"), mkreq("", "/")}},
		{"$HEADER[x-token: abc]",
			[]*Request{mkreq("", "/", "X-Token", "abc"), mkreq("", "/", "X-Token", " ABC ")},
			[]*Request{mkreq("", "/", "X-Token", "abcd"), mkreq("", "/", "X-Token", "")}},
		{"!HEADER[referer]",
			[]*Request{mkreq("", "/")},
			[]*Request{mkreq("", "/", "Referer", "http://a/")}},
		{"$URL[/vod/*.mp4]",
			[]*Request{mkreq("", "/vod/a.mp4"), mkreq("", "/vod/x/y/z.mp4"), mkreq("", "/vod/.mp4")},
			[]*Request{mkreq("", "/vod/a.mp3"), mkreq("", "/live/vod/a.mp4"), mkreq("", "/vod/a.mp4.txt"), mkreq("", "/VOD/a.mp4")}},
		{"/vod/*.mp4", // the $URL prefix may be dropped
			[]*Request{mkreq("", "/vod/a.mp4")},
			[]*Request{mkreq("", "/vod/a.m4a")}},
		{"$URL[*.m4a]",
			[]*Request{mkreq("", "/a.m4a"), mkreq("", "/x/y/b.m4a")},
			[]*Request{mkreq("", "/a.m4a/x"), mkreq("", "/a.mp4")}},
		{"$URL[/low_quality/*]",
			[]*Request{mkreq("", "/low_quality/"), mkreq("", "/low_quality/a/b.mp4")},
			[]*Request{mkreq("", "/low_quality"), mkreq("", "/high_quality/a.mp4")}},
		{"$URL[/a/*/b/*/c]",
			[]*Request{mkreq("", "/a/x/b/y/c"), mkreq("", "/a//b//c"), mkreq("", "/a/b/b/c/c")},
			[]*Request{mkreq("", "/a/x/b/c"), mkreq("", "/a/b/c")}},
		{"$URL[/exact.mp4]",
			[]*Request{mkreq("", "/exact.mp4")},
			[]*Request{mkreq("", "/exact.mp4x"), mkreq("", "/x/exact.mp4")}},
		{"*",
			[]*Request{mkreq("", "/"), mkreq("", "/anything")},
			nil},
		{"!$HEADER[referer] & !$URL[/public/*]",
			[]*Request{mkreq("", "/private/a.mp4")},
			[]*Request{mkreq("", "/public/a.mp4"), mkreq("", "/private/a.mp4", "Referer", "x")}},
		{"$IP[10.0.0.0/8] & $HEADER[x-vip: yes] & /vod/*",
			[]*Request{mkreq("10.1.1.1", "/vod/a.mp4", "X-Vip", "YES")},
			[]*Request{mkreq("11.1.1.1", "/vod/a.mp4", "X-Vip", "yes"), mkreq("10.1.1.1", "/live/a.mp4", "X-Vip", "yes"),
				mkreq("10.1.1.1", "/vod/a.mp4", "X-Vip", "no")}},
		{"/a/*.mp4&$IP[1.2.3.4]",
			[]*Request{mkreq("1.2.3.4", "/a/b.mp4")},
			[]*Request{mkreq("1.2.3.5", "/a/b.mp4")}},
	} {
		rs := mustParse(t, tc.cond+", 100\n")
		if rs.Len() != 1 {
			t.Fatalf("%s: %d rules", tc.cond, rs.Len())
		}
		for _, r := range tc.match {
			if rs.Match(r) == nil {
				t.Errorf("%s: does not match %+v", tc.cond, *r)
			}
		}
		for _, r := range tc.miss {
			if rs.Match(r) != nil {
				t.Errorf("%s: matches %+v", tc.cond, *r)
			}
		}
	}
}

// TestParseFields checks the figure fields: omitted ones, no, x, NNNx,
// comments and blanks.
func TestParseFields(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Rule // Conds not compared
	}{
		{"$IP[192.168.1.1], 2000, 150, 3", Rule{Bandwidth: Bandwidth{Set: true, Value: 2000}, Ratio: Figure{true, 150}, Boost: Figure{true, 3}}},
		{"!HEADER[referer], 800", Rule{Bandwidth: Bandwidth{Set: true, Value: 800}}},
		{"HEADER[cookie], , , 10", Rule{Boost: Figure{true, 10}}},
		{"$URL[*.m4a], no", Rule{NoThrottle: true}},
		{"$URL[*.m4a], NO, ,", Rule{NoThrottle: true}},
		{"$URL[/vod/*.mp4], 1000x, 120, 5", Rule{Bandwidth: Bandwidth{Set: true, Value: 1000, FromMedia: true}, Ratio: Figure{true, 120}, Boost: Figure{true, 5}}},
		{"!HEADER[user-agent], 500x", Rule{Bandwidth: Bandwidth{Set: true, Value: 500, FromMedia: true}}},
		{"$URL[/low_quality/*], x, 200", Rule{Bandwidth: Bandwidth{Set: true, FromMedia: true}, Ratio: Figure{true, 200}}},
		{"$IP[1.1.1.1], 500", Rule{Bandwidth: Bandwidth{Set: true, Value: 500}}},
		{"/vod/*.mp4, , 120", Rule{Ratio: Figure{true, 120}}},
		{"/vod/*.mp4", Rule{}},
		{"/vod/*.mp4,", Rule{}},
		{"/vod/*.mp4, , , ", Rule{}},
		{"  $IP[1.1.1.1]  ,  1.5 ,\t99.5 , 0  # trailing comment", Rule{Bandwidth: Bandwidth{Set: true, Value: 1.5}, Ratio: Figure{true, 99.5}, Boost: Figure{true, 0}}},
		{"/vod/*.mp4#comment right after", Rule{}},
		{"$HEADER[x-tag: a#b,c&d], 7 # '#' ',' '&' inside [...] are literal", Rule{Bandwidth: Bandwidth{Set: true, Value: 7}}},
		{"$URL[/a,b/*], 1X", Rule{Bandwidth: Bandwidth{Set: true, Value: 1, FromMedia: true}}},
	} {
		rs := mustParse(t, tc.line)
		if rs.Len() != 1 {
			t.Fatalf("%q: %d rules", tc.line, rs.Len())
		}
		got := rs.Rules[0]
		got.Conds, got.Line = nil, 0
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.line, got, tc.want)
		}
	}
}

func TestParseValuesInsideBrackets(t *testing.T) {
	rs := mustParse(t, "$HEADER[x-tag: a#b,c&d], 7\n$URL[/a,b/*], 1\n")
	if rs.Match(mkreq("", "/", "X-Tag", "A#B,C&D")) != &rs.Rules[0] {
		t.Error("header value with # , & does not match")
	}
	if rs.Match(mkreq("", "/a,b/c")) != &rs.Rules[1] {
		t.Error("URL with ',' does not match")
	}
}

func TestParseSkipsBlanksAndComments(t *testing.T) {
	text := "\uFEFF# comment\n\n   \n\t# indented comment\r\n$IP[1.2.3.4], 10\r\n# end"
	rs := mustParse(t, text)
	if rs.Len() != 1 || rs.Rules[0].Line != 5 {
		t.Fatalf("got %+v", rs)
	}
	rs = mustParse(t, "")
	if rs.Len() != 0 {
		t.Fatal("empty file has rules")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		text      string
		line, col int
		msg       string
	}{
		{"$IP[10.0.0.1, 500", 1, 18, "expected ']' to close $IP["},
		{"# c\n\n$IP[1.", 3, 7, "expected ']' to close $IP["},
		{"$HEADER[cookie, 1", 1, 18, "expected ']' to close $HEADER["},
		{"$IP[], 1", 1, 5, "expected an IP address"},
		{"$IP[1.2.3.4.5]", 1, 5, "expected an IP address, range"},
		{"$IP[KR], 1", 1, 5, "GeoIP country codes"},
		{"$IP[10.0.0.0/33]", 1, 14, "prefix length of 0 to 32"},
		{"$IP[10.0.0.0/255.0.255.0]", 1, 14, "contiguous netmask"},
		{"$IP[2001:db8::/ffff::]", 1, 16, "prefix length or an IPv4 netmask"},
		{"$IP[10.0.0.9-3]", 1, 14, "not below its start"},
		{"$IP[10.0.0.1-256]", 1, 14, "last octet"},
		{"$IP[10.0.0.1-]", 1, 14, "last octet"},
		{"$IP[10.0.0.1-::1]", 1, 14, "same address family"},
		{"$IP[fe80::1%eth0]", 1, 5, "without a zone"},
		{"$IP [1.2.3.4]", 1, 4, "expected '[' after $IP"},
		{"$IPP[1.2.3.4]", 1, 1, `unknown condition "$IPP"`},
		{"$HEADER[], 1", 1, 9, "expected a header name"},
		{"$HEADER[bad name: x]", 1, 12, "expected a header name"},
		{"$URL[], 1", 1, 6, "expected a URL pattern"},
		{"$URL[vod/*.mp4], 1", 1, 6, "starting with '/' or '*'"},
		{"vod/*.mp4, 1", 1, 1, "expected a condition"},
		{"!, 1", 1, 2, "expected a condition"},
		{"$IP[1.2.3.4] &, 1", 1, 15, "expected a condition"},
		{"$IP[1.2.3.4] x, 1", 1, 14, `expected '&', ',' or the end of the line after the condition, got "x"`},
		{"$IP[1.2.3.4], 500kbps", 1, 18, "without a unit"},
		{"$IP[1.2.3.4], 1.5.5", 1, 18, "expected a bandwidth"},
		{"$IP[1.2.3.4], fast", 1, 15, "expected a bandwidth"},
		{"$IP[1.2.3.4], -5", 1, 15, "expected a bandwidth"},
		{"$IP[1.2.3.4], 0", 1, 15, "greater than 0"},
		{"$IP[1.2.3.4], 0x", 1, 15, "greater than 0"},
		{"$IP[1.2.3.4], 1e3", 1, 16, "expected a bandwidth"},
		{"$IP[1.2.3.4], 10, abc", 1, 19, "expected a ratio in percent"},
		{"$IP[1.2.3.4], 10, 0", 1, 19, "ratio greater than 0"},
		{"$IP[1.2.3.4], 10, 100, -1", 1, 24, "expected a boost in seconds"},
		{"$IP[1.2.3.4], 10, 100, 5s", 1, 25, "expected a boost in seconds"},
		{"$IP[1.2.3.4], 10, 100, 5, 6", 1, 25, "at most 3 fields"},
		{"$IP[1.2.3.4], no, 100", 1, 19, "nothing after 'no'"},
		{"$IP[1.2.3.4], 1" + strings.Repeat("0", 400), 1, 15, "not so large"},
		{"/a\n$IP[1.2.3.4]]", 2, 13, "expected '&', ','"},
		{"$URL[/ä/ö], 1, x", 1, 16, "expected a ratio"}, // columns count characters
	} {
		_, err := ParseRules("throttling.txt", strings.NewReader(tc.text))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: got %v, want a *SyntaxError", tc.text, err)
			continue
		}
		if se.File != "throttling.txt" || se.Line != tc.line || se.Col != tc.col || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q:\n got %v\nwant throttling.txt:%d:%d: ...%s...", tc.text, err, tc.line, tc.col, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), se.File+":") {
			t.Errorf("%q: message %q does not start with the file name", tc.text, err)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	_, err := ParseRules("t.txt", strings.NewReader("/a, 1\n/"+strings.Repeat("a", maxLineBytes+10)))
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 2 {
		t.Fatalf("got %v", err)
	}
}

func TestLoadRules(t *testing.T) {
	for _, name := range []string{"ston-examples.txt", "default.txt"} {
		path := "../testdata/throttling/" + name
		rs, err := LoadRules(path)
		if err != nil {
			t.Fatal(err)
		}
		if rs.Len() == 0 || rs.Name != path {
			t.Fatalf("%s: %d rules, name %q", name, rs.Len(), rs.Name)
		}
		checkRoundTrip(t, rs)
	}
	if _, err := LoadRules("../testdata/throttling/missing.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// checkRoundTrip checks that rs.String() parses back to the same rules.
func checkRoundTrip(t testing.TB, rs *Rules) {
	t.Helper()
	text := rs.String()
	again, err := ParseRules("again", strings.NewReader(text))
	if err != nil {
		t.Fatalf("String() does not parse back: %v\n%s", err, text)
	}
	if again.String() != text {
		t.Fatalf("String() changes on re-parse:\n%s\n---\n%s", text, again.String())
	}
	if len(again.Rules) != len(rs.Rules) {
		t.Fatalf("String() has %d rules, want %d", len(again.Rules), len(rs.Rules))
	}
	for i := range rs.Rules {
		a, b := rs.Rules[i], again.Rules[i]
		a.Line, b.Line = 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("rule %d differs after String():\n%#v\n%#v", i, a, b)
		}
	}
}

func TestRulesString(t *testing.T) {
	rs := mustParse(t, `
$IP[192.168.1.1], 2000, 150, 3
!HEADER[referer], 800
HEADER[cookie], , , 10
$URL[*.m4a], no
$URL[/vod/*.mp4], 1000x, 120, 5
$URL[/low_quality/*], x, 200
$IP[192.168.2.1-255] & $IP[10.0.0.5/255.255.255.0] & $HEADER[a:] & $header[B:  c*d ]
/a]b/*.mp4, , , 0.25
`)
	want := `$IP[192.168.1.1], 2000, 150, 3
!$HEADER[referer], 800
$HEADER[cookie], , , 10
$URL[*.m4a], no
$URL[/vod/*.mp4], 1000x, 120, 5
$URL[/low_quality/*], x, 200
$IP[192.168.2.1-192.168.2.255] & $IP[10.0.0.0/24] & $HEADER[a:] & $HEADER[B: c*d]
/a]b/*.mp4, , , 0.25
`
	if got := rs.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	checkRoundTrip(t, rs)
	var nilRules *Rules
	if nilRules.String() != "" || nilRules.Len() != 0 || nilRules.Match(mkreq("", "/")) != nil {
		t.Fatal("nil *Rules is not empty")
	}
}

// TestFirstMatchWins runs the whole STON example file: the first rule that
// matches decides, later rules are not consulted.
func TestFirstMatchWins(t *testing.T) {
	rs, err := LoadRules("../testdata/throttling/ston-examples.txt")
	if err != nil {
		t.Fatal(err)
	}
	ua := []string{"User-Agent", "player", "Referer", "http://site/"}
	for _, tc := range []struct {
		r    *Request
		line int // 0: no rule
	}{
		{mkreq("192.168.1.1", "/a.m4a"), 9},                                    // IP first, though *.m4a and !referer match too
		{mkreq("192.168.1.2", "/a.mp4", "User-Agent", "p"), 12},                // no referer
		{mkreq("192.168.1.2", "/a.m4a", "User-Agent", "p", "Cookie", "c"), 12}, // no referer wins over cookie
		{mkreq("192.168.1.2", "/a.m4a", append(ua, "Cookie", "c")...), 15},     // cookie before *.m4a
		{mkreq("192.168.1.2", "/a.m4a", ua...), 18},
		{mkreq("192.168.1.2", "/vod/a.mp4", ua...), 22},
		{mkreq("192.168.1.2", "/low_quality/a.mp4", "Referer", "r"), 25}, // no user-agent
		{mkreq("192.168.1.2", "/low_quality/a.mp4", ua...), 29},
		{mkreq("192.168.1.2", "/other.mp4", ua...), 0},
	} {
		got := rs.Match(tc.r)
		line := 0
		if got != nil {
			line = got.Line
		}
		if line != tc.line {
			t.Errorf("%+v: matched line %d, want %d", *tc.r, line, tc.line)
		}
	}
}
