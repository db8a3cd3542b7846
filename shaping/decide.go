package shaping

import (
	"math"
	"net/url"
	"strings"
)

// Policy is how one session is delivered.
type Policy struct {
	// Throttled is false when the session is not paced: throttling is off
	// for the vhost, or the matching rule says "no". Caps still apply.
	Throttled bool
	// RateBytesPerSec is bandwidth × ratio, the pacing rate after the boost.
	RateBytesPerSec float64
	// BoostBytes is boost seconds × RateBytesPerSec: what is sent
	// unthrottled (but under the caps) after the media header.
	BoostBytes int64
	// Rule is the throttling.txt rule that matched, nil if none did; for
	// logs and diagnostics.
	Rule *Rule
}

// Decide chooses the policy of one request.
//
//   - Throttling off in the settings: not throttled; rules and query
//     parameters are not consulted (STON: <Throttling>OFF applies no BT).
//   - Otherwise the first rule matching req is found (rules may be nil). A
//     matching "no" means not throttled, whatever the query says.
//   - Each figure comes from the query parameter (when s.QueryString is on
//     and the value is a usable number), else from the matched rule's
//     field, else from the settings. The query bandwidth is in the vhost's
//     unit, as rule bandwidths are.
//   - A rule bandwidth "NNNx" takes mediaBitsPerSec (the media's encoding
//     rate in bit/s, 0 if unknown) and falls back to NNN in the vhost's
//     unit; "x" alone falls back to the settings' bandwidth.
//   - A request that matches no rule is throttled with the settings'
//     figures (STON's <Settings> is "the default behaviour").
//   - A resulting rate that is not a positive finite number (bandwidth or
//     ratio 0 in the settings) cannot be paced: not throttled.
//
// Query values that are not usable numbers (bandwidth and ratio must be
// > 0, boost >= 0; digits with an optional fraction) are ignored as if
// absent; a bad query never fails a request.
func Decide(s Settings, rules *Rules, req *Request, query url.Values, mediaBitsPerSec float64) Policy {
	if !s.Throttling {
		return Policy{}
	}
	rule := rules.Match(req)
	if rule != nil && rule.NoThrottle {
		return Policy{Rule: rule}
	}
	unit := s.unitFactor()

	bandwidth := s.Bandwidth * unit // bytes/s
	ratio := s.Ratio                // percent
	boost := s.Boost                // seconds
	if rule != nil {
		if rule.Bandwidth.Set {
			switch {
			case rule.Bandwidth.FromMedia && mediaBitsPerSec > 0 && !math.IsInf(mediaBitsPerSec, 0):
				bandwidth = mediaBitsPerSec / 8
			case rule.Bandwidth.FromMedia && rule.Bandwidth.Value == 0:
				// "x" alone: the settings' bandwidth.
			default:
				bandwidth = rule.Bandwidth.Value * unit
			}
		}
		if rule.Ratio.Set {
			ratio = rule.Ratio.Value
		}
		if rule.Boost.Set {
			boost = rule.Boost.Value
		}
	}
	if s.QueryString && len(query) > 0 {
		if v, ok := queryNumber(query, s.BandwidthParam); ok && v > 0 {
			bandwidth = v * unit
		}
		if v, ok := queryNumber(query, s.RatioParam); ok && v > 0 {
			ratio = v
		}
		if v, ok := queryNumber(query, s.BoostParam); ok {
			boost = v
		}
	}
	rate := bandwidth * ratio / 100
	if !(rate > 0) || math.IsInf(rate, 0) {
		return Policy{Rule: rule}
	}
	p := Policy{Throttled: true, RateBytesPerSec: rate, Rule: rule}
	if b := boost * rate; b > 0 {
		if b >= math.MaxInt64 || math.IsNaN(b) {
			p.BoostBytes = math.MaxInt64
		} else {
			p.BoostBytes = int64(math.Round(b))
		}
	}
	return p
}

// queryNumber reads a query parameter as a non-negative finite decimal.
func queryNumber(q url.Values, name string) (float64, bool) {
	if name == "" {
		return 0, false
	}
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return 0, false
	}
	text := strings.TrimSpace(vs[0])
	v, n := scanNumber(text)
	if n == 0 || n != len(text) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// StripParams removes the named parameters (the bandwidth, ratio and boost
// overrides) from a raw query string and keeps every other parameter as
// written, in order: "tag=3277&myboost=10&date=20130726" becomes
// "tag=3277&date=20130726". A key is compared after unescaping, as
// url.ParseQuery sees it, so "my%62oost=1" is removed too. The result is
// what finds the stream and goes to an upstream; "" means no query.
func StripParams(rawQuery string, names ...string) string {
	if rawQuery == "" || len(names) == 0 {
		return rawQuery
	}
	var b strings.Builder
	removed := false
	rest := rawQuery
	first := true
	for {
		seg, tail, more := strings.Cut(rest, "&")
		if isParam(seg, names) {
			removed = true
		} else {
			if !first {
				b.WriteByte('&')
			}
			b.WriteString(seg)
			first = false
		}
		if !more {
			break
		}
		rest = tail
	}
	if !removed {
		return rawQuery
	}
	return b.String()
}

// isParam reports whether the query segment key[=value] has one of names
// as its key.
func isParam(seg string, names []string) bool {
	key, _, _ := strings.Cut(seg, "=")
	if key == "" {
		return false
	}
	if strings.ContainsAny(key, "%+") {
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
	}
	for _, n := range names {
		if n != "" && key == n {
			return true
		}
	}
	return false
}
