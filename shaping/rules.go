package shaping

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Rules is a parsed throttling.txt: an ordered list where the first rule
// whose condition holds decides. The nil *Rules has no rules.
type Rules struct {
	Name  string // the file name given to ParseRules, used in messages
	Rules []Rule
}

// Rule is one line of throttling.txt:
// {condition}, {bandwidth}, {ratio}, {boost}.
type Rule struct {
	Line       int    // line number in the file, 1-based (0 for rules built in code)
	Conds      []Cond // all must hold ('&')
	NoThrottle bool   // "no": a matching request is never throttled

	Bandwidth Bandwidth // in the vhost's unit
	Ratio     Figure    // percent
	Boost     Figure    // seconds
}

// Bandwidth is the {bandwidth} field of a rule.
type Bandwidth struct {
	Set bool // false: omitted, the settings' bandwidth applies
	// Value is the bandwidth in the vhost's unit. With FromMedia it is the
	// fallback for a media file whose rate is unknown ("1000x"), and 0
	// means the settings' bandwidth ("x" alone).
	Value     float64
	FromMedia bool // "x" or "NNNx": use the media's own encoding rate
}

// Figure is the {ratio} or {boost} field of a rule.
type Figure struct {
	Set   bool // false: omitted, the settings' figure applies
	Value float64
}

// SyntaxError is a throttling.txt line that does not parse. Line and Col
// are 1-based; Col counts characters (runes), so it is what an editor shows.
type SyntaxError struct {
	File string
	Line int
	Col  int
	Msg  string // what was expected there
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// maxLineBytes bounds one line of a rules file.
const maxLineBytes = 64 << 10

// ParseRules reads a throttling.txt. name is used in error messages
// ("throttling.txt:3:7: expected ']' to close $IP["). The first syntax error
// is returned as a *SyntaxError; a read error is wrapped. Blank lines and
// '#' comments (whole-line or trailing, outside [...]) are skipped.
func ParseRules(name string, r io.Reader) (*Rules, error) {
	rs := &Rules{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		rule, ok, err := parseRuleLine(name, line, text)
		if err != nil {
			return nil, err
		}
		if ok {
			rs.Rules = append(rs.Rules, rule)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &SyntaxError{File: name, Line: line + 1, Col: 1, Msg: fmt.Sprintf("expected a line shorter than %d bytes", maxLineBytes)}
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rs, nil
}

// LoadRules reads the throttling.txt at path; errors name the path.
func LoadRules(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseRules(path, f)
}

// Match returns the first rule whose condition holds for req, or nil. A
// nil req is a request with no address, header or path.
func (rs *Rules) Match(req *Request) *Rule {
	if rs == nil {
		return nil
	}
	if req == nil {
		req = &Request{}
	}
	for i := range rs.Rules {
		if rs.Rules[i].Match(req) {
			return &rs.Rules[i]
		}
	}
	return nil
}

// Len is the number of rules; 0 for nil.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.Rules)
}

// Match reports whether all of the rule's terms hold for req.
func (r *Rule) Match(req *Request) bool {
	for i := range r.Conds {
		if !r.Conds[i].Match(req) {
			return false
		}
	}
	return true
}

// String returns the rules in throttling.txt syntax, one a line; it parses
// back to the same rules (line numbers aside).
func (rs *Rules) String() string {
	if rs == nil {
		return ""
	}
	var b strings.Builder
	for i := range rs.Rules {
		b.WriteString(rs.Rules[i].String())
		b.WriteByte('\n')
	}
	return b.String()
}

// String returns the rule in throttling.txt syntax, with omitted fields
// left empty ("$HEADER[cookie], , , 10").
func (r *Rule) String() string {
	var b strings.Builder
	for i := range r.Conds {
		if i > 0 {
			b.WriteString(" & ")
		}
		b.WriteString(r.Conds[i].String())
	}
	if r.NoThrottle {
		b.WriteString(", no")
		return b.String()
	}
	fields := make([]string, 3)
	if r.Bandwidth.Set {
		switch {
		case r.Bandwidth.FromMedia && r.Bandwidth.Value == 0:
			fields[0] = "x"
		case r.Bandwidth.FromMedia:
			fields[0] = formatNumber(r.Bandwidth.Value) + "x"
		default:
			fields[0] = formatNumber(r.Bandwidth.Value)
		}
	}
	if r.Ratio.Set {
		fields[1] = formatNumber(r.Ratio.Value)
	}
	if r.Boost.Set {
		fields[2] = formatNumber(r.Boost.Value)
	}
	n := 3
	for n > 0 && fields[n-1] == "" {
		n--
	}
	for _, f := range fields[:n] {
		b.WriteString(", ")
		b.WriteString(f)
	}
	return b.String()
}

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// lineParser parses one line; offsets are byte offsets into s.
type lineParser struct {
	file string
	line int
	s    string
	i    int
}

func (p *lineParser) errAt(off int, format string, args ...any) error {
	if off > len(p.s) {
		off = len(p.s)
	}
	return &SyntaxError{
		File: p.file,
		Line: p.line,
		Col:  utf8.RuneCountInString(p.s[:off]) + 1,
		Msg:  fmt.Sprintf(format, args...),
	}
}

func (p *lineParser) skipBlanks() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *lineParser) atEnd() bool { return p.i >= len(p.s) || p.s[p.i] == '#' }

// parseRuleLine parses one line; ok is false for a blank or comment line.
func parseRuleLine(file string, line int, s string) (Rule, bool, error) {
	p := &lineParser{file: file, line: line, s: s}
	p.skipBlanks()
	if p.atEnd() {
		return Rule{}, false, nil
	}
	r := Rule{Line: line}
	for {
		c, err := p.parseTerm()
		if err != nil {
			return Rule{}, false, err
		}
		r.Conds = append(r.Conds, c)
		p.skipBlanks()
		if p.i < len(p.s) && p.s[p.i] == '&' {
			p.i++
			p.skipBlanks()
			continue
		}
		break
	}
	if p.atEnd() {
		return r, true, nil
	}
	if p.s[p.i] != ',' {
		return Rule{}, false, p.errAt(p.i, "expected '&', ',' or the end of the line after the condition, got %q", nextRune(p.s[p.i:]))
	}
	if err := p.parseFields(&r); err != nil {
		return Rule{}, false, err
	}
	return r, true, nil
}

func nextRune(s string) string {
	_, n := utf8.DecodeRuneInString(s)
	return s[:n]
}

// parseTerm parses [!] ( [$]IP[...] | [$]HEADER[...] | [$]URL[...] | /pattern ).
func (p *lineParser) parseTerm() (Cond, error) {
	neg := false
	if p.i < len(p.s) && p.s[p.i] == '!' {
		neg = true
		p.i++
		p.skipBlanks()
	}
	const expectCond = "expected a condition: $IP[...], $HEADER[...], $URL[...] or a URL pattern starting with '/'"
	if p.atEnd() {
		return Cond{}, p.errAt(p.i, expectCond)
	}
	start := p.i
	dollar := p.s[p.i] == '$'
	j := p.i
	if dollar {
		j++
	}
	k := j
	for k < len(p.s) && isLetters(p.s[k:k+1]) {
		k++
	}
	word := strings.ToUpper(p.s[j:k])
	bracket := k < len(p.s) && p.s[k] == '['
	var parse func(string) (Cond, string, int)
	switch word {
	case "IP":
		parse = parseIPSpec
	case "HEADER":
		parse = parseHeaderSpec
	case "URL":
		parse = parseURLSpec
	}
	switch {
	case parse != nil && (dollar || bracket):
		if !bracket {
			return Cond{}, p.errAt(k, "expected '[' after $%s", word)
		}
	case dollar:
		return Cond{}, p.errAt(start, "unknown condition %q: expected $IP[...], $HEADER[...] or $URL[...]", p.s[start:k])
	case p.s[p.i] == '/' || p.s[p.i] == '*':
		// The bare URL form runs to the next ',', '&' or '#'.
		end := strings.IndexAny(p.s[p.i:], ",&#")
		if end < 0 {
			end = len(p.s)
		} else {
			end += p.i
		}
		c, msg, at := parseURLSpec(p.s[p.i:end])
		if msg != "" {
			return Cond{}, p.errAt(p.i+at, "%s", msg)
		}
		c.Negate = neg
		p.i = end
		return c, nil
	default:
		return Cond{}, p.errAt(start, expectCond)
	}
	open := k
	closeAt := strings.IndexByte(p.s[open+1:], ']')
	if closeAt < 0 {
		return Cond{}, p.errAt(len(p.s), "expected ']' to close $%s[", word)
	}
	closeAt += open + 1
	c, msg, at := parse(p.s[open+1 : closeAt])
	if msg != "" {
		return Cond{}, p.errAt(open+1+at, "%s", msg)
	}
	c.Negate = neg
	p.i = closeAt + 1
	return c, nil
}

// parseFields parses ", {bandwidth}, {ratio}, {boost}" from the ',' at p.i.
func (p *lineParser) parseFields(r *Rule) error {
	end := strings.IndexByte(p.s[p.i:], '#')
	if end < 0 {
		end = len(p.s)
	} else {
		end += p.i
	}
	type field struct {
		text string
		at   int // offset of text (or of where it would be)
	}
	var fields []field
	pos := p.i + 1 // after the ','
	for {
		next := strings.IndexByte(p.s[pos:end], ',')
		stop := end
		if next >= 0 {
			stop = pos + next
		}
		raw := p.s[pos:stop]
		lead := len(raw) - len(strings.TrimLeft(raw, " \t"))
		fields = append(fields, field{strings.TrimSpace(raw), pos + lead})
		if next < 0 {
			break
		}
		if len(fields) == 3 {
			return p.errAt(stop, "expected at most 3 fields after the condition: {bandwidth}, {ratio}, {boost}")
		}
		pos = stop + 1
	}
	bw := fields[0]
	switch {
	case bw.text == "":
	case strings.EqualFold(bw.text, "no"):
		r.NoThrottle = true
		for _, f := range fields[1:] {
			if f.text != "" {
				return p.errAt(f.at, "expected nothing after 'no' (a matching request is never throttled)")
			}
		}
		return nil
	case strings.EqualFold(bw.text, "x"):
		r.Bandwidth = Bandwidth{Set: true, FromMedia: true}
	default:
		text, fromMedia := bw.text, false
		if last := text[len(text)-1]; last == 'x' || last == 'X' {
			text, fromMedia = text[:len(text)-1], true
		}
		v, n := scanNumber(text)
		switch {
		case n == 0:
			return p.errAt(bw.at, "expected a bandwidth: a number in the vhost's unit, NNNx (the media's rate, NNN if unknown), x or no")
		case n < len(text) && isLetters(text[n:]):
			return p.errAt(bw.at+n, "expected a bandwidth without a unit: it is in the vhost's unit (the `unit` key, STON's <Bandwidth Unit>), got %q", text[n:])
		case n < len(text):
			return p.errAt(bw.at+n, "expected a bandwidth: a number in the vhost's unit, NNNx, x or no")
		case math.IsInf(v, 0):
			return p.errAt(bw.at, "expected a bandwidth that is not so large")
		case v == 0:
			return p.errAt(bw.at, "expected a bandwidth greater than 0 (write 'no' to never throttle a match)")
		}
		r.Bandwidth = Bandwidth{Set: true, Value: v, FromMedia: fromMedia}
	}
	if len(fields) > 1 && fields[1].text != "" {
		v, err := p.number(fields[1].text, fields[1].at, "a ratio in percent")
		if err != nil {
			return err
		}
		if v == 0 {
			return p.errAt(fields[1].at, "expected a ratio greater than 0 percent")
		}
		r.Ratio = Figure{Set: true, Value: v}
	}
	if len(fields) > 2 && fields[2].text != "" {
		v, err := p.number(fields[2].text, fields[2].at, "a boost in seconds")
		if err != nil {
			return err
		}
		r.Boost = Figure{Set: true, Value: v}
	}
	return nil
}

// number parses a whole field as a non-negative decimal.
func (p *lineParser) number(text string, at int, what string) (float64, error) {
	v, n := scanNumber(text)
	if n == 0 || n < len(text) {
		return 0, p.errAt(at+n, "expected %s (a number such as 150 or 1.5), got %q", what, text)
	}
	if math.IsInf(v, 0) {
		return 0, p.errAt(at, "expected %s that is not so large", what)
	}
	return v, nil
}

// scanNumber reads a decimal digits[.digits] at the start of s and returns
// its value and length (0 when s does not start with a digit). Signs,
// exponents, hex and "inf" are not numbers here.
func scanNumber(s string) (float64, int) {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, 0
	}
	if n+1 < len(s) && s[n] == '.' && '0' <= s[n+1] && s[n+1] <= '9' {
		n++
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
	}
	v, err := strconv.ParseFloat(s[:n], 64)
	if err != nil {
		// Only a range error is possible for digits[.digits]; v is ±Inf.
		return math.Inf(1), n
	}
	return v, n
}
