package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/castmesh/castmesh/shaping"
	"github.com/castmesh/castmesh/streams"
)

// Live viewers cost CPU per write, not per byte: an MP3 unit is ~1.6 KB
// every 100 ms, and writing each on its own (a wake-up, a syscall and a
// TCP segment per viewer per unit) caps a core at a few thousand viewers.
// So a viewer's units wait up to liveBatch after they reached this node
// and go out together, in one writev on the bare connection.
const (
	// liveBatch is the most a unit waits for others to go with it. It
	// adds at most this to a viewer's lag behind the live edge.
	liveBatch = 250 * time.Millisecond
	// liveMaxWrite bounds one write (a burst on connect is split).
	liveMaxWrite = 256 << 10
)

// liveIdleCheck is how often a viewer of a stream that sends nothing is
// checked for having gone away (a variable for tests).
var liveIdleCheck = 10 * time.Second

// serveLive relays a live stream: the header (fMP4 init segment), a burst
// of the recent units (burst long, the vhost's or the rule's boost)
// starting at a key unit, then the units as they come. A live stream is
// paced by its source, so it is not throttled; the session, vhost and node
// caps still hold it.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, name string, burst time.Duration, vh *vhost) {
	v, err := s.opts.Streams.OpenLive(name, burst)
	if err != nil {
		s.error(w, http.StatusNotFound, "not found")
		return
	}
	defer v.Close()
	h := w.Header()
	for k, vals := range v.Meta {
		// Icecast listeners read the station's name and genre from icy-*.
		h[strings.Replace(http.CanonicalHeaderKey(k), "Ice-", "Icy-", 1)] = vals
	}
	h.Set("Content-Type", v.ContentType)
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	s.m.requests.WithLabelValues(http.StatusText(http.StatusOK)).Inc()
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	vh.m.active.Inc()
	defer vh.m.active.Dec()
	sess := vh.group.NewSession(shaping.Policy{}, vh.sessionCap)
	defer sess.Close()

	out, err := newLiveOutput(w, r)
	if err != nil {
		return
	}
	defer out.close()
	ctx := r.Context()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		bufs  net.Buffers
		first = true
	)
	for {
		u, err := s.nextLive(ctx, v, out)
		if err != nil {
			return
		}
		bufs = bufs[:0]
		size := 0
		if hdr := v.Header(); first && len(hdr) > 0 {
			bufs, size = append(bufs, hdr), len(hdr)
		}
		first = false
		bufs, size = append(bufs, u.Data), size+len(u.Data)
		// Let the units that come within liveBatch of this one join it.
		if wait := time.Until(time.Unix(0, u.At).Add(liveBatch)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		for size < liveMaxWrite {
			u, ok, err := v.TryNext()
			if err != nil {
				return // dropped for lag, or the stream ended
			}
			if !ok {
				break
			}
			bufs, size = append(bufs, u.Data), size+len(u.Data)
		}
		if !s.writeLive(ctx, out, sess, vh, name, bufs, size) {
			return
		}
	}
}

// nextLive waits for the viewer's next unit. While the stream sends
// nothing it checks now and then that the viewer is still there: on a
// taken-over connection nothing else would notice.
func (s *Server) nextLive(ctx context.Context, v *streams.LiveView, out *liveOutput) (streams.Unit, error) {
	for {
		wctx, cancel := context.WithTimeout(ctx, liveIdleCheck)
		u, err := v.Next(wctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return u, err
		}
		if out.gone() {
			return streams.Unit{}, errViewerGone
		}
	}
}

var errViewerGone = errors.New("the viewer closed the connection")

// writeLive sends size bytes of bufs within the session's caps.
func (s *Server) writeLive(ctx context.Context, out *liveOutput, sess *shaping.Session, vh *vhost, name string, bufs net.Buffers, size int) bool {
	for size > 0 {
		n, err := sess.Next(ctx, int64(size)) // at once unless a cap holds it
		if err != nil {
			return false
		}
		var chunk net.Buffers
		chunk, bufs = splitBuffers(bufs, int(n))
		wrote, err := out.write(chunk, time.Now().Add(s.writeTimeout))
		vh.m.bytes.Add(float64(wrote))
		if err != nil {
			if isTimeout(err) {
				vh.m.dropped.Inc()
				s.log.Info("live viewer stalled: dropped", "vhost", vh.name, "stream", name, "timeout", s.writeTimeout.String())
			}
			return false
		}
		size -= int(n)
	}
	return true
}

// splitBuffers returns the first n bytes of b and the rest, sharing b's
// arrays.
func splitBuffers(b net.Buffers, n int) (head, tail net.Buffers) {
	for len(b) > 0 && n > 0 {
		if len(b[0]) <= n {
			head, n, b = append(head, b[0]), n-len(b[0]), b[1:]
			continue
		}
		head, b[0], n = append(head, b[0][:n]), b[0][n:], 0
	}
	return head, b
}

// liveOutput is where a live viewer's bytes go: the connection itself,
// taken over from net/http after the response header (HTTP/1.x), so that
// a batch of units is one writev; or, where that is impossible (HTTP/2),
// the ResponseWriter, one Write and Flush per batch.
type liveOutput struct {
	conn net.Conn
	w    http.ResponseWriter
	rc   *http.ResponseController
	join []byte // the fallback's batch buffer
}

func newLiveOutput(w http.ResponseWriter, r *http.Request) (*liveOutput, error) {
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		conn, brw, err := rc.Hijack()
		if err == nil {
			if err := writeLiveHeader(conn, brw, r, w.Header()); err != nil {
				conn.Close()
				return nil, err
			}
			return &liveOutput{conn: conn}, nil
		}
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	return &liveOutput{w: w, rc: rc}, nil
}

// writeLiveHeader writes the response header on a taken-over connection:
// no length and no chunking, the body runs until the connection closes,
// as Icecast answers its listeners.
func writeLiveHeader(conn net.Conn, brw *bufio.ReadWriter, r *http.Request, h http.Header) error {
	proto := "HTTP/1.1"
	if r.ProtoMinor == 0 {
		proto = "HTTP/1.0"
	}
	bw := brw.Writer
	fmt.Fprintf(bw, "%s 200 OK\r\n", proto)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			// Header values come from the source client: never let one
			// break the response.
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			fmt.Fprintf(bw, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(bw, "Date: %s\r\nConnection: close\r\n\r\n", time.Now().UTC().Format(http.TimeFormat))
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return bw.Flush()
}

func (o *liveOutput) write(b net.Buffers, deadline time.Time) (int64, error) {
	if o.conn != nil {
		o.conn.SetWriteDeadline(deadline)
		return b.WriteTo(o.conn)
	}
	o.join = o.join[:0]
	for _, p := range b {
		o.join = append(o.join, p...)
	}
	o.rc.SetWriteDeadline(deadline)
	n, err := o.w.Write(o.join)
	if err == nil {
		err = o.rc.Flush()
	}
	if len(o.join) > 64<<10 {
		o.join = nil // a burst's buffer is not kept for the whole session
	}
	return int64(n), err
}

// gone reports whether the viewer closed its end: a read that finds EOF
// (or anything but a timeout) at once.
func (o *liveOutput) gone() bool {
	if o.conn == nil {
		return false // net/http watches the connection and cancels the request
	}
	o.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := o.conn.Read(b[:])
	o.conn.SetReadDeadline(time.Time{})
	return err != nil && !isTimeout(err)
}

func (o *liveOutput) close() {
	if o.conn != nil {
		o.conn.Close()
	}
}
