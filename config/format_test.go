package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseINIScalar(t *testing.T) {
	for _, tc := range []struct {
		raw, want, err string
	}{
		{"", "", ""},
		{"  abc  ", "abc", ""},
		{"abc ; comment", "abc", ""},
		{"abc # comment", "abc", ""},
		{"abc\t# comment", "abc", ""},
		{"a#b;c", "a#b;c", ""},
		{"; only a comment", "", ""},
		{`"a #b" ; c`, "a #b", ""},
		{`"say \"hi\" \\ C:\data"`, `say "hi" \ C:\data`, ""},
		{`'it''s'`, "", "unexpected"},
		{`'a "b" \n'`, `a "b" \n`, ""},
		{`""`, "", ""},
		{`"abc`, "", "missing closing"},
		{`"abc" x`, "", "after the closing quote"},
		{"a, b", "a, b", ""},
	} {
		got, err := parseINIScalar(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseINIScalar(%q) = %q, %v; want error with %q", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseINIScalar(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

func TestParseINIList(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
		err  string
	}{
		{"", []string{}, ""},
		{"; nothing", []string{}, ""},
		{"a", []string{"a"}, ""},
		{"10.0.0.2:7946, 10.0.0.3:7946", []string{"10.0.0.2:7946", "10.0.0.3:7946"}, ""},
		{"a.com,*.b.com,", []string{"a.com", "*.b.com"}, ""},
		{`"a, b", 'c' ; comment`, []string{"a, b", "c"}, ""},
		{"[::1]:7946, [::2]:7946 # two", []string{"[::1]:7946", "[::2]:7946"}, ""},
		{"a,,b", nil, "empty element 2"},
		{", a", nil, "empty element 1"},
		{`"a" "b"`, nil, "expected a comma after element 1"},
		{`"a`, nil, "missing closing"},
	} {
		got, err := parseINIList(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseINIList(%q) = %q, %v; want error with %q", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseINIList(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

func TestTOMLPositions(t *testing.T) {
	src := `# comment [not.a.table]
[node]
name = "x" # [api]
zone = """
[fake]
bind_addr = "1"
"""
data_dir = '''
x'''

[cluster]
join = [
  "a", # ]
  "b",
]
"gossip_port" = 1
raft_port.x = 2

[[stream_load_balancer.destination_ems_apiproxies]]
address = "a"
[[stream_load_balancer.destination_ems_apiproxies]]
address = "b"
[stream_load_balancer.destination_ems_apiproxies.x]
y = 1

[edge.vhosts."a.b"]
hosts = ["a.b"]
[ edge . vhosts . 'c' ]
ratio = "x\"y" ; boost = 1
`
	pos := tomlPositions(src)
	for key, want := range map[string]int{
		"node":                 2,
		"node.name":            3,
		"node.zone":            4,
		"fake":                 0,
		"node.bind_addr":       0,
		"node.data_dir":        8,
		"cluster":              11,
		"cluster.join":         12,
		"cluster.gossip_port":  16,
		"cluster.raft_port":    17,
		"cluster.raft_port.x":  17,
		"stream_load_balancer": 19,
		"stream_load_balancer.destination_ems_apiproxies":           19,
		"stream_load_balancer.destination_ems_apiproxies.1":         19,
		"stream_load_balancer.destination_ems_apiproxies.1.address": 20,
		"stream_load_balancer.destination_ems_apiproxies.2":         21,
		"stream_load_balancer.destination_ems_apiproxies.2.address": 22,
		"stream_load_balancer.destination_ems_apiproxies.2.x.y":     24,
		`edge.vhosts."a.b".hosts`:                                   27,
		"edge.vhosts.c":                                             28,
		"edge.vhosts.c.ratio":                                       29,
		"edge.vhosts.c.boost":                                       0,
	} {
		if got := pos[key]; got != want {
			t.Errorf("line of %s = %d, want %d", key, got, want)
		}
	}
}

// iniScanSample exercises the corners of INI the line scanner follows.
const iniScanSample = "\xef\xbb\xbf; comment\n" + `top = 1
[node]
  name = a   ; indented
"quoted key" = 1
- = auto
- = auto
[edge.vhosts.www]
hosts = """a,
[not.a.section]
b"""
ratio = ` + "`x\ny`" + `
[node]
[DEFAULT]
x = 1
`

// The INI line scanner finds sections and keys where ini.v1 does.
func TestINIScan(t *testing.T) {
	src := iniScanSample
	sc := scanINI([]byte(src))
	if sc.err != nil {
		t.Fatal(sc.err.msg)
	}
	if !reflect.DeepEqual(sc.preamble, []iniKeyLine{{"top", 2}}) {
		t.Errorf("preamble = %v", sc.preamble)
	}
	want := []iniSection{
		{"node", 3, map[string][]int{"name": {4}, "quoted key": {5}, "#1": {6}, "#2": {7}}},
		{"edge.vhosts.www", 8, map[string][]int{"hosts": {9}, "ratio": {12}}},
		{"node", 14, map[string][]int{}},
		{"DEFAULT", 15, map[string][]int{"x": {16}}},
	}
	if !reflect.DeepEqual(sc.sections, want) {
		t.Errorf("sections =\n%v\nwant\n%v", sc.sections, want)
	}
	for _, bad := range []struct {
		src  string
		line int
	}{
		{"[a]\n[b\n", 2},
		{"[a]\n[]\n", 2},
		{"[a]\nx\n", 2},
		{"[a]\n= 1\n", 2},
		{"[a]\n\"x = 1\n", 2},
		{"[a]\nx = \"\"\"abc\n\n", 2},
		{"[a]\n\"\" = 1\n", 2},
	} {
		sc := scanINI([]byte(bad.src))
		if sc.err == nil || sc.err.line != bad.line {
			t.Errorf("scanINI(%q): error %+v, want one at line %d", bad.src, sc.err, bad.line)
		}
	}
}
