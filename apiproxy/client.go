package apiproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/castmesh/castmesh/cluster"
	"github.com/castmesh/castmesh/config"
)

// Client calls a node's API proxy.
type Client struct {
	// BaseURL is scheme://host:port/<pseudo_domain>, without a trailing slash.
	BaseURL  string
	User     string
	Password string
	HTTP     *http.Client
}

// ErrFail is a command the node answered with FAIL; the error text is the
// node's description.
var ErrFail = errors.New("command failed")

func (c *Client) do(req *http.Request) (*http.Response, error) {
	if c.User != "" || c.Password != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: 401 unauthorized: check the user name and password", c.BaseURL)
	}
	return resp, nil
}

// Call runs an EMS command with args sent as EMS's base64 "params" and
// decodes the answer's data into out (when not nil).
func (c *Client) Call(ctx context.Context, command string, args map[string]string, out any) error {
	u := c.BaseURL + "/" + command
	if len(args) > 0 {
		for k, v := range args {
			if strings.ContainsAny(k+v, " \t\n") {
				return fmt.Errorf("argument %s: EMS arguments cannot contain spaces", k)
			}
		}
		u += "?params=" + url.QueryEscape(EncodeEMSParams(args))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Data        json.RawMessage `json:"data"`
		Description string          `json:"description"`
		Status      string          `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&env); err != nil {
		return fmt.Errorf("%s: %s: not an EMS answer: %w", u, resp.Status, err)
	}
	if env.Status != StatusSuccess {
		return fmt.Errorf("%w: %s", ErrFail, env.Description)
	}
	if out != nil && len(env.Data) > 0 {
		return json.Unmarshal(env.Data, out)
	}
	return nil
}

// Apply forwards a Raft command to the node (the leader) and returns the
// FSM's answer.
func (c *Client) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/cluster/apply", bytes.NewReader(cmd))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusMisdirectedRequest:
		return nil, fmt.Errorf("%w: %s", cluster.ErrNotLeader, strings.TrimSpace(string(body)))
	default:
		return nil, errors.New(strings.TrimSpace(string(body)))
	}
}

// Directory knows how to call each peer's API proxy: its address and
// pseudo domain from gossip, its credentials and enable switch from this
// node's destination_ems_apiproxies (matched by address), or this node's
// own [api] credentials for a peer with no entry.
type Directory struct {
	creds   atomic.Pointer[credentials]
	http    *http.Client
	members func(name string) (cluster.Member, bool)
}

type credentials struct {
	api     config.API
	entries []config.APIProxyPeer
}

// NewDirectory returns the Directory of cfg; members looks a member up by name.
func NewDirectory(cfg config.Config, hc *http.Client, members func(string) (cluster.Member, bool)) *Directory {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	d := &Directory{http: hc, members: members}
	d.Update(cfg)
	return d
}

// Update takes the credentials and switches of a reloaded config.
func (d *Directory) Update(cfg config.Config) {
	d.creds.Store(&credentials{api: cfg.API, entries: cfg.StreamLoadBalancer.DestinationEMSAPIProxies})
}

// entry returns the destination_ems_apiproxies entry of m: one whose
// address is m's gossip host:port, else the first whose address is m's host.
func (d *Directory) entry(m cluster.Member) (config.APIProxyPeer, bool) {
	host, _, _ := net.SplitHostPort(m.Addr)
	apiHost, _, _ := net.SplitHostPort(m.Meta.API)
	entries := d.creds.Load().entries
	for _, e := range entries {
		if e.Address == m.Addr {
			return e, true
		}
	}
	for _, e := range entries {
		if e.Address == host || e.Address == apiHost || e.Address == m.Name {
			return e, true
		}
	}
	return config.APIProxyPeer{}, false
}

// Client returns a Client for m's API proxy.
func (d *Directory) Client(m cluster.Member) *Client {
	scheme := m.Meta.APIScheme
	if scheme == "" {
		scheme = "http"
	}
	c := &Client{BaseURL: scheme + "://" + m.Meta.API + "/" + m.Meta.PseudoDomain, HTTP: d.http}
	if e, ok := d.entry(m); ok {
		if e.Authentication != "none" {
			c.User, c.Password = e.UserName, e.Password
		}
		return c
	}
	if api := d.creds.Load().api; api.Authentication != "none" {
		c.User, c.Password = api.UserName, api.Password
	}
	return c
}

// ReplicatesTo reports whether this node lets the peer called name copy
// its streams: false only when that peer's entry says enable = false.
func (d *Directory) ReplicatesTo(name string) bool {
	m, ok := d.members(name)
	if !ok {
		return true
	}
	e, ok := d.entry(m)
	return !ok || e.Enable
}
