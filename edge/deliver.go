package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/castmesh/castmesh/media"
	"github.com/castmesh/castmesh/shaping"
)

// delivery is the http.ResponseWriter http.ServeContent writes a file
// response to. ServeContent does the HTTP (conditionals, Range, 206/416,
// HEAD, Content-Length); its body copy arrives here as ReadFrom of an
// *io.LimitedReader over the copy's content, which sends
//
//   - the header ranges (from media/) unthrottled,
//   - then the boost and the paced rest through a shaping.Session,
//
// each chunk by sendfile from a descriptor borrowed from the copy, under a
// write deadline renewed per chunk. ReadFrom is kept, never hidden, so the
// server's own ReadFrom (sendfile) does the writing.
type delivery struct {
	w   http.ResponseWriter
	rf  io.ReaderFrom // w's ReadFrom, nil if it has none (tests' recorders)
	rc  *http.ResponseController
	ctx context.Context
	s   *Server
	vh  *vhost
	oc  *openCopy
	pol shaping.Policy

	code      int
	started   bool             // counted as an active session
	sess      *shaping.Session // boost and pacing of the media data
	deadlines bool             // a write deadline was set
	deadline  time.Time        // the write deadline set last
	lr        io.LimitedReader // the chunk being sent (kept: no allocation per chunk)
	flushed   bool             // a write reached the socket whole (headers included)
	sent      int64            // body bytes written
	dropped   bool             // ended by the write timeout
}

func (d *delivery) Header() http.Header { return d.w.Header() }

func (d *delivery) WriteHeader(code int) {
	d.code = code
	d.w.WriteHeader(code)
}

// Write carries what ServeContent writes itself (error texts). They are
// short and not paced.
func (d *delivery) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	n, err := d.w.Write(b)
	d.count(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (d *delivery) Unwrap() http.ResponseWriter { return d.w }

func (d *delivery) ReadFrom(src io.Reader) (int64, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	d.start()
	if lr, ok := src.(*io.LimitedReader); ok {
		if c, ok := lr.R.(*content); ok && c.oc == d.oc {
			n, err := d.sendRange(c.off, lr.N)
			c.off += n
			lr.N -= n
			return n, err
		}
	}
	// A multipart/byteranges body comes through a pipe: paced as data.
	return d.sendStream(src)
}

// start counts the session as active (and throttled) once a body is sent.
func (d *delivery) start() {
	if d.started {
		return
	}
	d.started = true
	d.vh.m.active.Inc()
	if d.pol.Throttled {
		d.vh.m.throttled.Inc()
	}
}

// finish ends the session's pacing and counts it out.
func (d *delivery) finish() {
	if d.sess != nil {
		d.sess.Close()
		d.sess = nil
	}
	if d.started {
		d.vh.m.active.Dec()
		if d.pol.Throttled {
			d.vh.m.throttled.Dec()
		}
	}
	if d.dropped {
		d.vh.m.dropped.Inc()
	}
	if d.deadlines {
		// The connection may serve the next request of a keep-alive viewer.
		d.rc.SetWriteDeadline(time.Time{})
	}
}

func (d *delivery) count(n int64) {
	if n > 0 {
		d.sent += n
		d.vh.m.bytes.Add(float64(n))
	}
}

// capped reports whether a session cap, the vhost's or the node's cap
// applies: then even the header goes through the pacer, which keeps every
// byte under the caps.
func (d *delivery) capped() bool {
	return d.vh.sessionCap > 0 || d.vh.group.Cap() > 0 || d.s.pacer.NodeCap() > 0
}

// sendRange sends bytes [start, start+n) of the copy: header ranges
// unthrottled, media data through the session (boost, then pacing).
func (d *delivery) sendRange(start, n int64) (int64, error) {
	info := d.oc.info
	end := start + n
	pos := start
	for pos < end {
		segEnd, isHeader := segment(info, pos, end)
		var err error
		var w int64
		if isHeader {
			if d.sess != nil && !hasData(info, segEnd, end) {
				// No media data follows (a moov at the end): the
				// session's pacing is over, and an idle session
				// would hold its share of a cap.
				d.sess.Close()
				d.sess = nil
			}
			w, err = d.sendHeader(pos, segEnd-pos)
		} else {
			w, err = d.sendData(pos, segEnd-pos)
		}
		pos += w
		if err != nil {
			return pos - start, err
		}
	}
	return pos - start, nil
}

// segment returns where the run of header (or of data) bytes that starts
// at pos ends, before end, and whether it is header.
func segment(info *media.Info, pos, end int64) (int64, bool) {
	if info == nil {
		return end, false
	}
	for _, r := range info.Header {
		switch {
		case pos >= r.Offset && pos < r.End():
			return min(end, r.End()), true
		case r.Offset > pos:
			return min(end, r.Offset), false
		}
	}
	return end, false
}

// hasData reports whether [from, to) holds bytes that are not header.
func hasData(info *media.Info, from, to int64) bool {
	if from >= to {
		return false
	}
	if info == nil {
		return true
	}
	return info.HeaderBytesIn(from, to) < to-from
}

// sendHeader sends header bytes unthrottled: at once when no cap applies,
// else through an unthrottled session, which only the caps hold back.
func (d *delivery) sendHeader(off, n int64) (int64, error) {
	if !d.capped() {
		return d.sendFile(off, n)
	}
	s := d.vh.group.NewSession(shaping.Policy{}, d.vh.sessionCap)
	defer s.Close()
	return d.paced(s, off, n)
}

// sendData sends media data through the session: the boost as fast as the
// caps allow, then grants at the policy's rate.
func (d *delivery) sendData(off, n int64) (int64, error) {
	if d.sess == nil {
		d.sess = d.vh.group.NewSession(d.pol, d.vh.sessionCap)
	}
	return d.paced(d.sess, off, n)
}

func (d *delivery) paced(s *shaping.Session, off, n int64) (int64, error) {
	if !d.flushed && (s.Throttled() || d.capped()) {
		// Next may wait (a paced session with no boost, a cap): send the
		// response header now, so the viewer knows at once what comes.
		d.setDeadline(true)
		if err := d.rc.Flush(); err != nil {
			if isTimeout(err) {
				d.stalled()
			}
			return 0, err
		}
		d.flushed = true
	}
	var done int64
	for done < n {
		grant, err := s.Next(d.ctx, n-done)
		if err != nil {
			return done, err
		}
		w, err := d.sendFile(off+done, grant)
		done += w
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// sendFile writes n bytes of the copy from off by sendfile (the server's
// ReadFrom of a LimitedReader over an *os.File), from a borrowed
// descriptor. The write deadline is renewed while bytes move, so only a
// viewer that takes nothing for the write timeout is dropped, however slow
// its link.
func (d *delivery) sendFile(off, n int64) (int64, error) {
	f, err := d.oc.borrow()
	if err != nil {
		return 0, err
	}
	defer d.oc.giveBack(f)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	var done int64
	for done < n {
		part := n - done
		if !d.flushed {
			// The first write carries the response header through the
			// server's buffer; keep it small so that it either reaches
			// the socket or is a stall.
			part = min(part, firstWrite)
		}
		lr := &d.lr
		*lr = io.LimitedReader{R: f, N: part}
		d.setDeadline(!d.flushed)
		var w int64
		if d.rf != nil {
			w, err = d.rf.ReadFrom(lr)
		} else {
			w, err = io.Copy(writerOnly{d.w}, lr)
		}
		done += w
		d.count(w)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if w > 0 && d.flushed {
					d.deadline = time.Time{} // slow, not stalled: a new deadline
					continue
				}
				d.stalled()
			}
			return done, err
		}
		if w == 0 {
			return done, io.ErrUnexpectedEOF // the file is shorter than it was
		}
		d.flushed = true
	}
	return done, nil
}

// firstWrite bounds the first write of a response.
const firstWrite = 64 << 10

// sendStream paces a body that is not the copy itself (multipart ranges).
func (d *delivery) sendStream(src io.Reader) (int64, error) {
	if d.sess == nil {
		d.sess = d.vh.group.NewSession(d.pol, d.vh.sessionCap)
	}
	var done int64
	buf := make([]byte, 32<<10)
	for {
		grant, err := d.sess.Next(d.ctx, int64(len(buf)))
		if err != nil {
			return done, err
		}
		r, rerr := io.ReadFull(src, buf[:grant])
		if r > 0 {
			d.setDeadline(false)
			w, err := d.w.Write(buf[:r])
			done += int64(w)
			d.count(int64(w))
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					d.stalled()
				}
				return done, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return done, nil
		}
		if rerr != nil {
			return done, rerr
		}
	}
}

// setDeadline makes sure the write about to start has most of the write
// timeout: a paced session writes every second or so, and setting the
// deadline on each write was 7 % of a paced node's CPU, so it is renewed
// only when a quarter of it has passed. A viewer that takes nothing is so
// dropped after 3/4 to all of the write timeout.
func (d *delivery) setDeadline(force bool) {
	now := time.Now()
	if !force && d.deadline.Sub(now) > d.s.writeTimeout*3/4 {
		return
	}
	d.deadline = now.Add(d.s.writeTimeout)
	if d.rc.SetWriteDeadline(d.deadline) == nil {
		d.deadlines = true
	}
}

func (d *delivery) stalled() {
	if !d.dropped {
		d.dropped = true
		d.s.log.Info("viewer stalled: dropped", "vhost", d.vh.name, "stream", d.oc.key.name,
			"timeout", d.s.writeTimeout.String(), "sent", d.sent)
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
