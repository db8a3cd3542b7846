package shaping

import (
	"strings"
	"testing"
)

// stonExamples are the throttling.txt lines of STON's chapter; the fuzz
// seeds and the sample file testdata/throttling/ston-examples.txt hold them.
var stonExamples = []string{
	"$IP[192.168.1.1], 2000, 150, 3",
	"!HEADER[referer], 800",
	"HEADER[cookie], , , 10",
	"$URL[*.m4a], no",
	"$URL[/vod/*.mp4], 1000x, 120, 5",
	"!HEADER[user-agent], 500x",
	"$URL[/low_quality/*], x, 200",
}

// aclExamples are the other condition forms DESIGN.md names.
var aclExamples = []string{
	"$IP[192.168.2.1-255]",
	"$IP[10.0.0.0/24], 500",
	"$IP[10.0.0.0/255.255.255.0], , 120",
	"$IP[2001:db8::/32], no",
	"$HEADER[referer:], 100",
	"$HEADER[user-agent: *Mobile*], 1500x, 120, 3",
	"/vod/*.mp4, , 120",
	"!$HEADER[referer] & !$URL[/public/*], 1, 1, 1",
	"$IP[1.1.1.1], 500 # trailing comment",
}

func FuzzParseRules(f *testing.F) {
	for _, s := range stonExamples {
		f.Add(s)
	}
	for _, s := range aclExamples {
		f.Add(s)
	}
	f.Add(strings.Join(stonExamples, "\n"))
	f.Add("# comment\n\n$IP[1.2.3.4]]\n")
	f.Add("$HEADER[x: a#b,c&d], 7\n/a]b/*, , , 0.5\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := ParseRules("fuzz.txt", strings.NewReader(text))
		if err != nil {
			se, ok := err.(*SyntaxError)
			if !ok || se.Line < 1 || se.Col < 1 || se.Msg == "" {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		for i := range rs.Rules {
			r := &rs.Rules[i]
			if len(r.Conds) == 0 {
				t.Fatalf("rule without a condition: %+v", r)
			}
			if r.Bandwidth.Set && !r.Bandwidth.FromMedia && !(r.Bandwidth.Value > 0) {
				t.Fatalf("bandwidth %v", r.Bandwidth.Value)
			}
		}
		checkRoundTrip(t, rs)
		// Matching never panics.
		for _, r := range fuzzRequests {
			rs.Match(r)
		}
	})
}

var fuzzRequests = []*Request{
	{},
	mkreq("192.168.1.1", "/vod/a.mp4", "Referer", "x", "Cookie", ""),
	mkreq("2001:db8::1", "/a.m4a", "User-Agent", "Mobile"),
	mkreq("::ffff:10.0.0.1", ""),
}
