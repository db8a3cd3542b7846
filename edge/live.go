package edge

import (
	"net/http"
	"strings"
	"time"

	"github.com/castmesh/castmesh/shaping"
)

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
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	write := func(b []byte) bool {
		for len(b) > 0 {
			n, err := sess.Next(r.Context(), int64(len(b))) // at once unless a cap holds it
			if err != nil {
				return false
			}
			rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			wrote, err := w.Write(b[:n])
			vh.m.bytes.Add(float64(wrote))
			if err != nil {
				if isTimeout(err) {
					vh.m.dropped.Inc()
					s.log.Info("live viewer stalled: dropped", "vhost", vh.name, "stream", name, "timeout", s.writeTimeout.String())
				}
				return false
			}
			b = b[n:]
		}
		if err := rc.Flush(); err != nil {
			if isTimeout(err) {
				vh.m.dropped.Inc()
			}
			return false
		}
		return true
	}
	for first := true; ; first = false {
		u, err := v.Next(r.Context())
		if err != nil {
			return
		}
		if hdr := v.Header(); first && len(hdr) > 0 && !write(hdr) {
			return
		}
		if !write(u.Data) {
			return
		}
	}
}
