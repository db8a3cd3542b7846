package cluster

import (
	"encoding/json"
	"fmt"
)

// metaVersion is the version of the gossip metadata encoding. A node
// ignores fields it does not know, so adding fields keeps the version.
const metaVersion = 1

// maxMetaSize is memberlist's limit on node metadata (memberlist.MetaMaxSize).
const maxMetaSize = 512

// Meta is the typed gossip metadata of a node. It travels in memberlist's
// node meta, encoded and parsed only by encodeMeta and decodeMeta.
type Meta struct {
	Raft            string `json:"raft,omitempty"`            // host:port of the raft transport
	API             string `json:"api,omitempty"`             // host:port of the API proxy
	APIScheme       string `json:"apiScheme,omitempty"`       // "http" or "https"
	PseudoDomain    string `json:"pseudoDomain,omitempty"`    // e.g. "apiproxy"
	Edge            string `json:"edge,omitempty"`            // host:port of the edge listener
	Ingest          string `json:"ingest,omitempty"`          // host:port of ingest ("" when off)
	Zone            string `json:"zone,omitempty"`            // node.zone
	Replicates      bool   `json:"replicates,omitempty"`      // stream_load_balancer.plugin_switch enabled
	BootstrapExpect int    `json:"bootstrapExpect,omitempty"` // cluster.bootstrap_expect of the node
	InCluster       bool   `json:"inCluster,omitempty"`       // the node has raft state or knows a leader
	Leaving         bool   `json:"leaving,omitempty"`         // the node is leaving gracefully
}

// wireMeta is Meta on the wire, with the encoding's version.
type wireMeta struct {
	V int `json:"v"`
	Meta
}

// encodeMeta is the one place Meta becomes memberlist node meta.
func encodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(wireMeta{V: metaVersion, Meta: m})
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("gossip metadata is %d bytes, more than memberlist's %d (shorten node.zone or api.pseudo_domain)", len(b), maxMetaSize)
	}
	return b, nil
}

// decodeMeta is the one place memberlist node meta becomes Meta.
func decodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, fmt.Errorf("no gossip metadata (not a castmesh node?)")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, fmt.Errorf("gossip metadata: %w", err)
	}
	if w.V < 1 {
		return Meta{}, fmt.Errorf("gossip metadata: missing version")
	}
	return w.Meta, nil
}
