package node

import (
	"net/http"
	"testing"
	"time"

	"github.com/castmesh/castmesh/config"
)

// The switches of the Stream Load Balancer: an origin never has a peer
// whose destination_ems_apiproxies entry says enable = false pull from it,
// and a node with plugin_switch = "disabled" neither pulls nor is pulled.
func TestReplicationSwitches(t *testing.T) {
	tc := newTestClusterWith(t, 3, func(i int, cfg *config.Config) {
		switch i {
		case 0: // n1 does not replicate to n2
			peer := config.DefaultPeer()
			peer.Enable, peer.Address, peer.UserName, peer.Password = false, "n2", "admin", testPassword
			cfg.StreamLoadBalancer.DestinationEMSAPIProxies = []config.APIProxyPeer{peer}
		case 2:
			cfg.StreamLoadBalancer.PluginSwitch = "disabled"
		}
	})
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	src := newSource(t, 64<<10)

	served := func(nd *Node, name string) int {
		resp, _, err := edgeGet(nd, name)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	states := func(name string) map[string]string {
		out := map[string]string{}
		for _, e := range getListConfig(t, n1).Pull {
			if e.LocalStreamName == name {
				for node, st := range e.Nodes {
					out[node] = st.Current.State
				}
			}
		}
		return out
	}

	// From n1: only n1 carries it; n2 is excluded by n1's entry, n3 by its switch.
	mustSucceed(t, n1, "pullStream", "uri="+src.URL+"/a.mp4 localStreamName=a.mp4")
	waitServed(t, n1, "a.mp4", src.sum, 5*time.Second)
	waitFor(t, 5*time.Second, "a.mp4 excluded on n2 and n3", func() bool {
		st := states("a.mp4")
		return st["n1"] == "active" && st["n2"] == "excluded" && st["n3"] == "excluded"
	})
	// From n2: n1 pulls it, n3 still does not.
	mustSucceed(t, n2, "pullStream", "uri="+src.URL+"/b.mp4 localStreamName=b.mp4")
	waitServed(t, n1, "b.mp4", src.sum, 5*time.Second)
	// From n3, which does not replicate: nobody else pulls it.
	mustSucceed(t, n3, "pullStream", "uri="+src.URL+"/c.mp4 localStreamName=c.mp4")
	waitServed(t, n3, "c.mp4", src.sum, 5*time.Second)
	waitFor(t, 5*time.Second, "c.mp4 excluded on n1 and n2", func() bool {
		st := states("c.mp4")
		return st["n1"] == "excluded" && st["n2"] == "excluded" && st["n3"] == "active"
	})

	for _, c := range []struct {
		nd   *Node
		name string
	}{{n2, "a.mp4"}, {n3, "a.mp4"}, {n3, "b.mp4"}, {n1, "c.mp4"}, {n2, "c.mp4"}} {
		if code := served(c.nd, c.name); code != http.StatusNotFound {
			t.Errorf("%s serves %s with %d; it must not carry it (404)", c.nd.Name(), c.name, code)
		}
	}
	// A node that carries no copy by design is still healthy.
	for _, nd := range tc.nodes {
		if ok, why := nd.Health(); !ok {
			t.Errorf("%s unhealthy: %s", nd.Name(), why)
		}
	}
}
