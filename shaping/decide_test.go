package shaping

import (
	"net/url"
	"strings"
	"testing"
)

// stonSettings is the <Settings> of STON's "動作シナリオ" example, with
// <Throttling> ON: 1000 kbps, 100 %, 5 s.
func stonSettings() Settings {
	s := DefaultSettings()
	s.Throttling = true
	return s
}

// stonQuerySettings is the <Settings> of STON's QueryString example:
// <Bandwidth Param="mybandwidth" Unit="mbps">2</Bandwidth>,
// <Ratio Param="myratio">100</Ratio>, <Boost Param="myboost">3</Boost>,
// <Throttling QueryString="ON">ON</Throttling>.
func stonQuerySettings() Settings {
	return Settings{Throttling: true, Bandwidth: 2, Unit: "mbps", Ratio: 100, Boost: 3,
		QueryString: true, BandwidthParam: "mybandwidth", RatioParam: "myratio", BoostParam: "myboost"}
}

func policy(rate float64, boostSeconds float64) Policy {
	return Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: int64(rate * boostSeconds)}
}

func query(t testing.TB, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

type decideCase struct {
	name  string
	req   *Request
	query string
	media float64 // bit/s
	want  Policy  // Rule is not compared
}

func runDecide(t *testing.T, s Settings, rules *Rules, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		got := Decide(s, rules, tc.req, query(t, tc.query), tc.media)
		got.Rule = nil
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestDecideSTONExamples checks every throttling.txt example of STON's
// chapter, one rule file each, as the chapter's comments describe them, with
// requests that match and requests that fall through to the settings.
func TestDecideSTONExamples(t *testing.T) {
	const (
		kbps     = 125.0 // bytes/s
		defRate  = 1000 * kbps
		defBoost = 5
	)
	def := policy(defRate, defBoost)
	for _, ex := range []struct {
		rule  string
		cases []decideCase
	}{
		// "3秒のデータを速度制限なしで送信した後3Mbps(3000Kbps = 2000Kbps X 150%)"
		{"$IP[192.168.1.1], 2000, 150, 3", []decideCase{
			{"from 192.168.1.1", mkreq("192.168.1.1", "/a.mp4"), "", 0, policy(3000*kbps, 3)},
			{"from another address", mkreq("192.168.1.2", "/a.mp4"), "", 0, def},
		}},
		// bandwidth only: 5 (default) s unthrottled, then 800 kbps.
		{"!HEADER[referer], 800", []decideCase{
			{"no referer", mkreq("1.1.1.1", "/a.mp4"), "", 0, policy(800*kbps, 5)},
			{"with referer", mkreq("1.1.1.1", "/a.mp4", "Referer", "http://x/"), "", 0, def},
		}},
		// boost only: 10 s unthrottled, then 1000 kbps.
		{"HEADER[cookie], , , 10", []decideCase{
			{"with cookie", mkreq("1.1.1.1", "/a.mp4", "Cookie", "id=1"), "", 0, policy(1000*kbps, 10)},
			{"no cookie", mkreq("1.1.1.1", "/a.mp4"), "", 0, def},
		}},
		// .m4a: not throttled.
		{"$URL[*.m4a], no", []decideCase{
			{"m4a", mkreq("1.1.1.1", "/music/a.m4a"), "", 0, Policy{}},
			{"mp4", mkreq("1.1.1.1", "/music/a.mp4"), "", 0, def},
		}},
		// /vod/*.mp4: the media's rate, 1000 if unknown; 120 %, 5 s.
		{"$URL[/vod/*.mp4], 1000x, 120, 5", []decideCase{
			{"rate known", mkreq("1.1.1.1", "/vod/a.mp4"), "", 800000, policy(100000*1.2, 5)},
			{"rate unknown", mkreq("1.1.1.1", "/vod/a.mp4"), "", 0, policy(1000*kbps*1.2, 5)},
			{"elsewhere", mkreq("1.1.1.1", "/live/a.mp4"), "", 800000, def},
		}},
		// no user-agent: the media's rate, 500 if unknown.
		{"!HEADER[user-agent], 500x", []decideCase{
			{"rate known", mkreq("1.1.1.1", "/a.mp3"), "", 128000, policy(16000, 5)},
			{"rate unknown", mkreq("1.1.1.1", "/a.wmv"), "", 0, policy(500*kbps, 5)},
			{"with user-agent", mkreq("1.1.1.1", "/a.mp3", "User-Agent", "vlc"), "", 128000, def},
		}},
		// /low_quality/*: the media's rate, the default if unknown; 200 %.
		{"$URL[/low_quality/*], x, 200", []decideCase{
			{"rate known", mkreq("1.1.1.1", "/low_quality/a.mp4"), "", 400000, policy(100000, 5)},
			{"rate unknown", mkreq("1.1.1.1", "/low_quality/a.mp4"), "", 0, policy(2000*kbps, 5)},
			{"elsewhere", mkreq("1.1.1.1", "/high/a.mp4"), "", 400000, def},
		}},
	} {
		rules := mustParse(t, ex.rule)
		t.Run(ex.rule, func(t *testing.T) { runDecide(t, stonSettings(), rules, ex.cases) })
	}
}

// TestDecideSTONQueryString checks STON's QueryString examples: the
// parameters are in the vhost's unit (mbps there) and override the rules,
// missing ones come from the matched rule, then the settings, and a
// matched "no" still wins.
func TestDecideSTONQueryString(t *testing.T) {
	const mbps = 125000.0
	s := stonQuerySettings()
	sample := mkreq("1.1.1.1", "/video/sample.wmv")
	runDecide(t, s, nil, []decideCase{
		// "10秒のデータを速度制限なしで送信した後1.3Mbps(1mbps X 130%)"
		{"all three", sample, "myboost=10&mybandwidth=1&myratio=130", 0, policy(1.3*mbps, 10)},
		// "?myratio=150": bandwidth and boost from the rules, then the settings.
		{"ratio only", sample, "myratio=150", 0, policy(3*mbps, 3)},
		{"none", sample, "tag=3277&date=20130726", 0, policy(2*mbps, 3)},
		{"strip example 1", mkreq("1.1.1.1", "/video.mp4"), "mybandwidth=2000&myratio=130&myboost=10", 0, policy(2000*1.3*mbps, 10)},
		{"strip example 2", mkreq("1.1.1.1", "/video.mp4"), "tag=3277&myboost=10&date=20130726", 0, policy(2*mbps, 10)},
	})

	rules := mustParse(t, `
$URL[*.m4a], no
$URL[/video/*], 1, , 7
$URL[/media/*], 1000x, 50
`)
	runDecide(t, s, rules, []decideCase{
		{"rule fills bandwidth and boost", sample, "myratio=150", 0, policy(1*1.5*mbps, 7)},
		{"query beats rule", sample, "mybandwidth=4&myratio=50&myboost=1", 0, policy(4*0.5*mbps, 1)},
		{"query boost only", sample, "myboost=0", 0, policy(1*mbps, 0)},
		{"no wins over the query", mkreq("1.1.1.1", "/a.m4a"), "mybandwidth=4&myratio=50&myboost=1", 0, Policy{}},
		{"query bandwidth beats 1000x", mkreq("1.1.1.1", "/media/a.mp4"), "mybandwidth=3", 8000000, policy(3*0.5*mbps, 3)},
		{"1000x with media rate", mkreq("1.1.1.1", "/media/a.mp4"), "", 8000000, policy(8000000/8*0.5, 3)},
		{"1000x fallback in the vhost unit", mkreq("1.1.1.1", "/media/a.mp4"), "", 0, policy(1000*mbps*0.5, 3)},
		{"no rule, query ratio", mkreq("1.1.1.1", "/other"), "myratio=150", 0, policy(3*mbps, 3)},
	})

	// Bad values are ignored, never an error.
	runDecide(t, s, rules, []decideCase{
		{"negative", sample, "mybandwidth=-1&myratio=-5&myboost=-3", 0, policy(1*mbps, 7)},
		{"zero bandwidth and ratio", sample, "mybandwidth=0&myratio=0", 0, policy(1*mbps, 7)},
		{"words", sample, "mybandwidth=fast&myratio=lots&myboost=long", 0, policy(1*mbps, 7)},
		{"units", sample, "mybandwidth=3mbps&myboost=5s", 0, policy(1*mbps, 7)},
		{"inf and nan", sample, "mybandwidth=Inf&myratio=NaN&myboost=1e400", 0, policy(1*mbps, 7)},
		{"huge", sample, "mybandwidth=1" + strings.Repeat("0", 400), 0, policy(1*mbps, 7)},
		{"empty", sample, "mybandwidth=&myratio=&myboost=", 0, policy(1*mbps, 7)},
		{"first value counts", sample, "myratio=200&myratio=x", 0, policy(2*mbps, 7)},
		{"decimal", sample, "mybandwidth=0.5&myboost=2.5", 0, policy(0.5*mbps, 2.5)},
	})

	// QueryString off: the parameters mean nothing.
	off := s
	off.QueryString = false
	runDecide(t, off, nil, []decideCase{
		{"query off", sample, "myboost=10&mybandwidth=1&myratio=130", 0, policy(2*mbps, 3)},
	})
	// Custom parameter names.
	custom := s
	custom.BandwidthParam, custom.RatioParam, custom.BoostParam = "bw", "r", ""
	runDecide(t, custom, nil, []decideCase{
		{"custom names", sample, "bw=1&r=200&myboost=10", 0, policy(2*mbps, 3)},
	})
}

// TestDecideThrottlingOff: with <Throttling>OFF nothing is throttled, rules
// and query parameters notwithstanding (STON: "OFF: BTを適用しません").
func TestDecideThrottlingOff(t *testing.T) {
	s := stonQuerySettings()
	s.Throttling = false
	rules := mustParse(t, "*, 1, 100, 0")
	for _, rs := range []*Rules{nil, rules} {
		got := Decide(s, rs, mkreq("1.1.1.1", "/a.mp4"), query(t, "mybandwidth=1"), 1000)
		if got != (Policy{}) {
			t.Errorf("rules %v: got %+v", rs, got)
		}
	}
}

func TestDecideEdges(t *testing.T) {
	s := stonSettings()
	r := mkreq("1.1.1.1", "/a.mp4")
	// No rules: the settings.
	if got := Decide(s, nil, r, nil, 0); got != policy(125000, 5) {
		t.Errorf("no rules: %+v", got)
	}
	// A rate of zero cannot be paced.
	zero := s
	zero.Ratio = 0
	if got := Decide(zero, nil, r, nil, 0); got.Throttled {
		t.Errorf("ratio 0: %+v", got)
	}
	zero = s
	zero.Bandwidth = 0
	if got := Decide(zero, nil, r, nil, 0); got.Throttled {
		t.Errorf("bandwidth 0: %+v", got)
	}
	// ... unless a rule gives a bandwidth.
	if got := Decide(zero, mustParse(t, "*, 8"), r, nil, 0); got.Throttled != true || got.RateBytesPerSec != 1000 {
		t.Errorf("bandwidth 0 with a rule: %+v", got)
	}
	// Other units.
	for unit, perUnit := range map[string]float64{"bytes": 1, "kb": 1024, "mb": 1048576, "mbps": 125000} {
		u := s
		u.Unit, u.Bandwidth = unit, 16
		if got := Decide(u, nil, r, nil, 0); got != policy(16*perUnit, 5) {
			t.Errorf("unit %s: %+v", unit, got)
		}
		if got := Decide(u, mustParse(t, "*, 2, 50"), r, nil, 0); got.RateBytesPerSec != perUnit || got.BoostBytes != int64(5*perUnit) {
			t.Errorf("unit %s rule: %+v", unit, got)
		}
	}
	// An unknown unit is kbps.
	u := s
	u.Unit = "furlongs"
	if got := Decide(u, nil, r, nil, 0); got != policy(125000, 5) {
		t.Errorf("unknown unit: %+v", got)
	}
	// Boost rounds to whole bytes and saturates.
	if got := Decide(s, mustParse(t, "*, 1, 100, 0.001"), r, nil, 0); got.BoostBytes != 0 {
		t.Errorf("0.125 byte boost: %+v", got) // 125 B/s × 0.001 s
	}
	if got := Decide(s, mustParse(t, "*, 1, 100, 1"+strings.Repeat("0", 30)), r, nil, 0); got.BoostBytes <= 0 {
		t.Errorf("huge boost: %+v", got)
	}
	// A nil request matches what an empty one does.
	if got := Decide(s, mustParse(t, "!$HEADER[referer], 8"), nil, nil, 0); got.RateBytesPerSec != 1000 {
		t.Errorf("nil request: %+v", got)
	}
	// The matched rule is reported.
	rules := mustParse(t, "/x/*, no\n/a.mp4, 5")
	if got := Decide(s, rules, r, nil, 0); got.Rule != &rules.Rules[1] {
		t.Errorf("rule not reported: %+v", got)
	}
	if got := Decide(s, rules, mkreq("", "/x/y"), nil, 0); got.Rule != &rules.Rules[0] || got.Throttled {
		t.Errorf("no rule not reported: %+v", got)
	}
}

func TestStripParams(t *testing.T) {
	names := []string{"mybandwidth", "myratio", "myboost"}
	for _, tc := range []struct{ in, want string }{
		// STON's examples.
		{"mybandwidth=2000&myratio=130&myboost=10", ""},
		{"tag=3277&myboost=10&date=20130726", "tag=3277&date=20130726"},
		{"myboost=10&mybandwidth=1&myratio=130", ""},
		{"myratio=150", ""},
		// Others are kept as written, in order.
		{"", ""},
		{"a=1", "a=1"},
		{"b=2&a=1&c=%20x+y", "b=2&a=1&c=%20x+y"},
		{"myboost=1&a=1", "a=1"},
		{"a=1&myboost=1", "a=1"},
		{"a=1&myboost=1&myboost=2&b=2", "a=1&b=2"},
		{"myboost&a", "a"},
		{"myboost=&a=", "a="},
		{"my%62oost=1&a=1", "a=1"},
		{"myboost2=1&xmyboost=1&MYBOOST=1", "myboost2=1&xmyboost=1&MYBOOST=1"},
		{"a=myboost", "a=myboost"},
		{"a=1&&b=2", "a=1&&b=2"},
		{"%zz=1&myratio=2", "%zz=1"},
	} {
		if got := StripParams(tc.in, names...); got != tc.want {
			t.Errorf("StripParams(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := StripParams("a=1&myboost=2"); got != "a=1&myboost=2" {
		t.Errorf("no names: %q", got)
	}
	if got := StripParams("a=1&=2", ""); got != "a=1&=2" {
		t.Errorf("empty name: %q", got)
	}
}

func BenchmarkDecide(b *testing.B) {
	rules, err := LoadRules("../testdata/throttling/default.txt")
	if err != nil {
		b.Fatal(err)
	}
	s := stonSettings()
	s.QueryString = true
	r := mkreq("192.0.2.10", "/vod/movie.mp4", "User-Agent", "Mozilla/5.0 (Linux; Android 14) Mobile Safari", "Referer", "https://example.com/")
	q := query(b, "myratio=150")
	b.ReportAllocs()
	for b.Loop() {
		Decide(s, rules, r, q, 1200000)
	}
}
