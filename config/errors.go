package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrUnknownFormat is wrapped by the error Load returns for a file whose
// extension is neither .toml nor .ini.
var ErrUnknownFormat = errors.New("unknown config format")

// Error is a problem with a config file. Load and Validate return it (or
// several joined with errors.Join, in the order of the file); branch on it
// with errors.As.
//
// It prints as "file:line: key: message". Line is 0 when the key is not
// written in the file (a default or a value set in code); File is "" when
// the config did not come from a file.
type Error struct {
	File string // the path given to Load, or Config.Source
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. "edge.vhosts.www.ratio"; "" for file-level errors
	Msg  string // what is wrong and what was expected
	Err  error  // the underlying error, if any (a read error, a syntax error)
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// keyString renders a key path the way TOML writes it (quoting parts that
// are not bare keys), which is also how errors name INI keys.
func keyString(path ...string) string { return toml.Key(path).String() }

// joinErrors orders errs by line (errors without a line last, then by key)
// and joins them. It returns nil for none and the *Error itself for one.
func joinErrors(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Key < b.Key
	})
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, or "".
func suggest(name string, candidates []string) string {
	best, bestDist := "", -1
	limit := 2
	if len(name) <= 3 {
		limit = 1
	}
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), c)
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
// Names longer than 64 bytes are never typos of a config key.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
