package streams

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// IngestHandler takes live streams from Icecast source clients: HTTP PUT
// (chunked, or unframed after "Expect: 100-continue" as ffmpeg's icecast://
// sends it) and the legacy SOURCE method, to /<mount>, with basic auth. The
// mount without its leading slash is the stream's name.
type IngestHandler struct {
	m        *Manager
	userHash [32]byte
	passHash [32]byte
	log      *slog.Logger
}

// NewIngestHandler returns the ingest handler for source_user/source_password.
func NewIngestHandler(m *Manager, user, password string) *IngestHandler {
	return &IngestHandler{m: m, userHash: sha256.Sum256([]byte(user)), passHash: sha256.Sum256([]byte(password)), log: m.log.With("component", "ingest")}
}

func (h *IngestHandler) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return ok && subtle.ConstantTimeCompare(u[:], h.userHash[:])&subtle.ConstantTimeCompare(p[:], h.passHash[:]) == 1
}

func (h *IngestHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != "SOURCE" && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, SOURCE")
		http.Error(w, "405 source clients PUT (or SOURCE) a stream to its mount", http.StatusMethodNotAllowed)
		return
	}
	if !h.authorized(r) {
		h.log.Warn("source refused: wrong or missing credentials", "remote", r.RemoteAddr, "mount", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Basic realm="castmesh ingest"`)
		http.Error(w, "401 unauthorized", http.StatusUnauthorized)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	in, err := h.m.OpenIngest(r.Context(), name, r.Header.Get("Content-Type"), r.Header)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrSourceBusy), errors.Is(err, ErrNotPush), errors.Is(err, ErrConflict):
			code = http.StatusConflict
		case errors.Is(err, ErrUnsupported):
			code = http.StatusUnsupportedMediaType
		case errors.Is(err, ErrBadName):
			code = http.StatusBadRequest
		}
		h.log.Warn("source refused", "mount", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), code)
		return
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		// A framed body: net/http answers Expect: 100-continue and decodes
		// the chunks.
		rc := http.NewResponseController(w)
		err := in.Feed(r.Context(), r.Body, rc.SetReadDeadline)
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			w.WriteHeader(http.StatusOK)
		}
		return
	}
	// An unframed body runs until the client closes: take the connection.
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		in.Close()
		http.Error(w, "500 cannot take the connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		rw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	} else {
		rw.WriteString("HTTP/1.0 200 OK\r\n\r\n") // what legacy SOURCE clients wait for
	}
	if err := rw.Flush(); err != nil {
		in.Close()
		return
	}
	in.Feed(r.Context(), readerOf(rw.Reader, conn), conn.SetReadDeadline)
}

// readerOf reads what net/http buffered, then the connection.
func readerOf(buffered *bufio.Reader, conn net.Conn) io.Reader {
	if n := buffered.Buffered(); n > 0 {
		b, _ := buffered.Peek(n)
		return io.MultiReader(strings.NewReader(string(b)), conn)
	}
	return conn
}
