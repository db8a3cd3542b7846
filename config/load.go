package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// EnvAPIPassword names the environment variable that, when set and not
// empty, overrides api.password.
const EnvAPIPassword = "CASTMESH_API_PASSWORD"

// Load reads the config file at path (TOML for .toml, INI for .ini),
// starting from Default(): keys the file does not write keep their defaults,
// each [edge.vhosts.NAME] table starts from DefaultVHost() and each
// destination_ems_apiproxies entry from DefaultPeer(). An empty path gives
// the defaults alone. Then CASTMESH_API_PASSWORD overrides api.password,
// node.name defaults to the host name, node.advertise_addr to bind_addr, and
// the result is validated.
//
// Every error is a *Error (several, joined, when validation finds more than
// one problem) naming the file, line and key.
func Load(path string) (Config, error) {
	cfg := Default()
	var pos positions
	if path != "" {
		var err *Error
		pos, err = loadFile(&cfg, path)
		if err != nil {
			return Config{}, err
		}
		cfg.Source = path
	}
	if pw := os.Getenv(EnvAPIPassword); pw != "" {
		cfg.API.Password = pw
	}
	if cfg.Node.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return Config{}, &Error{File: path, Key: "node.name", Msg: fmt.Sprintf("not set and the host name is unknown (%v): set node.name", err)}
		}
		cfg.Node.Name = host
	}
	if cfg.Node.AdvertiseAddr == "" {
		cfg.Node.AdvertiseAddr = cfg.Node.BindAddr
	}
	if err := cfg.validate(pos); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// loadFile decodes the file at path over cfg and returns where each key is.
func loadFile(cfg *Config, path string) (positions, *Error) {
	var read func(string, []byte) (map[string]any, positions, *Error)
	ini := false
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".toml":
		read = readTOML
	case ".ini":
		read, ini = readINI, true
	default:
		return nil, &Error{File: path, Msg: fmt.Sprintf("%v %q: expected a .toml or .ini file", ErrUnknownFormat, ext), Err: ErrUnknownFormat}
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the config file: " + unwrapPathError(err), Err: err}
	}
	tree, pos, perr := read(path, src)
	if perr != nil {
		return nil, perr
	}
	d := &decoder{file: path, pos: pos, ini: ini}
	if err := d.decodeStruct(nil, tree, reflect.ValueOf(cfg).Elem()); err != nil {
		return nil, err
	}
	if _, ok := cfg.Edge.VHosts["default"]; !ok {
		if cfg.Edge.VHosts == nil {
			cfg.Edge.VHosts = map[string]VHost{}
		}
		cfg.Edge.VHosts["default"] = DefaultVHost()
	}
	return pos, nil
}

// unwrapPathError drops the path from an *os.PathError message, since the
// error already starts with it.
func unwrapPathError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
