package edge

import (
	"net/http"
	"strings"
	"time"
)

// liveBurst is how much of a live stream a new viewer gets at once, so that
// a player starts playing immediately (Icecast's burst-on-connect).
const liveBurst = 5 * time.Second

// writeTimeout drops a viewer that has not taken a unit for this long.
const writeTimeout = 20 * time.Second

// serveLive relays a live stream: the header (fMP4 init segment), a burst
// of the recent units (burst long) starting at a key unit, then the units
// as they come.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, name string, burst time.Duration) {
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
	s.requests.WithLabelValues(http.StatusText(http.StatusOK)).Inc()
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := http.NewResponseController(w)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
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
