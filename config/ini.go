package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"
)

// The INI form writes the same keys as the TOML form:
//
//   - one section per table: [node], [api], [edge.vhosts.www];
//   - arrays of tables as numbered sections:
//     [stream_load_balancer.destination_ems_apiproxies.1], .2, …;
//   - key = value, where a value is bare text up to an inline comment
//     (" #" or " ;"), or a "double-quoted" (\" and \\ escapes) or
//     'single-quoted' string; booleans are true or false;
//   - lists as comma-separated values: hosts = a.com, *.b.com;
//   - comments on their own line start with # or ;.
//
// gopkg.in/ini.v1 splits the file into sections and keys and is told to
// leave values raw (no inline comments, no quote stripping, no "\"
// continuation), so that the value syntax above is the same for every key.
// It does not report lines, so iniScan walks the file the same way to find
// them; the two must agree (FuzzLoadINI checks that they do).
var iniOptions = ini.LoadOptions{
	IgnoreContinuation:      true,
	IgnoreInlineComment:     true,
	PreserveSurroundedQuote: true,
	KeyValueDelimiters:      "=",
	AllowNonUniqueSections:  true,
}

// readINI parses src into the decoder's tree and finds the line of every
// section and key.
func readINI(file string, src []byte) (map[string]any, positions, *Error) {
	sc := scanINI(src)
	f, err := ini.LoadSources(iniOptions, src)
	if err != nil {
		if sc.err != nil {
			return nil, nil, &Error{File: file, Line: sc.err.line, Msg: "invalid INI: " + sc.err.msg, Err: err}
		}
		return nil, nil, &Error{File: file, Msg: "invalid INI: " + err.Error(), Err: err}
	}
	if sc.err != nil {
		// The line scanner and ini.v1 disagree about the file; trust
		// neither.
		return nil, nil, &Error{File: file, Line: sc.err.line, Msg: "invalid INI: " + sc.err.msg}
	}
	sections := f.Sections()
	if len(sections) == 0 || len(sections)-1 != len(sc.sections) {
		return nil, nil, &Error{File: file, Msg: "invalid INI: cannot match sections to lines"}
	}
	if keys := sections[0].Keys(); len(keys) > 0 {
		name := keys[0].Name()
		line := 0
		if len(sc.preamble) > 0 {
			line = sc.preamble[0].line
			name = sc.preamble[0].name
		}
		return nil, nil, &Error{File: file, Line: line, Key: name,
			Msg: "key outside any section: every key belongs under a [section] header such as [node]"}
	}

	pos := positions{}
	record := func(path []string, line int) {
		k := keyString(path...)
		if _, ok := pos[k]; !ok {
			pos[k] = line
		}
	}
	tree := map[string]any{}
	defined := map[string]int{}
	for i, sec := range sections[1:] {
		ss := sc.sections[i]
		if sec.Name() != ss.name {
			return nil, nil, &Error{File: file, Line: ss.line, Msg: "invalid INI: cannot match sections to lines"}
		}
		segs := strings.Split(sec.Name(), ".")
		for j := range segs {
			segs[j] = strings.TrimSpace(segs[j])
			if segs[j] == "" {
				return nil, nil, &Error{File: file, Line: ss.line,
					Msg: fmt.Sprintf("invalid section name [%s]: expected names joined by dots, such as [edge.vhosts.www]", sec.Name())}
			}
		}
		name := keyString(segs...)
		if first, dup := defined[name]; dup {
			return nil, nil, &Error{File: file, Line: ss.line, Key: name,
				Msg: fmt.Sprintf("section [%s] repeated (first at line %d)", sec.Name(), first)}
		}
		defined[name] = ss.line
		for j := 1; j <= len(segs); j++ {
			record(segs[:j], ss.line)
		}

		tbl := tree
		for j, seg := range segs {
			switch next := tbl[seg].(type) {
			case map[string]any:
				tbl = next
			case nil:
				m := map[string]any{}
				tbl[seg] = m
				tbl = m
			default:
				k := keyString(segs[:j+1]...)
				return nil, nil, &Error{File: file, Line: ss.line, Key: k,
					Msg: fmt.Sprintf("section [%s] clashes with key %s at line %d", sec.Name(), k, pos[k])}
			}
		}
		for _, key := range sec.Keys() {
			path := append(segs[:len(segs):len(segs)], key.Name())
			lines := ss.keys[key.Name()]
			if len(lines) == 0 {
				return nil, nil, &Error{File: file, Line: ss.line, Msg: "invalid INI: cannot match keys to lines"}
			}
			if len(lines) > 1 {
				return nil, nil, &Error{File: file, Line: lines[1], Key: keyString(path...),
					Msg: fmt.Sprintf("key repeated (first at line %d)", lines[0])}
			}
			record(path, lines[0])
			if _, clash := tbl[key.Name()]; clash {
				return nil, nil, &Error{File: file, Line: lines[0], Key: keyString(path...),
					Msg: fmt.Sprintf("key clashes with section [%s.%s]", sec.Name(), key.Name())}
			}
			tbl[key.Name()] = iniValue(key.Value())
		}
	}
	return tree, pos, nil
}

// iniScan is what scanINI finds: the sections in file order with the lines
// of their keys, and the first syntax error.
type iniScan struct {
	preamble []iniKeyLine // keys before the first section
	sections []iniSection
	err      *iniSyntaxError
}

type iniKeyLine struct {
	name string
	line int
}

type iniSection struct {
	name string
	line int
	keys map[string][]int // key → every line it is written on
}

type iniSyntaxError struct {
	line int
	msg  string
}

// scanINI walks src line by line the way ini.v1 (with iniOptions) does,
// recording where each section and key is.
func scanINI(src []byte) *iniScan {
	sc := &iniScan{}
	s := string(src)
	switch {
	case strings.HasPrefix(s, "\xef\xbb\xbf"):
		s = s[3:]
	case strings.HasPrefix(s, "\xfe\xff"), strings.HasPrefix(s, "\xff\xfe"):
		s = s[2:]
	}
	lines := strings.SplitAfter(s, "\n")
	fail := func(n int, format string, args ...any) {
		if sc.err == nil {
			sc.err = &iniSyntaxError{line: n, msg: fmt.Sprintf(format, args...)}
		}
	}
	var cur *iniSection
	autoKey := 1
	for i := 0; i < len(lines) && sc.err == nil; i++ {
		n := i + 1
		line := strings.TrimLeftFunc(lines[i], unicode.IsSpace)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			end := strings.LastIndexByte(line, ']')
			if end < 0 {
				fail(n, "section header without a closing ]")
				break
			}
			name := line[1:end]
			if name == "" {
				fail(n, "empty section name []")
				break
			}
			sc.sections = append(sc.sections, iniSection{name: name, line: n, keys: map[string][]int{}})
			cur = &sc.sections[len(sc.sections)-1]
			autoKey = 1
			continue
		}
		name, offset, err := iniKeyName(line)
		if err != nil {
			fail(n, "%v", err)
			break
		}
		if name == "-" {
			name = "#" + strconv.Itoa(autoKey)
			autoKey++
		}
		if name == "" {
			fail(n, "empty key name")
			break
		}
		// A value opening with """ or ` that does not close on its line
		// goes on until a line that holds the closing quote.
		value := strings.TrimLeftFunc(line[offset:], unicode.IsSpace)
		quote := ""
		if len(value) > 3 && value[:3] == `"""` {
			quote = `"""`
		} else if value != "" && value[0] == '`' {
			quote = "`"
		}
		if quote != "" && !strings.Contains(value[len(quote):], quote) {
			closed := false
			for i+1 < len(lines) {
				i++
				if strings.Contains(lines[i], quote) {
					closed = true
					break
				}
			}
			if !closed {
				fail(n, "value opened with %s is never closed", quote)
				break
			}
		}
		if cur == nil {
			sc.preamble = append(sc.preamble, iniKeyLine{name, n})
			continue
		}
		cur.keys[name] = append(cur.keys[name], n)
	}
	return sc
}

// iniKeyName reads the key name of a key line, as ini.v1 does: a name up to
// "=", or a name in "…", """…""" or `…` quotes. It returns the offset just
// past the "=".
func iniKeyName(line string) (string, int, error) {
	quote := ""
	switch line[0] {
	case '"':
		if len(line) > 6 && line[:3] == `"""` {
			quote = `"""`
		} else {
			quote = `"`
		}
	case '`':
		quote = "`"
	}
	if quote != "" {
		start := len(quote)
		end := strings.Index(line[start:], quote)
		if end < 0 {
			return "", 0, errors.New("key name without a closing quote")
		}
		end += start
		eq := strings.IndexByte(line[end+start:], '=')
		if eq < 0 {
			return "", 0, errors.New(`expected "key = value"`)
		}
		return strings.TrimSpace(line[start:end]), end + eq + start + 1, nil
	}
	eq := strings.IndexByte(line, '=')
	if eq < 0 {
		return "", 0, fmt.Errorf(`expected "key = value" or a [section] header, got %s`, quoteShort(strings.TrimSpace(line)))
	}
	if eq == 0 {
		return "", 0, errors.New("empty key name")
	}
	return strings.TrimSpace(line[:eq]), eq + 1, nil
}

// parseINIScalar reads one value: bare text up to an inline comment, or a
// quoted string.
func parseINIScalar(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", nil
	}
	if s[0] == '"' || s[0] == '\'' {
		v, n, err := iniQuoted(s)
		if err != nil {
			return "", err
		}
		rest := strings.TrimSpace(s[n:])
		if rest != "" && rest[0] != '#' && rest[0] != ';' {
			return "", fmt.Errorf("unexpected %s after the closing quote", quoteShort(rest))
		}
		return v, nil
	}
	for i := range len(s) {
		if iniCommentAt(s, i) {
			return strings.TrimSpace(s[:i]), nil
		}
	}
	return s, nil
}

// parseINIList reads comma-separated values, each bare or quoted. An empty
// value is an empty list; a trailing comma is allowed.
func parseINIList(raw string) ([]string, error) {
	s := strings.TrimSpace(raw)
	out := []string{}
	i := 0
	for {
		i = skipBlank(s, i)
		if i >= len(s) || iniCommentAt(s, i) {
			return out, nil
		}
		var item string
		if s[i] == '"' || s[i] == '\'' {
			v, n, err := iniQuoted(s[i:])
			if err != nil {
				return nil, err
			}
			item = v
			i += n
		} else {
			j := i
			for j < len(s) && s[j] != ',' && !iniCommentAt(s, j) {
				j++
			}
			item = strings.TrimSpace(s[i:j])
			if item == "" {
				return nil, fmt.Errorf("empty element %d in list %s", len(out)+1, quoteShort(s))
			}
			i = j
		}
		out = append(out, item)
		i = skipBlank(s, i)
		switch {
		case i >= len(s) || iniCommentAt(s, i):
			return out, nil
		case s[i] == ',':
			i++
		default:
			return nil, fmt.Errorf("expected a comma after element %d in list %s", len(out), quoteShort(s))
		}
	}
}

// iniCommentAt reports whether an inline comment starts at s[i]: a # or ;
// at the start of the value or after a blank.
func iniCommentAt(s string, i int) bool {
	return (s[i] == '#' || s[i] == ';') && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t')
}

// iniQuoted reads the quoted string at the start of s and returns its value
// and length. "…" strings know the escapes \" and \\ (other backslashes are
// kept, so "C:\data" needs no doubling); '…' strings have none.
func iniQuoted(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case q == '"' && c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("missing closing %c in %s", q, quoteShort(s))
}
