package streams

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Stream kinds, found when the stream is ingested.
const (
	KindFile = "file" // finite: copied to every node's disk
	KindLive = "live" // unbounded: relayed
)

// SourcePush is the Source of a stream fed by a source client on the ingest port.
const SourcePush = "push"

// Stream is the replicated unit: the desired state of one inbound stream.
type Stream struct {
	Name      string    `json:"localStreamName"`
	Source    string    `json:"uri"`
	Kind      string    `json:"kind"`
	Origin    string    `json:"origin"`
	ConfigID  uint64    `json:"configId"`
	KeepAlive bool      `json:"keepAlive"`
	CreatedAt time.Time `json:"createdAt"`
}

// Errors callers branch on.
var (
	ErrExists     = errors.New("a stream with this localStreamName already exists")
	ErrNotFound   = errors.New("no such stream")
	ErrConflict   = errors.New("the name conflicts with an existing stream's path")
	ErrBadName    = errors.New("invalid localStreamName")
	ErrNotReady   = errors.New("this node's copy of the stream is not ready yet")
	ErrNotCarried = errors.New("this node does not carry the stream")
)

const maxNameLen = 255

// ValidateName checks that name can be a stream name: a relative path of
// [A-Za-z0-9._-] segments, so that it can never escape the data directory
// and maps one-to-one onto an edge URL path.
func ValidateName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxNameLen))
	case strings.HasPrefix(name, "/"):
		return bad("must not start with '/'")
	case strings.HasSuffix(name, "/"):
		return bad("must not end with '/'")
	case strings.Contains(name, ".."):
		return bad("must not contain '..'")
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-'
		if !ok {
			return bad(fmt.Sprintf("character %q is not allowed (use A-Z a-z 0-9 . _ / -)", c))
		}
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." {
			return bad("empty or '.' path segment")
		}
	}
	if name == "health" || name == "metrics" {
		return bad("reserved for the node's own endpoints")
	}
	return nil
}

// NameFromURI computes a localStreamName from a source URI when none is
// given, as EMS does: the last path segment of the URI.
func NameFromURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	base := path.Base(u.Path)
	if base == "." || base == "/" || base == "" {
		base = u.Hostname()
	}
	var b strings.Builder
	for _, c := range base {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), ".")
	return name, ValidateName(name)
}

// conflicts reports whether a and b cannot both exist on disk: one is a
// directory prefix of the other ("live" and "live/a.mp3").
func conflicts(a, b string) bool {
	return strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}
