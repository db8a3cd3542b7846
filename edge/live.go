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
//
// On HTTP/1.x the viewer's connection is taken over after the response
// header and this handler returns: net/http's per-connection state (its
// buffers, the request, the serving goroutine's stack) is freed, and one
// small goroutine per viewer remains. It ends when the stream ends (the
// stream manager closes its relays when it stops), when the viewer hangs
// up, stalls past the write timeout or falls behind the relay's lag limit.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, name string, burst time.Duration, vh *vhost) {
	v, err := s.opts.Streams.OpenLive(name, burst)
	if err != nil {
		s.error(w, http.StatusNotFound, "not found")
		return
	}
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
		v.Close()
		w.WriteHeader(http.StatusOK)
		return
	}
	out, err := newLiveOutput(w, r)
	if err != nil {
		v.Close()
		return
	}
	lv := &liveViewer{s: s, v: v, out: out, vh: vh, name: name,
		sess: vh.group.NewSession(shaping.Policy{}, vh.sessionCap)}
	vh.m.active.Inc()
	if out.conn != nil {
		go lv.run(context.Background())
		return
	}
	lv.run(r.Context()) // the ResponseWriter is only good until we return
}

// liveViewer is one viewer's session of a live stream.
type liveViewer struct {
	s    *Server
	v    *streams.LiveView
	out  *liveOutput
	vh   *vhost
	sess *shaping.Session
	name string

	timer *time.Timer
	bufs  [][]byte // the batch; its array is reused
}

func (lv *liveViewer) run(ctx context.Context) {
	defer func() {
		lv.out.close()
		lv.sess.Close()
		lv.v.Close()
		lv.vh.m.active.Dec()
	}()
	lv.timer = time.NewTimer(time.Hour)
	defer lv.timer.Stop()
	first := true
	for {
		u, err := lv.next(ctx)
		if err != nil {
			return
		}
		batch := lv.bufs[:0]
		size := 0
		if hdr := lv.v.Header(); first && len(hdr) > 0 {
			batch, size = append(batch, hdr), len(hdr)
		}
		first = false
		batch, size = append(batch, u.Data), size+len(u.Data)
		// Let the units that come within liveBatch of this one join it.
		if wait := time.Until(time.Unix(0, u.At).Add(liveBatch)); wait > 0 && !lv.sleep(ctx, wait) {
			return
		}
		for size < liveMaxWrite {
			u, ok, err := lv.v.TryNext()
			if err != nil {
				return // dropped for lag, or the stream ended
			}
			if !ok {
				break
			}
			batch, size = append(batch, u.Data), size+len(u.Data)
		}
		ok := lv.write(ctx, batch, size)
		clear(batch) // the relay may drop these units: do not hold them
		lv.bufs = batch[:0]
		if !ok {
			return
		}
	}
}

// next waits for the viewer's next unit. While the stream sends nothing it
// checks now and then that the viewer is still there: on a taken-over
// connection nothing else would notice.
func (lv *liveViewer) next(ctx context.Context) (streams.Unit, error) {
	for {
		u, ok, err := lv.v.TryNext()
		if ok || err != nil {
			return u, err
		}
		lv.timer.Reset(liveIdleCheck)
		select {
		case <-ctx.Done():
			return streams.Unit{}, ctx.Err()
		case <-lv.v.Ready():
		case <-lv.timer.C:
			if lv.out.gone() {
				return streams.Unit{}, errViewerGone
			}
		}
	}
}

func (lv *liveViewer) sleep(ctx context.Context, d time.Duration) bool {
	lv.timer.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-lv.timer.C:
		return true
	}
}

var errViewerGone = errors.New("the viewer closed the connection")

// write sends size bytes of bufs within the session's caps.
func (lv *liveViewer) write(ctx context.Context, bufs [][]byte, size int) bool {
	for size > 0 {
		n, err := lv.sess.Next(ctx, int64(size)) // at once unless a cap holds it
		if err != nil {
			return false
		}
		chunk := net.Buffers(bufs)
		if int(n) < size {
			chunk, bufs = splitBuffers(bufs, int(n))
		}
		wrote, err := lv.out.write(chunk, time.Now().Add(lv.s.writeTimeout))
		lv.vh.m.bytes.Add(float64(wrote))
		if err != nil {
			if isTimeout(err) {
				lv.vh.m.dropped.Inc()
				lv.s.log.Info("live viewer stalled: dropped", "vhost", lv.vh.name, "stream", lv.name, "timeout", lv.s.writeTimeout.String())
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
