package edge

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/castmesh/castmesh/streams"
)

// Streams opens a stream for a viewer: a file's local copy, or a live
// stream's relay.
type Streams interface {
	Stream(name string) (streams.Stream, bool)
	Open(name string) (*streams.Reader, error)
	OpenLive(name string, burst time.Duration) (*streams.LiveView, error)
}

// Options configure the edge handler.
type Options struct {
	Streams Streams
	// Health reports whether this node should receive viewers, and why not.
	Health   func() (ok bool, why string)
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Server is the edge's http.Handler.
type Server struct {
	opts     Options
	log      *slog.Logger
	requests *prometheus.CounterVec
}

// New returns the edge handler.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		opts: o,
		log:  o.Logger.With("component", "edge"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "castmesh_edge_requests_total", Help: "Viewer requests by HTTP status code.",
		}, []string{"code"}),
	}
	if o.Registry != nil {
		o.Registry.MustRegister(s.requests)
	}
	return s
}

// HealthPath is the load balancer's health check.
const HealthPath = "/health"

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath {
		s.serveHealth(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.error(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if streams.ValidateName(name) != nil {
		s.error(w, http.StatusNotFound, "not found")
		return
	}
	if st, ok := s.opts.Streams.Stream(name); ok && st.Kind == streams.KindLive {
		s.serveLive(w, r, name, liveBurst)
		return
	}
	rd, err := s.opts.Streams.Open(name)
	switch {
	case errors.Is(err, streams.ErrNotFound), errors.Is(err, streams.ErrNotCarried):
		s.error(w, http.StatusNotFound, "not found")
		return
	case errors.Is(err, streams.ErrNotReady):
		w.Header().Set("Retry-After", "1")
		s.error(w, http.StatusServiceUnavailable, "this node is still pulling the stream; retry shortly")
		return
	case err != nil:
		s.log.Error("open stream", "stream", name, "err", err)
		s.error(w, http.StatusInternalServerError, "internal error")
		return
	}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Type", ContentType(name))
	h.Set("ETag", rd.Copy.ETag())
	h.Set("Accept-Ranges", "bytes")
	// ServeContent on the *os.File keeps the sendfile path, handles Range
	// (206/416), HEAD, If-None-Match and If-Modified-Since.
	rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
	http.ServeContent(rec, r, "", rd.Copy.ModTime, rd.File)
	s.requests.WithLabelValues(http.StatusText(rec.code)).Inc()
}

// codeRecorder notes the status code. It forwards ReadFrom so that
// sendfile stays in use.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }
func (c *codeRecorder) ReadFrom(r io.Reader) (int64, error) {
	return c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
}
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (s *Server) error(w http.ResponseWriter, code int, msg string) {
	s.requests.WithLabelValues(http.StatusText(code)).Inc()
	http.Error(w, http.StatusText(code)+": "+msg, code)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ok, why := s.opts.Health()
	code, status := http.StatusOK, "ok"
	if !ok {
		code, status = http.StatusServiceUnavailable, "unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(map[string]string{"status": status, "reason": why})
	}
}

// ContentType is the media type of a stream, from its name's extension.
func ContentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".m4a":
		return "audio/mp4"
	case ".mp3":
		return "audio/mpeg"
	case ".aac":
		return "audio/aac"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
