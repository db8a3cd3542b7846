package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/castmesh/castmesh/shaping"
	"github.com/castmesh/castmesh/streams"
)

// Live viewers cost CPU per write and memory per goroutine, not per byte:
// an MP3 unit is ~1.6 KB every 100 ms, and writing each on its own (a
// wake-up, a syscall and a TCP segment per viewer per unit) caps a core at
// a few thousand viewers. So a viewer's units wait up to liveBatch after
// they reached this node and go out together, in one writev on the bare
// connection; and viewers that no cap holds have no goroutine of their
// own: the hub's few goroutines write to them without blocking, as
// Icecast does, and hand a viewer to a goroutine of its own when a cap
// starts to hold it.
const (
	// liveBatch is the most a unit waits for others to go with it; with
	// the hub's tick it adds at most liveBatch+liveTick to a viewer's lag
	// behind the live edge.
	liveBatch = 200 * time.Millisecond
	// liveTick is how often the hub looks at its viewers.
	liveTick = 50 * time.Millisecond
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
	if out.conn == nil {
		lv.run(r.Context(), nil) // the ResponseWriter is only good until we return
		return
	}
	if raw := rawConnOf(out.conn); raw != nil && vh.sessionCap <= 0 && vh.group.Cap() <= 0 && s.pacer.NodeCap() <= 0 {
		hub.add(&hubViewer{lv: lv, raw: raw, active: time.Now()})
		return
	}
	go lv.run(context.Background(), nil)
}

// liveViewer is one viewer's session of a live stream.
type liveViewer struct {
	s    *Server
	v    *streams.LiveView
	out  *liveOutput
	vh   *vhost
	sess *shaping.Session
	name string

	timer      *time.Timer
	bufs       [][]byte // the batch; its array is reused
	headerSent bool     // the stream's header went before the first unit
}

// take appends u to a batch of size bytes, after the stream's header
// when u is the viewer's first unit.
func (lv *liveViewer) take(batch [][]byte, size int, u streams.Unit) ([][]byte, int) {
	if !lv.headerSent {
		lv.headerSent = true
		if hdr := lv.v.Header(); len(hdr) > 0 {
			batch, size = append(batch, hdr), size+len(hdr)
		}
	}
	return append(batch, u.Data), size + len(u.Data)
}

func (lv *liveViewer) end() {
	lv.out.close()
	lv.sess.Close()
	lv.v.Close()
	lv.vh.m.active.Dec()
}

// run serves the viewer from its own goroutine, sending pending (what the
// hub had not written yet) first.
func (lv *liveViewer) run(ctx context.Context, pending [][]byte) {
	defer lv.end()
	lv.timer = time.NewTimer(time.Hour)
	defer lv.timer.Stop()
	if len(pending) > 0 {
		size := 0
		for _, b := range pending {
			size += len(b)
		}
		if !lv.write(ctx, pending, size) {
			return
		}
	}
	for {
		u, err := lv.next(ctx)
		if err != nil {
			return
		}
		batch, size := lv.take(lv.bufs[:0], 0, u)
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
			batch, size = lv.take(batch, size, u)
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
			v = headerValueNewlines.Replace(v)
			fmt.Fprintf(bw, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(bw, "Date: %s\r\nConnection: close\r\n\r\n", time.Now().UTC().Format(http.TimeFormat))
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := bw.Flush(); err != nil {
		return err
	}
	// Later writes set their own deadline, or (the hub's) never block.
	return conn.SetWriteDeadline(time.Time{})
}

var headerValueNewlines = strings.NewReplacer("\r", " ", "\n", " ")

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

// ---- the hub

// hub serves the live viewers that no cap holds: a goroutine per shard
// (one per CPU) that runs while its shard has viewers, and each liveTick
// sends every viewer whose batch is due what it has, with a non-blocking
// writev. A viewer whose socket stays full for the write timeout is
// dropped; one that falls behind the relay's lag limit is dropped by the
// relay.
var hub = newLiveHub()

type liveHub struct {
	next   atomic.Uint64
	shards []*hubShard
}

type hubShard struct {
	mu      sync.Mutex
	viewers []*hubViewer
	running bool
	iov     []syscall.Iovec // scratch for writev
}

func newLiveHub() *liveHub {
	h := &liveHub{}
	for range max(runtime.GOMAXPROCS(0), 1) {
		h.shards = append(h.shards, &hubShard{})
	}
	return h
}

func (h *liveHub) add(v *hubViewer) {
	sh := h.shards[h.next.Add(1)%uint64(len(h.shards))]
	sh.mu.Lock()
	sh.viewers = append(sh.viewers, v)
	start := !sh.running
	sh.running = true
	sh.mu.Unlock()
	if start {
		go sh.run()
	}
}

// run serves the shard until it has no viewers left.
func (sh *hubShard) run() {
	tick := time.NewTicker(liveTick)
	defer tick.Stop()
	for range tick.C {
		sh.mu.Lock()
		list := sh.viewers
		sh.viewers = nil
		sh.mu.Unlock()
		now := time.Now()
		keep := list[:0]
		for _, v := range list {
			if v.service(sh, now) {
				keep = append(keep, v)
			}
		}
		clear(list[len(keep):])
		sh.mu.Lock()
		sh.viewers = append(keep, sh.viewers...) // with those added meanwhile
		if len(sh.viewers) == 0 {
			sh.running = false
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
	}
}

// hubViewer is a viewer the hub writes to.
type hubViewer struct {
	lv      *liveViewer
	raw     syscall.RawConn
	pending [][]byte  // gathered, not yet written (the first one maybe in part)
	size    int       // bytes in pending
	due     time.Time // when pending must go
	stalled time.Time // since when the socket has taken nothing, zero if it has
	active  time.Time // last time anything was sent or checked
}

// service does what is due for v; false: v is done (and released).
func (v *hubViewer) service(sh *hubShard, now time.Time) bool {
	lv := v.lv
	if v.size == 0 && !v.gather() {
		lv.end()
		return false
	}
	if v.size == 0 {
		if now.Sub(v.active) > liveIdleCheck {
			v.active = now
			if v.gone() {
				lv.end()
				return false
			}
		}
		return true
	}
	if now.Before(v.due) {
		return true
	}
	if !v.gather() {
		lv.end()
		return false
	}
	// The session's grant, without waiting: a cap set since the viewer
	// came (a reload) makes it a viewer with a goroutine of its own.
	n, err := lv.sess.Next(doneCtx, int64(v.size))
	if err != nil {
		go lv.run(context.Background(), v.pending)
		return false
	}
	bufs := v.pending
	if int(n) < v.size {
		bufs, _ = splitBuffers(slices.Clone(v.pending), int(n))
	}
	wrote, err := writevNow(v.raw, bufs, &sh.iov)
	lv.vh.m.bytes.Add(float64(wrote))
	if err != nil {
		lv.end()
		return false
	}
	v.consume(wrote)
	switch {
	case wrote > 0:
		v.stalled, v.active = time.Time{}, now
	case v.stalled.IsZero():
		v.stalled = now
	case now.Sub(v.stalled) > lv.s.writeTimeout:
		lv.vh.m.dropped.Inc()
		lv.s.log.Info("live viewer stalled: dropped", "vhost", lv.vh.name, "stream", lv.name, "timeout", lv.s.writeTimeout.String())
		lv.end()
		return false
	}
	return true
}

// gather takes the units the viewer has, up to liveMaxWrite pending;
// false when the viewer is dropped for lag or the stream ended.
func (v *hubViewer) gather() bool {
	for v.size < liveMaxWrite {
		u, ok, err := v.lv.v.TryNext()
		if err != nil {
			return false
		}
		if !ok {
			return true
		}
		if v.size == 0 {
			v.due = time.Unix(0, u.At).Add(liveBatch)
		}
		v.pending, v.size = v.lv.take(v.pending, v.size, u)
	}
	return true
}

// consume drops the first n written bytes from pending.
func (v *hubViewer) consume(n int64) {
	v.size -= int(n)
	i := 0
	for ; i < len(v.pending) && n >= int64(len(v.pending[i])); i++ {
		n -= int64(len(v.pending[i]))
	}
	if i < len(v.pending) && n > 0 {
		v.pending[i] = v.pending[i][n:]
	}
	rest := copy(v.pending, v.pending[i:])
	clear(v.pending[rest:])
	v.pending = v.pending[:rest]
	if rest == 0 && cap(v.pending) > 16 {
		v.pending = nil // a burst's slice is not kept for the whole session
	}
}

// gone reports whether the viewer closed its end, without waiting.
func (v *hubViewer) gone() bool {
	var b [1]byte
	var n int
	var rerr error
	err := v.raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), b[:])
		return true
	})
	switch {
	case err != nil:
		return true
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		return false
	case rerr != nil:
		return true
	}
	return n == 0 // EOF
}

// doneCtx makes Session.Next answer without waiting.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// rawConnOf returns c's raw connection when writes to it can be made
// without blocking (a plain TCP connection), else nil.
func rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// writevNow writes as much of bufs as the socket takes now: 0 and no
// error when it is full.
func writevNow(raw syscall.RawConn, bufs [][]byte, scratch *[]syscall.Iovec) (int64, error) {
	iov := (*scratch)[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if len(iov) == 1024 { // IOV_MAX
			break
		}
		v := syscall.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	*scratch = iov
	if len(iov) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := raw.Write(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			if errno != syscall.EINTR {
				return true
			}
		}
	})
	clear(iov) // do not keep the units alive
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, errno
	}
	return int64(n), nil
}
