package shaping

import (
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzDecide runs the STON rules against random requests and queries: it
// never panics, a throttled policy always has a usable rate, "no" always
// wins, and the stripped query holds no override parameter.
func FuzzDecide(f *testing.F) {
	f.Add("myboost=10&mybandwidth=1&myratio=130", "/video/sample.wmv", "1.2.3.4", "", "", 0.0)
	f.Add("myratio=150", "/video/sample.wmv", "192.168.1.1", "r", "c", 0.0)
	f.Add("mybandwidth=2000&myratio=130&myboost=10", "/video.mp4", "::1", "", "c", 1e6)
	f.Add("tag=3277&myboost=10&date=20130726", "/video.mp4", "10.0.0.1", "r", "", 0.0)
	f.Add("mybandwidth=-1&myratio=1e999&myboost=NaN", "/vod/a.mp4", "192.168.1.1", "r", "", 8e5)
	f.Add("myboost=99999999999999999999999", "/a.m4a", "1.1.1.1", "", "", -1.0)
	f.Add("mybandwidth=0.000001&myratio=0.0000001", "/low_quality/x", "1.1.1.1", "r", "c", math.Inf(1))
	rules := mustParse(f, strings.Join(stonExamples, "\n"))
	f.Fuzz(func(t *testing.T, rawQuery, path, ip, referer, cookie string, media float64) {
		req := &Request{Path: path, Header: http.Header{}}
		if a, err := netip.ParseAddr(ip); err == nil {
			req.Addr = a
		}
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		q, _ := url.ParseQuery(rawQuery)
		for _, s := range []Settings{stonSettings(), stonQuerySettings()} {
			p := Decide(s, rules, req, q, media)
			if p.Throttled {
				if !(p.RateBytesPerSec > 0) || math.IsInf(p.RateBytesPerSec, 0) || p.BoostBytes < 0 {
					t.Fatalf("bad policy %+v", p)
				}
			} else if p.RateBytesPerSec != 0 || p.BoostBytes != 0 {
				t.Fatalf("unthrottled policy with figures %+v", p)
			}
			if m := rules.Match(req); m != p.Rule {
				t.Fatalf("policy rule %v, Match %v", p.Rule, m)
			}
			if p.Rule != nil && p.Rule.NoThrottle && p.Throttled {
				t.Fatalf("'no' did not win: %+v", p)
			}
		}
		stripped := StripParams(rawQuery, "mybandwidth", "myratio", "myboost")
		if len(stripped) > len(rawQuery) {
			t.Fatalf("StripParams grew %q to %q", rawQuery, stripped)
		}
		sq, _ := url.ParseQuery(stripped)
		for _, n := range []string{"mybandwidth", "myratio", "myboost"} {
			if _, ok := sq[n]; ok {
				t.Fatalf("StripParams(%q) = %q keeps %s", rawQuery, stripped, n)
			}
		}
		// Every other parameter survives, in order.
		var kept []string
		for seg := range strings.SplitSeq(rawQuery, "&") {
			if !isParam(seg, []string{"mybandwidth", "myratio", "myboost"}) {
				kept = append(kept, seg)
			}
		}
		if want := strings.Join(kept, "&"); stripped != want {
			t.Fatalf("StripParams(%q) = %q, want %q", rawQuery, stripped, want)
		}
	})
}
