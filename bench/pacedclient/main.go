// Command pacedclient opens many paced HTTP sessions against one URL and
// measures each from its own socket: the kernel's receive timestamp of
// every read (SO_TIMESTAMPNS), so a client that is late to read does not
// blur what the server sent when.
//
// For each session it reports the time to first byte, the bytes that came
// in the first burst (header + boost, before pacing starts), the rate over
// -measure after the boost, and the most bytes in a 1 s window: windows
// counted from the session's boost end (as a player's buffer sees them)
// and sliding windows (the strictest reading). With -aggregate it also
// sums all sessions per 1 s of wall time (a vhost cap's output) and
// computes Jain's fairness over the sessions' rates.
//
// It prints a JSON summary on stdout; cmd/... bench/edgebench reads it.
//
//	pacedclient -url http://127.0.0.1:8080/vod/a.bin -host paced.bench -n 10000 -ramp 1000 \
//	    -boost-bytes 65536 -rate 16384 -measure 60s
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type options struct {
	url        *url.URL
	host       string
	n          int
	ramp       float64 // sessions started per second
	boostBytes int64   // header + boost: where pacing starts
	rate       float64 // expected rate after the boost, B/s (for the report)
	measure    time.Duration
	aggregate  bool
	probes     int
	probeEvery time.Duration
	probeAfter time.Duration
	gapMS      float64
}

// event is one read: its kernel timestamp (ns since the session's dial)
// and the body bytes received so far.
type event struct {
	t   int64
	cum int64
}

type session struct {
	start   time.Time // before the dial
	ttfb    time.Duration
	status  int
	err     error
	events  []event
	bodyLen int64 // Content-Length
	tb      int64 // when boost-bytes had arrived (ns after start); -1: not yet
}

func main() {
	var o options
	rawURL := flag.String("url", "", "URL to GET (http://host:port/path)")
	flag.StringVar(&o.host, "host", "", "Host header (default: the URL's host)")
	flag.IntVar(&o.n, "n", 100, "sessions")
	flag.Float64Var(&o.ramp, "ramp", 1000, "sessions started per second")
	flag.Int64Var(&o.boostBytes, "boost-bytes", 0, "bytes before pacing starts (header + boost)")
	flag.Float64Var(&o.rate, "rate", 0, "expected rate after the boost, bytes/s")
	flag.DurationVar(&o.measure, "measure", 60*time.Second, "how long after its boost each session is measured")
	flag.BoolVar(&o.aggregate, "aggregate", false, "also report the sum over sessions per 1 s of wall time and Jain's fairness")
	flag.IntVar(&o.probes, "probes", 0, "time-to-first-byte probes (new connections, one at a time) while the sessions run")
	flag.DurationVar(&o.probeEvery, "probe-every", 100*time.Millisecond, "gap between probes")
	flag.DurationVar(&o.probeAfter, "probe-after", 0, "start the probes this long after the last session started")
	flag.Float64Var(&o.gapMS, "gap-ms", 40, "a pause this long (ms) between reads ends the first burst")
	flag.Parse()
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fmt.Fprintln(os.Stderr, "pacedclient: -url must be http://host:port/path")
		os.Exit(2)
	}
	o.url = u
	if o.host == "" {
		o.host = u.Host
	}
	sum, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacedclient:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(sum)
}

func (o options) request() []byte {
	p := o.url.RequestURI()
	return []byte("GET " + p + " HTTP/1.1\r\nHost: " + o.host + "\r\nUser-Agent: castmesh-pacedclient\r\n\r\n")
}

func run(o options) (*summary, error) {
	sessions := make([]*session, o.n)
	var wg sync.WaitGroup
	var started atomic.Int64
	req := o.request()
	begin := time.Now()
	// Sessions last until they have measure after their boost; a margin
	// lets a late one finish, and a stuck one is a failure.
	deadline := func(s *session) time.Time { return s.start.Add(o.measure + 30*time.Second) }
	interval := time.Duration(float64(time.Second) / o.ramp)
	for i := range sessions {
		s := &session{tb: -1}
		sessions[i] = s
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		s.start = time.Now()
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(o, req, deadline(s))
		}()
	}
	rampEnd := time.Now()
	var probeTTFB []time.Duration
	var probeFails int
	if o.probes > 0 {
		time.Sleep(o.probeAfter)
		for range o.probes {
			d, err := probe(o, req)
			if err != nil {
				probeFails++
			} else {
				probeTTFB = append(probeTTFB, d)
			}
			time.Sleep(o.probeEvery)
		}
	}
	wg.Wait()
	return summarize(o, sessions, begin, rampEnd, probeTTFB, probeFails), nil
}

// probe opens a connection, asks, and returns the time to the first byte
// of the response (the dial included, as curl's time_starttransfer).
func probe(o options, req []byte) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", o.url.Host, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// run is one session: dial, ask, then read with the socket's receive
// timestamps until the body is done or measured far enough.
func (s *session) run(o options, req []byte, deadline time.Time) {
	c, err := net.DialTimeout("tcp", o.url.Host, 10*time.Second)
	if err != nil {
		s.err = err
		return
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		s.err = err
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	c.SetDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		s.err = err
		return
	}
	var head []byte // the response header until it is complete
	var cum int64
	haveHead := false
	oob := make([]byte, 64)
	startNS := s.start.UnixNano()
	for {
		var n int
		var ts int64
		var rerr error
		bp := bufPool.Get().(*[]byte)
		buf := *bp
		err := rc.Read(func(fd uintptr) bool {
			var oobn int
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), buf, oob, 0)
			if rerr == syscall.EAGAIN {
				return false
			}
			ts = kernelTime(oob[:oobn])
			return true
		})
		if err == nil {
			err = rerr
		}
		if n > 0 && !haveHead {
			head = append(head, buf[:n]...)
		}
		bufPool.Put(bp)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.err = fmt.Errorf("not done by the deadline (%d bytes)", cum)
			} else {
				s.err = err
			}
			return
		}
		if n == 0 {
			if haveHead && s.bodyLen >= 0 && cum < s.bodyLen && !s.measured(o) {
				s.err = fmt.Errorf("closed after %d of %d bytes", cum, s.bodyLen)
			} else if !haveHead {
				s.err = errors.New("closed before the response header")
			}
			return
		}
		if ts == 0 {
			ts = time.Now().UnixNano()
		}
		t := ts - startNS
		if !haveHead {
			end := bytes.Index(head, []byte("\r\n\r\n"))
			if end < 0 {
				if len(head) > 64<<10 {
					s.err = errors.New("response header too long")
					return
				}
				continue
			}
			haveHead = true
			s.ttfb = time.Duration(t)
			if err := s.parseHead(head[:end]); err != nil {
				s.err = err
				return
			}
			body := int64(len(head) - end - 4)
			head = nil
			if s.status != 200 {
				s.err = fmt.Errorf("HTTP %d", s.status)
				return
			}
			if body == 0 {
				continue
			}
			n = int(body)
		}
		cum += int64(n)
		s.events = append(s.events, event{t: t, cum: cum})
		if s.tb < 0 && cum >= o.boostBytes {
			s.tb = t
		}
		if s.measured(o) || (s.bodyLen >= 0 && cum >= s.bodyLen) {
			return
		}
	}
}

// measured reports whether the session has been read for measure past
// its boost (plus a second, so the last window is whole).
func (s *session) measured(o options) bool {
	if len(s.events) == 0 {
		return false
	}
	tb, ok := s.boostEnd(o)
	return ok && s.events[len(s.events)-1].t >= tb+int64(o.measure)+int64(time.Second)
}

func (s *session) parseHead(h []byte) error {
	lines := bytes.Split(h, []byte("\r\n"))
	f := bytes.Fields(lines[0])
	if len(f) < 2 {
		return fmt.Errorf("bad status line %q", lines[0])
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return fmt.Errorf("bad status line %q", lines[0])
	}
	s.status = code
	s.bodyLen = -1
	for _, l := range lines[1:] {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			s.bodyLen, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return nil
}

// kernelTime reads the SCM_TIMESTAMPNS of a recvmsg, 0 if there is none.
func kernelTime(oob []byte) int64 {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			return ts.Nano()
		}
	}
	return 0
}

// boostEnd is when the session had received boost-bytes (the end of the
// boost as the viewer sees it).
func (s *session) boostEnd(o options) (int64, bool) {
	return s.tb, s.tb >= 0
}

// bytesAt is the body bytes received by t.
func (s *session) bytesAt(t int64) int64 {
	i, _ := slices.BinarySearchFunc(s.events, t, func(e event, t int64) int {
		if e.t <= t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return 0
	}
	return s.events[i-1].cum
}

// burst is the bytes of the first run of reads with no pause of gap
// between them: what came before pacing started.
func (s *session) burst(gap int64) int64 {
	if len(s.events) == 0 {
		return 0
	}
	for i := 1; i < len(s.events); i++ {
		if s.events[i].t-s.events[i-1].t > gap {
			return s.events[i-1].cum
		}
	}
	return s.events[len(s.events)-1].cum
}

type stats struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P1   float64 `json:"p1"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func statsOf(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(math.Round(p*float64(len(s)-1))))] }
	var sum float64
	for _, x := range s {
		sum += x
	}
	return stats{N: len(s), Min: s[0], P1: q(0.01), P50: q(0.5), P99: q(0.99), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

type summary struct {
	Sessions   int      `json:"sessions"`
	Failed     int      `json:"failed"`
	FailedWhy  []string `json:"failed_examples,omitempty"`
	RampS      float64  `json:"ramp_s"`
	ExpectRate float64  `json:"expect_rate_bps"`

	TTFBms      stats `json:"ttfb_ms"`       // the sessions' own (during the ramp)
	ProbeTTFBms stats `json:"probe_ttfb_ms"` // probes while the sessions run
	ProbeFailed int   `json:"probe_failed"`

	BurstBytes stats `json:"burst_bytes"` // before pacing started
	// RateErrPct is each session's rate over measure after its boost, as
	// a percentage off the expected rate.
	RateErrPct stats `json:"rate_err_pct"`
	// WinAligned and WinSliding are each session's largest 1 s window
	// over the measured span, as a multiple of the expected rate.
	WinAligned stats `json:"window_aligned_x"`
	WinSliding stats `json:"window_sliding_x"`

	// With -aggregate: the sum over sessions per 1 s of wall time, over
	// the span every session was paced.
	AggMeanBps    float64 `json:"agg_mean_bps,omitempty"`
	AggMaxWinBps  float64 `json:"agg_max_window_bps,omitempty"`
	AggMaxSlideBp float64 `json:"agg_max_sliding_window_bps,omitempty"`
	Jain          float64 `json:"jain,omitempty"`
	AggSpanS      float64 `json:"agg_span_s,omitempty"`
}

func summarize(o options, ss []*session, begin, rampEnd time.Time, probeTTFB []time.Duration, probeFails int) *summary {
	sum := &summary{Sessions: len(ss), RampS: rampEnd.Sub(begin).Seconds(), ExpectRate: o.rate, ProbeFailed: probeFails}
	var ttfb, burst, rateErr, winA, winS, rates []float64
	measure := int64(o.measure)
	gap := int64(o.gapMS * 1e6)
	for _, s := range ss {
		if s.err == nil && !s.measured(o) && (s.bodyLen < 0 || len(s.events) == 0 || s.events[len(s.events)-1].cum < s.bodyLen) {
			s.err = errors.New("ended before it was measured")
		}
		if s.err != nil {
			sum.Failed++
			if len(sum.FailedWhy) < 5 {
				sum.FailedWhy = append(sum.FailedWhy, s.err.Error())
			}
			continue
		}
		ttfb = append(ttfb, float64(s.ttfb)/1e6)
		burst = append(burst, float64(s.burst(gap)))
		if o.rate <= 0 {
			continue
		}
		tb, ok := s.boostEnd(o)
		if !ok || !s.measured(o) {
			continue // a body shorter than boost + measure
		}
		got := float64(s.bytesAt(tb+measure)-s.bytesAt(tb)) / o.measure.Seconds()
		rates = append(rates, got)
		rateErr = append(rateErr, (got/o.rate-1)*100)
		var maxA int64
		for k := int64(0); k+1 <= measure/int64(time.Second); k++ {
			from := tb + k*int64(time.Second)
			maxA = max(maxA, s.bytesAt(from+int64(time.Second))-s.bytesAt(from))
		}
		winA = append(winA, float64(maxA)/o.rate)
		winS = append(winS, float64(maxSliding(s.events, tb, tb+measure, int64(time.Second)))/o.rate)
	}
	sum.TTFBms, sum.BurstBytes = statsOf(ttfb), statsOf(burst)
	sum.RateErrPct, sum.WinAligned, sum.WinSliding = statsOf(rateErr), statsOf(winA), statsOf(winS)
	var pt []float64
	for _, d := range probeTTFB {
		pt = append(pt, float64(d)/1e6)
	}
	sum.ProbeTTFBms = statsOf(pt)
	if o.aggregate {
		aggregate(sum, o, ss, rates)
	}
	return sum
}

// maxSliding is the most bytes that arrived in any window of length w
// starting in [from, to-w]: reads after from, within w of each other.
func maxSliding(ev []event, from, to, w int64) int64 {
	var best int64
	j := 0
	prev := func(i int) int64 {
		if i == 0 {
			return 0
		}
		return ev[i-1].cum
	}
	for i := range ev {
		if ev[i].t <= from || ev[i].t > to {
			continue
		}
		if j < i {
			j = i
		}
		for j+1 < len(ev) && ev[j+1].t < ev[i].t+w && ev[j+1].t <= to {
			j++
		}
		best = max(best, ev[j].cum-prev(i))
	}
	return best
}

// aggregate sums the sessions' bytes per 1 s of wall time over the span
// when every session was past its boost and still measured.
func aggregate(sum *summary, o options, ss []*session, rates []float64) {
	var lo, hi int64 = math.MinInt64, math.MaxInt64
	type tev struct{ t, n int64 }
	var all []tev
	for _, s := range ss {
		if s.err != nil || len(s.events) == 0 {
			continue
		}
		tb, ok := s.boostEnd(o)
		if !ok {
			continue
		}
		base := s.start.UnixNano()
		lo = max(lo, base+tb)
		hi = min(hi, base+tb+int64(o.measure))
		var prev int64
		for _, e := range s.events {
			all = append(all, tev{base + e.t, e.cum - prev})
			prev = e.cum
		}
	}
	if hi-lo < int64(2*time.Second) {
		return
	}
	slices.SortFunc(all, func(a, b tev) int { return int(a.t - b.t) })
	var total int64
	secs := (hi - lo) / int64(time.Second)
	bins := make([]int64, secs)
	for _, e := range all {
		if e.t > lo && e.t <= lo+secs*int64(time.Second) {
			bins[(e.t-lo-1)/int64(time.Second)] += e.n
			total += e.n
		}
	}
	sum.AggSpanS = float64(secs)
	sum.AggMeanBps = float64(total) / float64(secs)
	for _, b := range bins {
		sum.AggMaxWinBps = max(sum.AggMaxWinBps, float64(b))
	}
	ev := make([]event, 0, len(all))
	var cum int64
	for _, e := range all {
		cum += e.n
		ev = append(ev, event{t: e.t, cum: cum})
	}
	sum.AggMaxSlideBp = float64(maxSliding(ev, lo, lo+secs*int64(time.Second), int64(time.Second)))
	// Jain's index over the sessions' own rates after their boost.
	var s1, s2 float64
	for _, r := range rates {
		s1 += r
		s2 += r * r
	}
	if len(rates) > 0 && s2 > 0 {
		sum.Jain = s1 * s1 / (float64(len(rates)) * s2)
	}
}
