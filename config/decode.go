package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Both file formats are first read into the same tree: tables are
// map[string]any; TOML gives typed leaves (string, int64, float64, bool,
// []any, []map[string]any, dates), INI gives iniValue leaves (raw text) and
// numbered sections as tables keyed "1", "2", …. One decoder then walks the
// tree against Config's toml tags, so both formats share the same rules,
// defaults and error messages.

// iniValue is the raw text after "=" on an INI line; its meaning depends on
// the field it is decoded into.
type iniValue string

// positions maps a key (keyString form) to the line it was written on.
type positions map[string]int

// line returns the line of key path, or 0 when it is not in the file.
func (p positions) line(path []string) int { return p[keyString(path...)] }

// near returns the line of path or, failing that, of its closest ancestor
// written in the file (a key inside an inline table has no line of its own).
func (p positions) near(path []string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := p[keyString(path[:n]...)]; ok {
			return l
		}
	}
	return 0
}

type decoder struct {
	file string
	pos  positions
	ini  bool
}

func (d *decoder) errf(path []string, format string, args ...any) *Error {
	return &Error{File: d.file, Line: d.pos.near(path), Key: keyString(path...), Msg: fmt.Sprintf(format, args...)}
}

var (
	typeVHost = reflect.TypeFor[VHost]()
	typePeer  = reflect.TypeFor[APIProxyPeer]()
)

// newElem returns the starting value of one vhost table or peer entry: keys
// that the file does not write keep these defaults.
func newElem(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	switch t {
	case typeVHost:
		v.Set(reflect.ValueOf(DefaultVHost()))
	case typePeer:
		v.Set(reflect.ValueOf(DefaultPeer()))
	}
	return v
}

// fileKeys returns the key names a struct type accepts, in field order, and
// the field index of each.
func fileKeys(t reflect.Type) ([]string, map[string]int) {
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

// tableOf returns the name of the table of t that has the key k, or "".
func tableOf(t reflect.Type, k string) string {
	names, index := fileKeys(t)
	for _, n := range names {
		ft := t.Field(index[n]).Type
		if ft.Kind() != reflect.Struct {
			continue
		}
		_, sub := fileKeys(ft)
		if _, ok := sub[k]; ok {
			return n
		}
	}
	return ""
}

// orderedKeys returns the keys of tbl in file order (then by name), so that
// the first error reported is the first one in the file.
func (d *decoder) orderedKeys(path []string, tbl map[string]any) []string {
	keys := make([]string, 0, len(tbl))
	lines := make(map[string]int, len(tbl))
	for k := range tbl {
		keys = append(keys, k)
		lines[k] = d.pos.line(append(path[:len(path):len(path)], k))
	}
	sort.Slice(keys, func(i, j int) bool {
		if lines[keys[i]] != lines[keys[j]] {
			return lines[keys[i]] < lines[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func (d *decoder) decodeStruct(path []string, v any, rv reflect.Value) *Error {
	tbl, ok := v.(map[string]any)
	if !ok {
		return d.errf(path, "expected %s, got %s", d.expected(path, rv.Type()), describe(v))
	}
	names, index := fileKeys(rv.Type())
	for _, k := range d.orderedKeys(path, tbl) {
		p := append(path[:len(path):len(path)], k)
		i, ok := index[k]
		if !ok {
			what := "key"
			if _, isTable := tbl[k].(map[string]any); isTable {
				what = "table"
				if d.ini {
					what = "section"
				}
			}
			if len(path) == 0 && what == "key" {
				if t := tableOf(rv.Type(), k); t != "" {
					return d.errf(p, "unknown key at the top level: put it under [%s]", t)
				}
				return d.errf(p, "unknown key at the top level: every key belongs under a table such as [node]")
			}
			if s := suggest(k, names); s != "" {
				return d.errf(p, "unknown %s (did you mean %s?)", what, s)
			}
			return d.errf(p, "unknown %s (known: %s)", what, strings.Join(names, ", "))
		}
		if err := d.decodeValue(p, tbl[k], rv.Field(i)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeValue(path []string, v any, rv reflect.Value) *Error {
	t := rv.Type()
	switch {
	case t.Kind() == reflect.Struct:
		return d.decodeStruct(path, v, rv)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.Struct:
		return d.decodeTableMap(path, v, rv)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return d.decodeTableList(path, v, rv)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return d.decodeStrings(path, v, rv)
	}
	if raw, ok := v.(iniValue); ok {
		s, err := parseINIScalar(string(raw))
		if err != nil {
			return d.errf(path, "%v", err)
		}
		return d.decodeINIScalar(path, s, rv)
	}
	bad := func() *Error {
		return d.errf(path, "expected %s, got %s", d.expected(path, t), describe(v))
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		rv.SetBool(b)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			return bad()
		}
		if rv.OverflowInt(n) {
			return d.errf(path, "%d is out of range", n)
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			rv.SetFloat(n)
		case int64:
			rv.SetFloat(float64(n))
		default:
			return bad()
		}
	default:
		return d.errf(path, "internal error: no decoder for %s", t)
	}
	return nil
}

func (d *decoder) decodeINIScalar(path []string, s string, rv reflect.Value) *Error {
	t := rv.Type()
	switch t.Kind() {
	case reflect.String:
		rv.SetString(s)
	case reflect.Bool:
		switch s {
		case "true":
			rv.SetBool(true)
		case "false":
			rv.SetBool(false)
		default:
			return d.errf(path, "expected true or false, got %q", s)
		}
	case reflect.Int:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || rv.OverflowInt(n) {
			return d.errf(path, "expected an integer, got %q", s)
		}
		rv.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return d.errf(path, "expected a number, got %q", s)
		}
		rv.SetFloat(n)
	default:
		return d.errf(path, "internal error: no decoder for %s", t)
	}
	return nil
}

func (d *decoder) decodeStrings(path []string, v any, rv reflect.Value) *Error {
	var out []string
	switch v := v.(type) {
	case iniValue:
		list, err := parseINIList(string(v))
		if err != nil {
			return d.errf(path, "%v", err)
		}
		out = list
	case []any:
		out = make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return d.errf(path, "element %d: expected a string, got %s", i+1, describe(e))
			}
			out = append(out, s)
		}
	default:
		return d.errf(path, "expected %s, got %s", d.expected(path, rv.Type()), describe(v))
	}
	rv.Set(reflect.ValueOf(out))
	return nil
}

// decodeTableMap decodes tables such as [edge.vhosts.NAME] into a map,
// each entry starting from its defaults. Entries already in the map (the
// "default" vhost of Default()) stay unless the file redefines them.
func (d *decoder) decodeTableMap(path []string, v any, rv reflect.Value) *Error {
	tbl, ok := v.(map[string]any)
	if !ok {
		return d.errf(path, "expected %s, got %s", d.expected(path, rv.Type()), describe(v))
	}
	if rv.IsNil() {
		rv.Set(reflect.MakeMap(rv.Type()))
	}
	for _, name := range d.orderedKeys(path, tbl) {
		p := append(path[:len(path):len(path)], name)
		if _, ok := tbl[name].(map[string]any); !ok {
			return d.errf(p, "expected %s, got %s", d.expected(p, rv.Type().Elem()), describe(tbl[name]))
		}
		e := newElem(rv.Type().Elem())
		if err := d.decodeStruct(p, tbl[name], e); err != nil {
			return err
		}
		rv.SetMapIndex(reflect.ValueOf(name), e)
	}
	return nil
}

// decodeTableList decodes an array of tables ([[a.b]] in TOML, numbered
// sections [a.b.1], [a.b.2] in INI), each entry starting from its defaults.
// Entries are named by their 1-based number in errors.
func (d *decoder) decodeTableList(path []string, v any, rv reflect.Value) *Error {
	type entry struct {
		label string
		tbl   any
	}
	var entries []entry
	bad := func() *Error {
		return d.errf(path, "expected %s, got %s", d.expected(path, rv.Type()), describe(v))
	}
	switch v := v.(type) {
	case []map[string]any:
		for i, t := range v {
			entries = append(entries, entry{strconv.Itoa(i + 1), t})
		}
	case []any:
		for i, t := range v {
			entries = append(entries, entry{strconv.Itoa(i + 1), t})
		}
	case map[string]any:
		if !d.ini {
			return bad()
		}
		nums := make([]int, 0, len(v))
		for _, k := range d.orderedKeys(path, v) {
			if _, isTable := v[k].(map[string]any); !isTable {
				return d.errf(append(path[:len(path):len(path)], k),
					"an entry's keys go in a numbered section such as [%s]", keyString(append(path[:len(path):len(path)], "1")...))
			}
			n, err := strconv.Atoi(k)
			if err != nil || n < 1 || strconv.Itoa(n) != k {
				return d.errf(append(path[:len(path):len(path)], k),
					"expected numbered sections such as [%s], got %q", keyString(append(path[:len(path):len(path)], "1")...), k)
			}
			nums = append(nums, n)
		}
		sort.Ints(nums)
		for i, n := range nums {
			k := strconv.Itoa(n)
			if n != i+1 {
				// Errors name entries by number; gaps would make those
				// names differ from the sections written.
				return d.errf(append(path[:len(path):len(path)], k),
					"numbered sections go 1, 2, 3, … without gaps: expected [%s] before it",
					keyString(append(path[:len(path):len(path)], strconv.Itoa(i+1))...))
			}
			entries = append(entries, entry{k, v[k]})
		}
	default:
		return bad()
	}
	out := reflect.MakeSlice(rv.Type(), 0, len(entries))
	for _, e := range entries {
		p := append(path[:len(path):len(path)], e.label)
		if _, ok := e.tbl.(map[string]any); !ok {
			return d.errf(p, "expected %s, got %s", d.expected(p, rv.Type().Elem()), describe(e.tbl))
		}
		ev := newElem(rv.Type().Elem())
		if err := d.decodeStruct(p, e.tbl, ev); err != nil {
			return err
		}
		out = reflect.Append(out, ev)
	}
	rv.Set(out)
	return nil
}

// expected says, in the terms of the file's format, what a key of type t
// must hold.
func (d *decoder) expected(path []string, t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Struct:
		if d.ini {
			return fmt.Sprintf("a section [%s]", keyString(path...))
		}
		return "a table"
	case reflect.Map:
		if d.ini {
			return fmt.Sprintf("sections such as [%s]", keyString(append(path[:len(path):len(path)], "NAME")...))
		}
		return fmt.Sprintf("tables such as [%s]", keyString(append(path[:len(path):len(path)], "NAME")...))
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			if d.ini {
				return "a comma-separated list"
			}
			return "an array of strings"
		}
		if d.ini {
			return fmt.Sprintf("numbered sections such as [%s]", keyString(append(path[:len(path):len(path)], "1")...))
		}
		return fmt.Sprintf("an array of tables [[%s]]", keyString(path...))
	}
	return t.String()
}

// describe names a value read from a file, for "got …" in messages.
func describe(v any) string {
	switch v := v.(type) {
	case iniValue:
		return "the value " + quoteShort(string(v))
	case string:
		return "string " + quoteShort(v)
	case int64:
		return "integer " + strconv.FormatInt(v, 10)
	case float64:
		return "float " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "a datetime"
	}
	return fmt.Sprintf("a %T", v)
}

// quoteShort quotes s, shortened when long.
func quoteShort(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
