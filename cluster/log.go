package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is below slog's Debug: raft's and memberlist's own debug
// chatter goes there, so it shows only when a handler asks for it.
const levelTrace = slog.LevelDebug - 4

// slogLevel maps hclog levels to slog: raft's INFO is routine (elections,
// snapshots, peers) and becomes Debug; WARN and ERROR are kept.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return levelTrace
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// hclogAdapter is an hclog.Logger that writes to slog. raft logs through it.
type hclogAdapter struct {
	log  *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{log: l.With("component", name), name: name}
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off {
		return
	}
	lvl := slogLevel(level)
	ctx := context.Background()
	if !h.log.Enabled(ctx, lvl) {
		return
	}
	h.log.Log(ctx, lvl, msg, fixArgs(args)...)
}

// fixArgs renders hclog's formatting helpers (hclog.Fmt) as slog cannot.
func fixArgs(args []any) []any {
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				out := slices.Clone(args)
				out[i] = fmt.Sprintf(format, f[1:]...)
				return fixArgs(out)
			}
		}
	}
	return args
}

func (h *hclogAdapter) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l hclog.Level) bool {
	return h.log.Enabled(context.Background(), slogLevel(l))
}

func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []interface{} { return h.args }

func (h *hclogAdapter) With(args ...interface{}) hclog.Logger {
	return &hclogAdapter{log: h.log.With(args...), name: h.name, args: append(append([]any{}, h.args...), args...)}
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	n := name
	if h.name != "" {
		n = h.name + "." + name
	}
	return &hclogAdapter{log: h.log.With("sub", name), name: n, args: h.args}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{log: h.log.With("sub", name), name: name, args: h.args}
}

// SetLevel is ignored: the slog handler decides what is shown.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &prefixedWriter{log: h.log}
}

// prefixedWriter turns lines written through a *log.Logger, in the
// "[LEVEL] component: message" form memberlist uses, into slog records.
type prefixedWriter struct{ log *slog.Logger }

func newStdLogger(l *slog.Logger, name string) *log.Logger {
	return log.New(&prefixedWriter{log: l.With("component", name)}, "", 0)
}

func (w *prefixedWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		lvl := slog.LevelDebug
		if strings.HasPrefix(s, "[") {
			if end := strings.IndexByte(s, ']'); end > 0 {
				lvl = prefixLevel(s[1:end])
				s = strings.TrimSpace(s[end+1:])
			}
		}
		// "memberlist: Suspect node-1 has failed" → "Suspect node-1 has failed"
		if i := strings.Index(s, ": "); i > 0 && !strings.ContainsAny(s[:i], " =") {
			s = s[i+2:]
		}
		if w.log.Enabled(context.Background(), lvl) {
			w.log.Log(context.Background(), lvl, s)
		}
	}
	return len(p), nil
}

func prefixLevel(p string) slog.Level {
	switch strings.ToUpper(p) {
	case "TRACE", "DEBUG":
		return levelTrace
	case "INFO":
		return slog.LevelDebug
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERR", "ERROR":
		return slog.LevelError
	}
	return slog.LevelDebug
}
