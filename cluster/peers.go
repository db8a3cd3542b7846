package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
)

// The gossip addresses of the other members are kept in
// <data_dir>/gossip/peers.json, as serf's snapshot keeps them: a node that
// restarts joins them again even when its join list is empty or out of
// date (the node that bootstrapped a cluster usually has no join list).

func peersFile(dataDir string) string { return filepath.Join(dataDir, "gossip", "peers.json") }

// readPeers returns the saved addresses; none when there is no file.
func readPeers(dataDir string) []string {
	b, err := os.ReadFile(peersFile(dataDir))
	if err != nil {
		return nil
	}
	var addrs []string
	if json.Unmarshal(b, &addrs) != nil {
		return nil
	}
	return addrs
}

// savePeers writes the alive members' addresses (not this node's) when
// they differ from what was saved last.
func (c *Cluster) savePeers() {
	var addrs []string
	for _, m := range c.Members() {
		if m.Name != c.name && m.State == StateAlive && m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	slices.Sort(addrs)
	if len(addrs) == 0 || slices.Equal(addrs, c.savedPeers) {
		return
	}
	path := peersFile(c.opts.Config.Node.DataDir)
	b, _ := json.Marshal(addrs)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		c.log.Warn("save gossip peers", "err", err)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		c.log.Warn("save gossip peers", "err", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		c.log.Warn("save gossip peers", "err", err)
		return
	}
	c.savedPeers = addrs
}
