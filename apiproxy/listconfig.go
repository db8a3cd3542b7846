package apiproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
)

// ListConfig is the data of the listConfig command.
type ListConfig struct {
	Pull []ConfigEntry `json:"pull"`
	Push []ConfigEntry `json:"push"`
}

// ListConfig runs listConfig.
func (c *Client) ListConfig(ctx context.Context) (ListConfig, error) {
	var lc ListConfig
	err := c.Call(ctx, "listConfig", nil, &lc)
	return lc, err
}

// Raw runs a command without arguments and returns the answer as sent.
func (c *Client) Raw(ctx context.Context, command string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/"+command, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/%s: %s", c.BaseURL, command, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// WriteTable prints lc for people: a row per stream and node. Live
// streams also show, per node, the bit rate, where the node receives the
// stream from (the source on the origin, the origin elsewhere) and how far
// it is behind the origin's live edge.
func WriteTable(w io.Writer, lc ListConfig) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tSTREAM\tKIND\tSOURCE\tORIGIN\tNODE\tSTATE\tBYTES\tVIEWERS\tKBPS\tUPSTREAM\tLAG\tDETAIL")
	entries := append(append([]ConfigEntry{}, lc.Pull...), lc.Push...)
	if len(entries) == 0 {
		fmt.Fprintln(tw, "(no streams)")
	}
	for _, e := range entries {
		nodes := make([]string, 0, len(e.Nodes))
		for n := range e.Nodes {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		for i, n := range nodes {
			st := e.Nodes[n]
			head := "\t\t\t\t"
			if i == 0 {
				head = fmt.Sprintf("%d\t%s\t%s\t%s\t%s", e.ConfigID, e.LocalStreamName, e.Kind, redactURI(e.URI), e.Origin)
			}
			bytes := fmt.Sprint(st.Bytes)
			if st.Size > 0 && st.Bytes != st.Size {
				bytes = fmt.Sprintf("%d/%d", st.Bytes, st.Size)
			}
			kbps, lag, upstream := "-", "-", st.Upstream
			if upstream == "" {
				upstream = "-"
			}
			if st.Live != nil {
				kbps = fmt.Sprintf("%.0f", st.Live.BitrateBPS/1000)
				lag = fmt.Sprintf("%dms", st.Live.LagMS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", head, n, st.Current.State, bytes, st.Viewers, kbps, upstream, lag, oneLine(st.Current.Description))
		}
	}
	return tw.Flush()
}

func redactURI(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
