package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// writeConfig writes content to a file called name in a fresh directory and
// returns its path.
func writeConfig(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noEnv keeps a CASTMESH_API_PASSWORD of the environment out of the test.
func noEnv(t *testing.T) { t.Setenv(EnvAPIPassword, "") }

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoadNoFile(t *testing.T) {
	noEnv(t)
	got, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Node.Name = hostname(t)
	want.Node.AdvertiseAddr = want.Node.BindAddr
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\") =\n%+v\nwant\n%+v", got, want)
	}
	def := Default()
	if err := def.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// fullTOML sets every key to something other than its default; fullINI is
// the same config in INI form.
const fullTOML = `# every key, none at its default
[node]
name = "n1"
data_dir = "/var/lib/castmesh"
bind_addr = "10.0.0.1"
advertise_addr = "192.0.2.1"
zone = "eu-1"

[cluster]
gossip_port = 7000
raft_port = 7001
join = ["10.0.0.2:7946", "10.0.0.3:7946"]
bootstrap_expect = 3
gossip_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

[api]
ews_port = 7002
pseudo_domain = "proxy"
authentication = "basic"
user_name = "root"
password = "s3cret #1"
tls_cert = "/etc/castmesh/api.crt"
tls_key = "/etc/castmesh/api.key"

[stream_load_balancer]
plugin_switch = "disabled"

[[stream_load_balancer.destination_ems_apiproxies]]
enable = false
authentication = "none"
pseudo_domain = "p1"
address = "192.168.2.3"
ews_port = 9888
user_name = "u1"
password = "p1"

[[stream_load_balancer.destination_ems_apiproxies]]
address = "192.168.2.4:7946"

[ingest]
port = 7003
source_user = "src"
source_password = "hackme"

[edge]
port = 7004
tls_port = 7005
tls_cert = "/etc/castmesh/edge.crt"
tls_key = "/etc/castmesh/edge.key"
client_ca = "/etc/castmesh/ca.pem"
trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
node_traffic_cap = 900.5

[edge.vhosts.default]
hosts = ["*"]
traffic_cap = 100
session_cap = 2000
throttling = true
bandwidth = 1.5
unit = "mbps"
ratio = 110
boost = 3
rules_file = "/etc/castmesh/throttling.txt"
query_string = true
bandwidth_param = "bw"
ratio_param = "r"
boost_param = "b"

[edge.vhosts.www]
hosts = ["www.example.com", "*.cdn.example.com"]
unit = "bytes"
`

const fullINI = `; every key, none at its default
[node]
name = n1
data_dir = /var/lib/castmesh
bind_addr = 10.0.0.1
advertise_addr = 192.0.2.1
zone = eu-1

[cluster]
gossip_port = 7000
raft_port = 7001
join = 10.0.0.2:7946, 10.0.0.3:7946
bootstrap_expect = 3
gossip_key = MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=

[api]
ews_port = 7002
pseudo_domain = "proxy"
authentication = basic
user_name = 'root'
password = "s3cret #1"   ; quoted: it holds " #"
tls_cert = /etc/castmesh/api.crt
tls_key = /etc/castmesh/api.key

[stream_load_balancer]
plugin_switch = disabled

[stream_load_balancer.destination_ems_apiproxies.2]
address = 192.168.2.4:7946

[stream_load_balancer.destination_ems_apiproxies.1]
enable = false
authentication = none
pseudo_domain = p1
address = 192.168.2.3
ews_port = 9888
user_name = u1
password = p1

[ingest]
port = 7003
source_user = src
source_password = hackme

[edge]
port = 7004
tls_port = 7005
tls_cert = /etc/castmesh/edge.crt
tls_key = /etc/castmesh/edge.key
client_ca = /etc/castmesh/ca.pem
trusted_proxies = 10.0.0.0/8, "192.0.2.7", 2001:db8::/32
node_traffic_cap = 900.5

[edge.vhosts.default]
hosts = *
traffic_cap = 100
session_cap = 2000
throttling = true
bandwidth = 1.5
unit = mbps
ratio = 110
boost = 3
rules_file = /etc/castmesh/throttling.txt
query_string = true
bandwidth_param = bw
ratio_param = r
boost_param = b

[edge.vhosts.www]
hosts = www.example.com, *.cdn.example.com
unit = bytes
`

func fullWant() Config {
	www := DefaultVHost()
	www.Hosts = []string{"www.example.com", "*.cdn.example.com"}
	www.Unit = "bytes"
	peer2 := DefaultPeer()
	peer2.Address = "192.168.2.4:7946"
	return Config{
		Node: Node{Name: "n1", DataDir: "/var/lib/castmesh", BindAddr: "10.0.0.1", AdvertiseAddr: "192.0.2.1", Zone: "eu-1"},
		Cluster: Cluster{
			GossipPort: 7000, RaftPort: 7001,
			Join:            []string{"10.0.0.2:7946", "10.0.0.3:7946"},
			BootstrapExpect: 3,
			GossipKey:       "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		},
		API: API{
			EWSPort: 7002, PseudoDomain: "proxy", Authentication: "basic", UserName: "root", Password: "s3cret #1",
			TLSCert: "/etc/castmesh/api.crt", TLSKey: "/etc/castmesh/api.key",
		},
		StreamLoadBalancer: StreamLoadBalancer{
			PluginSwitch: "disabled",
			DestinationEMSAPIProxies: []APIProxyPeer{
				{Enable: false, Authentication: "none", PseudoDomain: "p1", Address: "192.168.2.3", EWSPort: 9888, UserName: "u1", Password: "p1"},
				peer2,
			},
		},
		Ingest: Ingest{Port: 7003, SourceUser: "src", SourcePassword: "hackme"},
		Edge: Edge{
			Port: 7004, TLSPort: 7005,
			TLSCert: "/etc/castmesh/edge.crt", TLSKey: "/etc/castmesh/edge.key", ClientCA: "/etc/castmesh/ca.pem",
			TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"},
			NodeTrafficCap: 900.5,
			VHosts: map[string]VHost{
				"default": {
					Hosts: []string{"*"}, TrafficCap: 100, SessionCap: 2000, Throttling: true,
					Bandwidth: 1.5, Unit: "mbps", Ratio: 110, Boost: 3,
					RulesFile: "/etc/castmesh/throttling.txt", QueryString: true,
					BandwidthParam: "bw", RatioParam: "r", BoostParam: "b",
				},
				"www": www,
			},
		},
	}
}

func TestLoadFullSample(t *testing.T) {
	noEnv(t)
	for _, tc := range []struct{ name, content string }{
		{"full.toml", fullTOML},
		{"full.ini", fullINI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.name, tc.content)
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			want := fullWant()
			want.Source = path
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// The same config in both forms loads to the same Config.
func TestLoadTOMLEqualsINI(t *testing.T) {
	noEnv(t)
	for _, pair := range [][2]string{
		{writeConfig(t, "full.toml", fullTOML), writeConfig(t, "full.ini", fullINI)},
		{"../testdata/configs/node.toml", "../testdata/configs/node.ini"},
	} {
		a, err := Load(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err := Load(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		a.Source, b.Source = "", ""
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s and %s differ:\n%+v\n%+v", pair[0], pair[1], a, b)
		}
	}
}

// Windows line ends and a UTF-8 byte order mark change nothing, and lines
// are still counted right.
func TestLoadCRLFAndBOM(t *testing.T) {
	noEnv(t)
	want, err := Load("../testdata/configs/node.toml")
	if err != nil {
		t.Fatal(err)
	}
	want.Source = ""
	for _, name := range []string{"node.toml", "node.ini"} {
		src, err := os.ReadFile("../testdata/configs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		crlf := "\xef\xbb\xbf" + strings.ReplaceAll(string(src), "\n", "\r\n")
		got, err := Load(writeConfig(t, name, crlf))
		if err != nil {
			t.Fatalf("%s with CRLF and BOM: %v", name, err)
		}
		got.Source = ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s with CRLF and BOM =\n%+v\nwant\n%+v", name, got, want)
		}
		bad := "\xef\xbb\xbf" + strings.ReplaceAll("[node]\nname = \"n\"\n[api]\news_prot = 1\n", "\n", "\r\n")
		if filepath.Ext(name) == ".ini" {
			bad = strings.ReplaceAll(bad, "\"", "")
		}
		_, err = Load(writeConfig(t, name, bad))
		var ce *Error
		if !errors.As(err, &ce) || ce.Line != 4 || ce.Key != "api.ews_prot" {
			t.Errorf("%s with CRLF and BOM: error %v, want one at line 4 for api.ews_prot", name, err)
		}
	}
}

// The sample configs show every key at its default, plus one peer entry and
// a throttled "www" vhost.
func TestSampleConfigs(t *testing.T) {
	noEnv(t)
	defaults, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../testdata/configs/node.toml", "../testdata/configs/node.ini"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			peers := cfg.StreamLoadBalancer.DestinationEMSAPIProxies
			if len(peers) != 1 || peers[0].Address != "192.168.2.3" || !peers[0].Enable {
				t.Errorf("peers = %+v, want the one entry for 192.168.2.3", peers)
			}
			www, ok := cfg.Edge.VHosts["www"]
			if !ok || !www.Throttling || www.Unit != "mbps" {
				t.Errorf("vhost www = %+v, want a throttled vhost", www)
			}
			cfg.Source = ""
			cfg.StreamLoadBalancer.DestinationEMSAPIProxies = nil
			delete(cfg.Edge.VHosts, "www")
			if !reflect.DeepEqual(cfg, defaults) {
				t.Errorf("apart from the peer and www, %s is not all defaults:\n%+v\nwant\n%+v", path, cfg, defaults)
			}
			// Every key of the schema is written in the sample.
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range allKeys(reflect.TypeFor[Config]()) {
				if !strings.Contains(string(src), "\n"+key+" ") {
					t.Errorf("%s does not show key %s", path, key)
				}
			}
		})
	}
}

// allKeys lists the last part of every file key of t.
func allKeys(t reflect.Type) []string {
	var keys []string
	names, index := fileKeys(t)
	for _, n := range names {
		ft := t.Field(index[n]).Type
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, allKeys(ft)...)
		case ft.Kind() == reflect.Map || ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, allKeys(ft.Elem())...)
		default:
			keys = append(keys, n)
		}
	}
	return keys
}

func TestLoadErrors(t *testing.T) {
	noEnv(t)
	for _, tc := range loadErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file, tc.content)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want %s:%d: %s: …%s…", tc.file, tc.line, tc.key, tc.msg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			if ce.File != path || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Errorf("got  %s\nwant %s:%d: %s: …%s…", err, tc.file, tc.line, tc.key, tc.msg)
			}
			prefix := path
			if tc.line > 0 {
				prefix += ":" + strconv.Itoa(tc.line)
			}
			if tc.key != "" {
				prefix += ": " + tc.key
			}
			if !strings.HasPrefix(err.Error(), prefix+": ") {
				t.Errorf("%q does not start with %q", err.Error(), prefix+": ")
			}
		})
	}
}

type loadErrorCase struct {
	name    string
	file    string // the file name: its extension picks the format
	content string
	line    int
	key     string
	msg     string // a part of the message
}

var loadErrorCases = []loadErrorCase{
	// Syntax.
	{"toml syntax", "node.toml", "[node]\nname = \"a\"\nbind_addr = 127.0.0.1\n", 3, "node.bind_addr", "invalid TOML"},
	{"toml syntax in header", "node.toml", "[node]\nname = \"a\"\n[api\n", 3, "", "invalid TOML"},
	{"toml duplicate key", "node.toml", "[api]\news_port = 1\news_port = 2\n", 3, "", "invalid TOML"},
	{"ini unclosed section", "node.ini", "[node]\nname = a\n[api\n", 3, "", "closing ]"},
	{"ini line without =", "node.ini", "[node]\nname a\n", 2, "", `expected "key = value"`},
	{"ini key outside section", "node.ini", "; top\n\nname = a\n[node]\n", 3, "name", "outside any section"},
	{"ini repeated key", "node.ini", "[api]\news_port = 1\n\news_port = 1\n", 4, "api.ews_port", "repeated (first at line 2)"},
	{"ini repeated section", "node.ini", "[api]\news_port = 1\n[node]\n[api]\nuser_name = x\n", 4, "api", "repeated (first at line 1)"},
	{"ini unclosed quote", "node.ini", "[api]\npassword = \"abc\n", 2, "api.password", "missing closing \""},
	{"ini text after quote", "node.ini", "[api]\npassword = \"abc\" def\n", 2, "api.password", "after the closing quote"},

	// Unknown keys and tables.
	{"toml unknown key", "node.toml", "[api]\news_port = 1\n\n\news_prot = 8888\n", 5, "api.ews_prot", "unknown key (did you mean ews_port?)"},
	{"ini unknown key", "node.ini", "[node]\n[api]\n\n\n\n\news_prot = 8888\n", 7, "api.ews_prot", "unknown key (did you mean ews_port?)"},
	{"toml unknown key no suggestion", "node.toml", "[node]\ncolour = \"red\"\n", 2, "node.colour", "unknown key (known: name, data_dir"},
	{"toml unknown table", "node.toml", "[node]\n[edge.vhost.www]\nratio = 1\n", 2, "edge.vhost", "unknown table (did you mean vhosts?)"},
	{"ini unknown section", "node.ini", "[node]\n[edge.vhost.www]\nratio = 1\n", 2, "edge.vhost", "unknown section (did you mean vhosts?)"},
	{"toml unknown top-level table", "node.toml", "[nodes]\nname = \"x\"\n", 1, "nodes", "did you mean node?"},
	{"toml top-level key", "node.toml", "\news_port = 1\n", 2, "ews_port", "unknown key at the top level: put it under [api]"},
	{"toml top-level unknown key", "node.toml", "colour = 1\n", 1, "colour", "every key belongs under a table"},
	{"toml unknown key in vhost", "node.toml", "[edge.vhosts.www]\nhosts = [\"a.com\"]\nration = 5\n", 3, "edge.vhosts.www.ration", "did you mean ratio?"},
	{"toml unknown key in peer", "node.toml", "[[stream_load_balancer.destination_ems_apiproxies]]\naddress = \"a\"\n[[stream_load_balancer.destination_ems_apiproxies]]\naddress = \"b\"\npasword = \"x\"\n", 5, "stream_load_balancer.destination_ems_apiproxies.2.pasword", "did you mean password?"},
	{"toml not a file key", "node.toml", "[cluster]\ntimings = 1\n", 2, "cluster.timings", "unknown key"},
	{"toml unknown key in inline table", "node.toml", "[edge]\nvhosts = { www = { hosts = [\"a.com\"], ratoi = 1 } }\n", 2, "edge.vhosts.www.ratoi", "did you mean ratio?"},

	// Types.
	{"toml string for number", "node.toml", "[edge.vhosts.www]\nhosts = [\"a.com\"]\nratio = \"abc\"\n", 3, "edge.vhosts.www.ratio", `expected a number, got string "abc"`},
	{"ini string for number", "node.ini", "[edge.vhosts.www]\nhosts = a.com\nratio = abc\n", 3, "edge.vhosts.www.ratio", `expected a number, got "abc"`},
	{"toml float for integer", "node.toml", "[api]\news_port = 88.5\n", 2, "api.ews_port", "expected an integer, got float 88.5"},
	{"ini float for integer", "node.ini", "[api]\news_port = 88.5\n", 2, "api.ews_port", `expected an integer, got "88.5"`},
	{"toml number for string", "node.toml", "[node]\nname = 5\n", 2, "node.name", "expected a string, got integer 5"},
	{"toml bool", "node.toml", "[edge.vhosts.default]\nthrottling = \"yes\"\n", 2, "edge.vhosts.default.throttling", `expected true or false, got string "yes"`},
	{"ini bool", "node.ini", "[edge.vhosts.default]\nthrottling = yes\n", 2, "edge.vhosts.default.throttling", `expected true or false, got "yes"`},
	{"toml string for list", "node.toml", "[cluster]\njoin = \"10.0.0.2:7946\"\n", 2, "cluster.join", `expected an array of strings, got string "10.0.0.2:7946"`},
	{"toml list element", "node.toml", "[cluster]\njoin = [\"a:1\", 2]\n", 2, "cluster.join", "element 2: expected a string, got integer 2"},
	{"ini list empty element", "node.ini", "[cluster]\njoin = a:1,,b:2\n", 2, "cluster.join", "empty element 2"},
	{"toml value for table", "node.toml", "edge = 5\n", 1, "edge", "expected a table, got integer 5"},
	{"ini value for section", "node.ini", "[edge]\nvhosts = www\n", 2, "edge.vhosts", "expected sections such as [edge.vhosts.NAME]"},
	{"toml table for peers", "node.toml", "[stream_load_balancer.destination_ems_apiproxies.1]\naddress = \"a\"\n", 1, "stream_load_balancer.destination_ems_apiproxies", "expected an array of tables [[stream_load_balancer.destination_ems_apiproxies]]"},
	{"ini unnumbered peer section", "node.ini", "[stream_load_balancer.destination_ems_apiproxies.first]\naddress = a\n", 1, "stream_load_balancer.destination_ems_apiproxies.first", "expected numbered sections such as [stream_load_balancer.destination_ems_apiproxies.1]"},
	{"ini peer keys without number", "node.ini", "[stream_load_balancer.destination_ems_apiproxies]\naddress = a\n", 2, "stream_load_balancer.destination_ems_apiproxies.address", "an entry's keys go in a numbered section such as [stream_load_balancer.destination_ems_apiproxies.1]"},
	{"ini zero-padded peer number", "node.ini", "[stream_load_balancer.destination_ems_apiproxies.01]\naddress = a\n", 1, "stream_load_balancer.destination_ems_apiproxies.01", "numbered sections"},
	{"ini gap in peer numbers", "node.ini", "[stream_load_balancer.destination_ems_apiproxies.1]\naddress = a\n[stream_load_balancer.destination_ems_apiproxies.3]\naddress = c\n", 3, "stream_load_balancer.destination_ems_apiproxies.3", "without gaps: expected [stream_load_balancer.destination_ems_apiproxies.2] before it"},
	{"toml vhost not a table", "node.toml", "[edge.vhosts]\nwww = 1\n", 2, "edge.vhosts.www", "expected a table, got integer 1"},
	{"toml integer out of range", "node.toml", "[edge]\nport = 9223372036854775807\n", 2, "edge.port", "expected a port from 0 to 65535"},
	{"toml datetime", "node.toml", "[node]\nname = 2024-01-02\n", 2, "node.name", "expected a string, got a datetime"},

	// Validation, with the line of the key when the file writes it.
	{"port range", "node.toml", "[api]\news_port = 70000\n", 2, "api.ews_port", "expected a port from 0 to 65535"},
	{"negative port ini", "node.ini", "[cluster]\ngossip_port = -1\n", 2, "cluster.gossip_port", "expected a port from 0 to 65535"},
	{"same port twice", "node.toml", "[cluster]\nraft_port = 8888\n", 2, "cluster.raft_port", "port 8888 is already api.ews_port"},
	{"bind_addr", "node.toml", "[node]\nbind_addr = \"localhost\"\n", 2, "node.bind_addr", "expected an IP address"},
	{"advertise_addr", "node.ini", "[node]\nadvertise_addr = 10.0.0.300\n", 2, "node.advertise_addr", "expected an IP address"},
	{"data_dir", "node.toml", "[node]\n\ndata_dir = \"\"\n", 3, "node.data_dir", "must not be empty"},
	{"bootstrap_expect", "node.toml", "[cluster]\nbootstrap_expect = 0\n", 2, "cluster.bootstrap_expect", "must be at least 1"},
	{"gossip_key", "node.toml", "[cluster]\ngossip_key = \"c2hvcnQ=\"\n", 2, "cluster.gossip_key", "16, 24 or 32-byte"},
	{"join element", "node.toml", "[cluster]\njoin = [\"a b\"]\n", 2, "cluster.join", "element 1"},
	{"authentication", "node.toml", "[api]\nauthentication = \"digest\"\n", 2, "api.authentication", `expected "basic" or "none", got "digest"`},
	{"authentication none off loopback", "node.ini", "[node]\nbind_addr = 0.0.0.0\n[api]\nauthentication = none\n", 4, "api.authentication", "only when node.bind_addr is a loopback address"},
	{"user name with colon", "node.toml", "[api]\nuser_name = \"a:b\"\n", 2, "api.user_name", "without \":\""},
	{"pseudo_domain", "node.toml", "[api]\npseudo_domain = \"a/b\"\n", 2, "api.pseudo_domain", "one URL path segment"},
	{"api tls pair, key not in file", "node.toml", "[api]\ntls_cert = \"c.pem\"\n", 0, "api.tls_key", "must be set too when api.tls_cert is set"},
	{"plugin_switch", "node.ini", "[stream_load_balancer]\nplugin_switch = on\n", 2, "stream_load_balancer.plugin_switch", `expected "enabled" or "disabled", got "on"`},
	{"peer without address", "node.toml", "[[stream_load_balancer.destination_ems_apiproxies]]\nuser_name = \"u\"\n", 0, "stream_load_balancer.destination_ems_apiproxies.1.address", "expected the peer's host"},
	{"peer authentication", "node.ini", "[stream_load_balancer.destination_ems_apiproxies.1]\naddress = a\nauthentication = ntlm\n", 3, "stream_load_balancer.destination_ems_apiproxies.1.authentication", `expected "basic" or "none"`},
	{"peer ews_port 0", "node.toml", "[[stream_load_balancer.destination_ems_apiproxies]]\naddress = \"a\"\news_port = 0\n", 3, "stream_load_balancer.destination_ems_apiproxies.1.ews_port", "from 1 to 65535"},
	{"peer address twice", "node.toml", "[[stream_load_balancer.destination_ems_apiproxies]]\naddress = \"a\"\n[[stream_load_balancer.destination_ems_apiproxies]]\naddress = \"a\"\n", 4, "stream_load_balancer.destination_ems_apiproxies.2.address", "already the address of entry 1"},
	{"unit", "node.toml", "[edge.vhosts.default]\nunit = \"gbps\"\n", 2, "edge.vhosts.default.unit", "expected kbps, mbps, bytes, kb or mb"},
	{"negative ratio", "node.ini", "[edge.vhosts.default]\nratio = -1\n", 2, "edge.vhosts.default.ratio", "≥ 0"},
	{"nan boost", "node.toml", "[edge.vhosts.default]\nboost = nan\n", 2, "edge.vhosts.default.boost", "≥ 0"},
	{"negative node cap", "node.toml", "[edge]\nnode_traffic_cap = -5\n", 2, "edge.node_traffic_cap", "≥ 0"},
	{"negative session cap", "node.toml", "[edge.vhosts.default]\nsession_cap = -5\n", 2, "edge.vhosts.default.session_cap", "≥ 0"},
	{"edge tls_port without cert", "node.toml", "[edge]\ntls_port = 8443\n", 2, "edge.tls_port", "needs edge.tls_cert and edge.tls_key"},
	{"edge tls pair", "node.ini", "[edge]\ntls_key = k.pem\n", 0, "edge.tls_cert", "must be set too"},
	{"client_ca without tls", "node.toml", "[edge]\nclient_ca = \"ca.pem\"\n", 2, "edge.client_ca", "set edge.tls_port"},
	{"trusted proxy", "node.ini", "[edge]\ntrusted_proxies = 10.0.0.0/8, 10.0.0.0/33\n", 2, "edge.trusted_proxies", `element 2: expected a CIDR`},
	{"empty hosts", "node.toml", "[edge.vhosts.default]\nhosts = []\n", 2, "edge.vhosts.default.hosts", "at least one"},
	{"bad host pattern", "node.toml", "[edge.vhosts.www]\nhosts = [\"a.*.com\"]\n", 2, "edge.vhosts.www.hosts", "wildcard may only be the whole first label"},
	{"host with space", "node.ini", "[edge.vhosts.www]\nhosts = \"a b.com\"\n", 2, "edge.vhosts.www.hosts", "only letters, digits"},
	{"host claimed twice", "node.toml", "[edge.vhosts.a]\nhosts = [\"x.com\"]\n[edge.vhosts.b]\nhosts = [\"X.com\"]\n", 4, "edge.vhosts.b.hosts", `"x.com" is already claimed by vhost "a"`},
	{"vhost inherits *", "node.toml", "[edge.vhosts.www]\nratio = 50\n", 0, "edge.vhosts.www.hosts", `"*" is already claimed by vhost "default" (this vhost inherits`},
	{"query param", "node.toml", "[edge.vhosts.default]\nquery_string = true\nratio_param = \"\"\n", 3, "edge.vhosts.default.ratio_param", "query-string parameter"},

	// Files.
	{"unknown extension", "node.yaml", "node: {}\n", 0, "", `unknown config format ".yaml": expected a .toml or .ini file`},
}

func TestLoadFileErrors(t *testing.T) {
	noEnv(t)
	missing := filepath.Join(t.TempDir(), "missing.toml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error that is fs.ErrNotExist", err)
	}
	if want := missing + ": cannot read the config file: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Load(missing) = %v, want %s", err, want)
	}
	_, err = Load(writeConfig(t, "node.conf", ""))
	if !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Load(node.conf) = %v, want ErrUnknownFormat", err)
	}
	// The extension is matched without regard to case.
	if _, err := Load(writeConfig(t, "NODE.TOML", "[node]\nname = \"x\"\n")); err != nil {
		t.Errorf("Load(NODE.TOML) = %v", err)
	}
}

// Validation reports every problem, in file order, each a *Error.
func TestLoadReportsAllProblems(t *testing.T) {
	noEnv(t)
	path := writeConfig(t, "node.toml", "[cluster]\nbootstrap_expect = 0\n[api]\news_port = -1\n[edge.vhosts.default]\nunit = \"x\"\n")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		path + ":2: cluster.bootstrap_expect: must be at least 1, got 0",
		path + ":4: api.ews_port: expected a port from 0 to 65535 (0 picks a free port), got -1",
		path + `:6: edge.vhosts.default.unit: expected kbps, mbps, bytes, kb or mb, got "x"`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("error =\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "cluster.bootstrap_expect" {
		t.Errorf("errors.As gives %+v, want the first problem", ce)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Source = "node.toml"
	c.API.EWSPort = 70000
	err := c.Validate()
	if err == nil || err.Error() != "node.toml: api.ews_port: expected a port from 0 to 65535 (0 picks a free port), got 70000" {
		t.Errorf("Validate = %v", err)
	}
	c = Default()
	c.Edge.VHosts = map[string]VHost{}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `edge.vhosts: the "default" vhost is missing`) {
		t.Errorf("Validate without a default vhost = %v", err)
	}
	// Port 0 (pick a free port) is valid everywhere but in peer entries.
	c = Default()
	c.Cluster.GossipPort, c.Cluster.RaftPort, c.API.EWSPort, c.Ingest.Port, c.Edge.Port = 0, 0, 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with port 0 everywhere = %v", err)
	}
	c.API.Authentication = "none" // allowed on 127.0.0.1
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with authentication none on loopback = %v", err)
	}
}

func TestEnvOverridesPassword(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"node.toml", "[api]\npassword = \"from-file\"\n"},
		{"node.ini", "[api]\npassword = from-file\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.name, tc.content)
			t.Setenv(EnvAPIPassword, "")
			cfg, err := Load(path)
			if err != nil || cfg.API.Password != "from-file" {
				t.Fatalf("without env: password %q, err %v", cfg.API.Password, err)
			}
			t.Setenv(EnvAPIPassword, "from-env")
			cfg, err = Load(path)
			if err != nil || cfg.API.Password != "from-env" {
				t.Fatalf("with env: password %q, err %v", cfg.API.Password, err)
			}
		})
	}
	t.Setenv(EnvAPIPassword, "from-env")
	cfg, err := Load("")
	if err != nil || cfg.API.Password != "from-env" {
		t.Fatalf("no file, with env: password %q, err %v", cfg.API.Password, err)
	}
}

func TestNodeDerivedDefaults(t *testing.T) {
	noEnv(t)
	cfg, err := Load(writeConfig(t, "node.toml", "[node]\nbind_addr = \"10.1.2.3\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != hostname(t) || cfg.Node.AdvertiseAddr != "10.1.2.3" {
		t.Errorf("name %q advertise %q, want the host name and the bind address", cfg.Node.Name, cfg.Node.AdvertiseAddr)
	}
	cfg, err = Load(writeConfig(t, "node.ini", "[node]\nname = n7\nbind_addr = 10.1.2.3\nadvertise_addr = 192.0.2.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != "n7" || cfg.Node.AdvertiseAddr != "192.0.2.9" {
		t.Errorf("name %q advertise %q, want n7 and 192.0.2.9", cfg.Node.Name, cfg.Node.AdvertiseAddr)
	}
}

// Each vhost table starts from DefaultVHost(); "default" always exists.
func TestVHostDefaults(t *testing.T) {
	noEnv(t)
	for _, tc := range []struct{ name, content string }{
		{"node.toml", "[edge.vhosts.www]\nhosts = [\"www.example.com\"]\nratio = 50\n\n[edge.vhosts.default]\nboost = 9\n\n[edge.vhosts.empty]\nhosts = [\"e.com\"]\n"},
		{"node.ini", "[edge.vhosts.www]\nhosts = www.example.com\nratio = 50\n\n[edge.vhosts.default]\nboost = 9\n\n[edge.vhosts.empty]\nhosts = e.com\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tc.name, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			www := DefaultVHost()
			www.Hosts, www.Ratio = []string{"www.example.com"}, 50
			def := DefaultVHost()
			def.Boost = 9
			empty := DefaultVHost()
			empty.Hosts = []string{"e.com"}
			want := map[string]VHost{"default": def, "www": www, "empty": empty}
			if !reflect.DeepEqual(cfg.Edge.VHosts, want) {
				t.Errorf("vhosts =\n%+v\nwant\n%+v", cfg.Edge.VHosts, want)
			}
		})
	}
	cfg, err := Load(writeConfig(t, "node.toml", "[edge.vhosts.www]\nhosts = [\"a.com\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Edge.VHosts["default"]; !ok || len(cfg.Edge.VHosts) != 2 {
		t.Errorf("vhosts = %v, want default and www", cfg.Edge.VHosts)
	}
	// A TOML vhost name may hold dots when quoted.
	cfg, err = Load(writeConfig(t, "node.toml", "[edge.vhosts.\"www.example.com\"]\nhosts = [\"www.example.com\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Edge.VHosts["www.example.com"]; !ok {
		t.Errorf("vhosts = %v, want www.example.com", cfg.Edge.VHosts)
	}
}

// Peer entries start from DefaultPeer(); INI numbers order them.
func TestPeerEntries(t *testing.T) {
	noEnv(t)
	ini := `[stream_load_balancer.destination_ems_apiproxies.3]
address = c
[stream_load_balancer.destination_ems_apiproxies.2]
address = b
enable = false
[stream_load_balancer.destination_ems_apiproxies.1]
address = a
ews_port = 9999
`
	toml := `[[stream_load_balancer.destination_ems_apiproxies]]
address = "a"
ews_port = 9999
[[stream_load_balancer.destination_ems_apiproxies]]
address = "b"
enable = false
[[stream_load_balancer.destination_ems_apiproxies]]
address = "c"
`
	a, b, c := DefaultPeer(), DefaultPeer(), DefaultPeer()
	a.Address, a.EWSPort = "a", 9999
	b.Address, b.Enable = "b", false
	c.Address = "c"
	want := []APIProxyPeer{a, b, c}
	for name, content := range map[string]string{"node.ini": ini, "node.toml": toml} {
		cfg, err := Load(writeConfig(t, name, content))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := cfg.StreamLoadBalancer.DestinationEMSAPIProxies; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: peers =\n%+v\nwant\n%+v", name, got, want)
		}
	}
	// An inline array of tables is the same as [[…]] entries.
	cfg, err := Load(writeConfig(t, "node.toml", "[stream_load_balancer]\ndestination_ems_apiproxies = [{address = \"a\", ews_port = 9999}, {address = \"b\", enable = false}, {address = \"c\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.StreamLoadBalancer.DestinationEMSAPIProxies; !reflect.DeepEqual(got, want) {
		t.Errorf("inline: peers =\n%+v\nwant\n%+v", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "node.toml", Line: 14, Key: "edge.vhosts.www.ratio", Msg: "m"}, "node.toml:14: edge.vhosts.www.ratio: m"},
		{Error{File: "node.toml", Key: "api.tls_key", Msg: "m"}, "node.toml: api.tls_key: m"},
		{Error{File: "node.toml", Line: 3, Msg: "m"}, "node.toml:3: m"},
		{Error{Key: "api.ews_port", Msg: "m"}, "api.ews_port: m"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v prints %q, want %q", tc.err, got, tc.want)
		}
	}
}
