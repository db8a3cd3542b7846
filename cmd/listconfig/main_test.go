package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/castmesh/castmesh/apiproxy"
	"github.com/castmesh/castmesh/streams"
)

// A live stream shows, for each node, its state, bit rate, viewers,
// upstream and lag, in the table and in --json.
func TestLiveStreamColumns(t *testing.T) {
	now := time.Now().UTC()
	lc := apiproxy.ListConfig{Pull: []apiproxy.ConfigEntry{}, Push: []apiproxy.ConfigEntry{{
		ConfigID: 4, LocalStreamName: "live/radio.mp3", URI: "push", Kind: "live", Origin: "n1", OperationType: 2,
		Nodes: map[string]streams.Status{
			"n1": {Name: "live/radio.mp3", Current: streams.Condition{State: "live", Description: "source connected", Timestamp: now},
				Viewers: 3, Upstream: "source", Bytes: 1000, Live: &streams.LiveStatus{BitrateBPS: 128000}},
			"n2": {Name: "live/radio.mp3", Current: streams.Condition{State: "reconnecting", Description: "relay from n1: EOF", Timestamp: now},
				Viewers: 1, Upstream: "n1", Bytes: 900, Live: &streams.LiveStatus{BitrateBPS: 127900, LagMS: 1250, ViewersDropped: 2}},
		},
	}}}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "admin" || p != "pw" || r.URL.Path != "/apiproxy/listConfig" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(apiproxy.Envelope{Data: lc, Status: apiproxy.StatusSuccess})
	}))
	defer api.Close()

	var out, errOut bytes.Buffer
	if code := run([]string{"--api", api.URL + "/apiproxy", "--password", "pw"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{
		`(?m)^CONFIG\s+STREAM\s+KIND\s+SOURCE\s+ORIGIN\s+NODE\s+STATE\s+BYTES\s+VIEWERS\s+KBPS\s+UPSTREAM\s+LAG\s+DETAIL$`,
		`(?m)^4\s+live/radio.mp3\s+live\s+push\s+n1\s+n1\s+live\s+1000\s+3\s+128\s+source\s+0ms\s+source connected$`,
		`(?m)^\s+n2\s+reconnecting\s+900\s+1\s+128\s+n1\s+1250ms\s+relay from n1: EOF$`,
	} {
		if !regexp.MustCompile(want).MatchString(table) {
			t.Errorf("table does not match %s:\n%s", want, table)
		}
	}

	out.Reset()
	if code := run([]string{"--api", api.URL + "/apiproxy", "--password", "pw", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("--json exit %d: %s", code, errOut.String())
	}
	var env struct {
		Data apiproxy.ListConfig `json:"data"`
	}
	if err := json.Unmarshal(out.Bytes(), &env); err != nil {
		t.Fatal(err)
	}
	n2 := env.Data.Push[0].Nodes["n2"]
	if n2.Current.State != "reconnecting" || n2.Viewers != 1 || n2.Upstream != "n1" || n2.Live == nil || n2.Live.LagMS != 1250 || n2.Live.BitrateBPS != 127900 {
		t.Fatalf("--json n2: %+v %+v", n2, n2.Live)
	}
	if !strings.Contains(out.String(), `"lag_ms": 0`) {
		t.Errorf("--json omits the origin's lag of 0:\n%s", out.String())
	}
}
