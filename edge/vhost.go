package edge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/shaping"
)

// Config is the edge's part of a node's config, ready to serve: the vhosts
// with their throttling.txt rules read, the trusted proxies parsed. Build
// it with LoadConfig and hand it to New or Server.Apply.
type Config struct {
	VHosts map[string]VHostConfig
	// NodeTrafficCap is node_traffic_cap in bytes per second (0: none).
	NodeTrafficCap float64

	trusted trustedProxies // edge.trusted_proxies
}

// VHostConfig is one vhost with its rules.
type VHostConfig struct {
	Name     string
	Hosts    []string
	Settings shaping.Settings
	// Rules is the vhost's throttling.txt (nil: no rules file).
	Rules *shaping.Rules
	// RulesFile is the path the rules were read from ("" when none).
	RulesFile string
	// TrafficCap and SessionCap are in bytes per second (0: none).
	TrafficCap, SessionCap float64
}

// LoadConfig reads what the edge needs from a validated config, including
// every vhost's rules_file. A relative rules_file is taken from the
// directory of the config file, or, when it is not there, from the
// process's working directory. A rules file that does not parse is an error naming its
// path, line and column (a *shaping.SyntaxError); the node must not start
// on it, and a reload keeps what it had.
func LoadConfig(c config.Config) (*Config, error) {
	tp, err := parseTrustedProxies(c.Edge.TrustedProxies)
	if err != nil {
		return nil, err
	}
	out := &Config{
		VHosts:         map[string]VHostConfig{},
		NodeTrafficCap: shaping.MbpsToBytesPerSec(c.Edge.NodeTrafficCap),
		trusted:        tp,
	}
	names := make([]string, 0, len(c.Edge.VHosts))
	for name := range c.Edge.VHosts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := c.Edge.VHosts[name]
		vc := VHostConfig{
			Name:       name,
			Hosts:      append([]string(nil), v.Hosts...),
			Settings:   shaping.SettingsFromVHost(v),
			TrafficCap: shaping.MbpsToBytesPerSec(v.TrafficCap),
			SessionCap: shaping.KbpsToBytesPerSec(v.SessionCap),
		}
		if err := vc.Settings.Validate(); err != nil {
			return nil, fmt.Errorf("edge.vhosts.%s: %w", name, err)
		}
		if v.RulesFile != "" {
			vc.RulesFile = RulesPath(c.Source, v.RulesFile)
			if _, err := os.Stat(vc.RulesFile); errors.Is(err, fs.ErrNotExist) {
				// Not beside the config: as written, from the working
				// directory, if it is there.
				if _, err := os.Stat(v.RulesFile); err == nil {
					vc.RulesFile = v.RulesFile
				}
			}
			rules, err := shaping.LoadRules(vc.RulesFile)
			if err != nil {
				return nil, fmt.Errorf("edge.vhosts.%s.rules_file: %w", name, err)
			}
			vc.Rules = rules
		}
		out.VHosts[name] = vc
	}
	if _, ok := out.VHosts["default"]; !ok {
		return nil, fmt.Errorf("edge.vhosts: the \"default\" vhost is missing")
	}
	return out, nil
}

// RulesPath resolves a rules_file against the directory of the config
// file it was written in.
func RulesPath(configFile, rulesFile string) string {
	if filepath.IsAbs(rulesFile) || configFile == "" {
		return rulesFile
	}
	return filepath.Join(filepath.Dir(configFile), rulesFile)
}

// vhost is a running virtual host: its settings and rules (replaced as a
// whole on reload), its pacing group (kept across reloads, its cap changed
// in place) and its metrics.
type vhost struct {
	name       string
	settings   shaping.Settings
	rules      *shaping.Rules
	sessionCap float64 // bytes/s
	group      *shaping.Group
	m          *vhostMetrics
}

// boostSeconds is how much of a live stream a new viewer of this vhost
// gets at once: the policy's boost, or the vhost's when the policy is not
// throttled (throttling off, or a rule's "no").
func (vh *vhost) boostSeconds(pol shaping.Policy) float64 {
	if pol.Throttled && pol.RateBytesPerSec > 0 {
		return float64(pol.BoostBytes) / pol.RateBytesPerSec
	}
	return vh.settings.Boost
}
