// Package shaping owns castmesh's bandwidth policy and pacing, in the terms
// of STON's bandwidth chapter (see DESIGN.md, "Edge delivery and shaping").
// It knows nothing of HTTP serving: the edge asks it what a request gets
// and when a session may write its next bytes.
//
// # Units and settings
//
// A vhost's throttling settings are a [Settings] ([SettingsFromVHost] takes
// them from a config.VHost). Figures are converted to bytes per second:
// kbps = 1,000 bit/s, mbps = 1,000,000 bit/s, bytes = 1 B/s, kb = 1,024 B/s,
// mb = 1,048,576 B/s ([UnitBytesPerSec], [ToBytesPerSec]); traffic caps are
// Mbps ([MbpsToBytesPerSec]) and session caps Kbps ([KbpsToBytesPerSec]).
//
// # throttling.txt
//
// [ParseRules] (or [LoadRules]) reads a rule file into [Rules]: one rule a
// line,
//
//	{condition}, {bandwidth}, {ratio}, {boost}
//
// where every field but the condition may be omitted (and then comes from
// the settings), '#' starts a comment (outside [...]) and the first rule
// whose condition holds decides ([Rules.Match]). The bandwidth is a number
// in the vhost's unit (a unit suffix such as "500kbps" is an error: STON
// takes the unit from <Bandwidth Unit>), "NNNx" (the media's own encoding
// rate, NNN if it cannot be had), "x" (the media's rate, else the settings'
// bandwidth) or "no" (a match is never throttled). The ratio is a percent
// (> 0), the boost seconds (>= 0).
//
// A condition is one or more terms joined by '&' (all must hold), each
// optionally negated by '!', in STON's acl.txt syntax:
//
//	$IP[192.168.1.1]            one address (IPv4 or IPv6)
//	$IP[192.168.2.1-255]        a range; the end is a last octet (hex group
//	$IP[10.0.0.5-10.0.1.7]      for IPv6) or a whole address
//	$IP[10.0.0.0/24]            a network by prefix length
//	$IP[10.0.0.0/255.255.255.0] a network by IPv4 netmask
//	$HEADER[name]               the header is present
//	$HEADER[name:]              the header is present with an empty value
//	$HEADER[name: pat*tern]     a value matches ('*' = anything); header
//	                            names and values ignore ASCII case
//	$URL[/vod/*.mp4]            the URL path matches ('*' = anything,
//	/vod/*.mp4                  '/' included; case-sensitive); the $URL
//	                            prefix may be dropped
//
// The '$' may be left out (STON's own examples write HEADER[cookie]) and
// the keywords ignore case. Inside [...], ',', '&' and '#' are literal; a
// bare URL pattern ends at ',', '&' or '#'. GeoIP country codes
// ($IP[KR]) are not supported and are a syntax error. A syntax error is a
// *[SyntaxError] naming the file, line, column and what was expected:
//
//	throttling.txt:3:7: expected ']' to close $IP[
//
// [Rules.String] writes rules back in a canonical form that parses to the
// same rules.
//
// # Decisions
//
// [Decide] turns the settings, the rules, the request ([Request]: client
// address, header, URL path), the query parameters and the media's encoding
// rate into a [Policy]: throttled or not, the pacing rate
// (bandwidth × ratio, bytes/s) and the boost (boost seconds × rate, bytes).
//
//   - Throttling off in the settings: nothing is throttled; rules and query
//     parameters are not consulted (STON: <Throttling>OFF applies no BT).
//   - Throttling on: the first matching rule is found. "no" means not
//     throttled, whatever the query says. Each figure comes from the query
//     parameter (when the query string is on), else the rule, else the
//     settings. A request no rule matches gets the settings' figures: STON
//     calls <Settings> "the default behaviour" and fills figures missing
//     from a query "with the settings when no condition is found".
//   - Query figures are in the vhost's unit, like rule bandwidths (STON:
//     Unit="mbps", ?mybandwidth=1&myratio=130 is 1.3 Mbps). A value that is
//     not a plain decimal (bandwidth and ratio > 0, boost >= 0) is ignored.
//   - A rate that is not positive (bandwidth or ratio 0) is not throttled.
//
// [StripParams] removes the override parameters from a raw query before
// the request finds its stream or goes upstream, keeping the rest as
// written.
//
// # Pacing
//
// One [Pacer] per node owns a scheduler goroutine that ticks (50 ms) while
// there are sessions, and the node cap. A [Group] is a vhost with its
// traffic cap; [Group.NewSession] starts one viewer's [Session] under a
// Policy and the session cap:
//
//	p := shaping.NewPacer(shaping.PacerConfig{NodeCap: shaping.MbpsToBytesPerSec(edge.NodeTrafficCap)})
//	defer p.Close()
//	group := p.NewGroup("www", shaping.MbpsToBytesPerSec(vh.TrafficCap))
//
// A reload changes caps in place ([Group.SetCap], [Pacer.SetNodeCap]);
// open sessions keep their policy. [Group.Stats] gives the counters for
// metrics. The handler serving a viewer writes the media header itself
// (unthrottled, and not counted against the caps), then loops:
//
//	s := group.NewSession(policy, shaping.KbpsToBytesPerSec(vh.SessionCap))
//	defer s.Close()
//	for left > 0 {
//		n, err := s.Next(r.Context(), left) // blocks until bytes are allowed
//		if err != nil {
//			return
//		}
//		if _, err := io.CopyN(w, file, n); err != nil { // sendfile
//			return
//		}
//		left -= n
//	}
//
// or simply s.CopyN(ctx, w, file, left), which is that loop. Next hands out
// the boost first (at once, unless a cap or the session cap holds it back),
// then grants of about ChunkPeriod's worth (220 ms) of the rate, on the
// tick nearest their due time; an unthrottled session under no cap gets
// what it asks without touching the scheduler. The writer is never
// wrapped, so *os.File to http.ResponseWriter stays sendfile.
//
// The scheduler credits each session what its rate earned since the last
// tick (exact accounting: the bytes granted stay within half a grant of
// rate × time), bounds what a session that does not read may pile up, and
// shares a binding group or node cap by max-min fairness (water-filling),
// with the group inside the node. Grants come less often, up to once a
// second, when there are more sessions than PacerConfig.MaxGrantsPerSec
// allows: CPU follows writes. See DESIGN.md beside this file for why it is
// built this way and what it measured.
package shaping
