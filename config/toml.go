package config

import (
	"errors"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// readTOML parses src into the decoder's tree and finds the line of every
// table header and key.
func readTOML(file string, src []byte) (map[string]any, positions, *Error) {
	var tree map[string]any
	if _, err := toml.Decode(string(src), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if st := pe.Position.Start; st >= 0 && st <= len(src) {
				// The parser counts an error at a line's '\n' as on the
				// next line.
				line = 1 + strings.Count(string(src[:st]), "\n")
			}
			e := &Error{File: file, Line: line, Msg: "invalid TOML: " + pe.Message, Err: err}
			// The parser names the last key it read; name it too when it is
			// on the line of the error, so it is the key at fault.
			if pe.LastKey != "" && tomlPositions(string(src))[pe.LastKey] == pe.Position.Line {
				e.Key = pe.LastKey
			}
			return nil, nil, e
		}
		return nil, nil, &Error{File: file, Msg: "invalid TOML: " + err.Error(), Err: err}
	}
	return tree, tomlPositions(string(src)), nil
}

// tomlPositions maps keys to the lines that write them. The TOML library
// keeps key positions to itself, so this is a small line scanner of its own:
// it follows table headers ([a.b], and [[a.b]] whose entries it numbers from
// 1, as errors name them), key lines (bare, quoted and dotted keys) and skips
// over multi-line strings and arrays. Keys inside inline tables get no line
// of their own (positions.near falls back to the enclosing key). It runs
// only on files the TOML parser accepted.
func tomlPositions(src string) positions {
	s := &tomlScanner{pos: positions{}, arrays: map[string]int{}}
	src = strings.TrimPrefix(src, "\ufeff")
	for i, line := range strings.Split(src, "\n") {
		s.scanLine(i+1, line)
	}
	return s.pos
}

type tomlScanner struct {
	pos    positions
	cur    []string       // the current table, with array entries numbered
	arrays map[string]int // entries seen so far per array of tables
	depth  int            // open [ and { of a value spanning lines
	ml     string         // the delimiter of an open multi-line string
}

func (s *tomlScanner) record(path []string, line int) {
	k := keyString(path...)
	if _, ok := s.pos[k]; !ok {
		s.pos[k] = line
	}
}

func (s *tomlScanner) scanLine(n int, line string) {
	i := 0
	if s.ml == "" && s.depth == 0 {
		i = skipBlank(line, 0)
		if i >= len(line) || line[i] == '#' {
			return
		}
		if line[i] == '[' {
			s.header(n, line, i)
			return
		}
		segs, j, ok := scanTOMLKey(line, i)
		if !ok {
			return
		}
		j = skipBlank(line, j)
		if j >= len(line) || line[j] != '=' {
			return
		}
		full := append(s.cur[:len(s.cur):len(s.cur)], segs...)
		for k := len(s.cur) + 1; k <= len(full); k++ {
			s.record(full[:k], n)
		}
		i = j + 1
	}
	s.scanValue(line, i)
}

func (s *tomlScanner) header(n int, line string, i int) {
	array := strings.HasPrefix(line[i:], "[[")
	if array {
		i += 2
	} else {
		i++
	}
	segs, _, ok := scanTOMLKey(line, i)
	if !ok {
		s.cur = nil
		return
	}
	var path []string
	for k, seg := range segs {
		path = append(path, seg)
		if array && k == len(segs)-1 {
			s.record(path, n)
			key := keyString(path...)
			s.arrays[key]++
			path = append(path, strconv.Itoa(s.arrays[key]))
		} else if c := s.arrays[keyString(path...)]; c > 0 {
			path = append(path, strconv.Itoa(c))
		}
		s.record(path, n)
	}
	s.cur = path
}

// scanValue follows strings, comments and brackets from line[i:] so that
// the scanner knows whether the value goes on past this line.
func (s *tomlScanner) scanValue(line string, i int) {
	for i < len(line) {
		if s.ml != "" {
			j := closingTriple(line, i, s.ml)
			if j < 0 {
				return
			}
			i, s.ml = j, ""
			continue
		}
		switch c := line[i]; {
		case c == '#':
			return
		case strings.HasPrefix(line[i:], `"""`) || strings.HasPrefix(line[i:], `'''`):
			s.ml = line[i : i+3]
			i += 3
		case c == '"':
			i = skipBasicString(line, i+1)
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return
			}
			i += j + 2
		case c == '[' || c == '{':
			s.depth++
			i++
		case c == ']' || c == '}':
			if s.depth > 0 {
				s.depth--
			}
			i++
		default:
			i++
		}
	}
}

// closingTriple returns the index just past the delimiter q (three double
// or three single quotes) that closes a multi-line string, searching from
// line[i:], or -1.
func closingTriple(line string, i int, q string) int {
	for {
		j := strings.Index(line[i:], q)
		if j < 0 {
			return -1
		}
		j += i
		if q == `"""` && escaped(line, j) {
			i = j + 1
			continue
		}
		end := j + 3
		// Up to two more quotes belong to the string: """a"""" is `a"`.
		for extra := 0; extra < 2 && end < len(line) && line[end] == q[0]; extra++ {
			end++
		}
		return end
	}
}

// escaped reports whether line[j] follows an odd number of backslashes.
func escaped(line string, j int) bool {
	n := 0
	for k := j - 1; k >= 0 && line[k] == '\\'; k-- {
		n++
	}
	return n%2 == 1
}

// skipBasicString returns the index just past the closing quote of the
// "…" string whose contents start at line[i:] (or len(line)).
func skipBasicString(line string, i int) int {
	for i < len(line) {
		switch line[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i + 1
		}
		i++
	}
	return len(line)
}

// scanTOMLKey reads a possibly dotted key at line[i:].
func scanTOMLKey(line string, i int) (segs []string, next int, ok bool) {
	for {
		i = skipBlank(line, i)
		if i >= len(line) {
			return nil, i, false
		}
		var seg string
		switch line[i] {
		case '"':
			j := skipBasicString(line, i+1)
			if j > len(line) || line[j-1] != '"' || j-1 == i {
				return nil, i, false
			}
			raw := line[i:j]
			u, err := strconv.Unquote(raw)
			if err != nil {
				u = raw[1 : len(raw)-1]
			}
			seg, i = u, j
		case '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, i, false
			}
			seg, i = line[i+1:i+1+j], i+j+2
		default:
			j := i
			for j < len(line) && isBareKeyByte(line[j]) {
				j++
			}
			if j == i {
				return nil, i, false
			}
			seg, i = line[i:j], j
		}
		segs = append(segs, seg)
		i = skipBlank(line, i)
		if i < len(line) && line[i] == '.' {
			i++
			continue
		}
		return segs, i, true
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func skipBlank(line string, i int) int {
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i
}
