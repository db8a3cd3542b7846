package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/castmesh/castmesh/apiproxy"
	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/node"
)

//go:embed sample/sample.mp4
var sampleMP4 []byte

// runDemo starts three nodes on 127.0.0.1 (the first on the default ports,
// the others on the next ones), serves the bundled sample from a local HTTP
// source, has node 2 pull it with an EMS pullStream and shows the result.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("castmeshd demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "./castmesh-data/demo", "data directory of the three nodes")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "castmeshd demo:", err)
		return 2
	}
	password := os.Getenv("CASTMESH_API_PASSWORD")
	if password == "" {
		password = rand.Text()[:20]
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "castmeshd demo:", err); return 1 }

	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	def := config.Default()
	for i := range 3 {
		cfg := config.Default()
		cfg.Node.Name = "n" + strconv.Itoa(i+1)
		cfg.Node.DataDir = filepath.Join(*dir, cfg.Node.Name)
		cfg.Cluster.GossipPort = def.Cluster.GossipPort + i
		cfg.Cluster.RaftPort = def.Cluster.RaftPort + i
		cfg.API.EWSPort = def.API.EWSPort + i
		cfg.Edge.Port = def.Edge.Port + i
		cfg.Ingest.Port = def.Ingest.Port + i
		cfg.Cluster.BootstrapExpect = 3
		if i > 0 {
			cfg.Cluster.Join = []string{net.JoinHostPort(def.Node.BindAddr, strconv.Itoa(def.Cluster.GossipPort))}
		}
		cfg.API.Password = password
		if err := cfg.Validate(); err != nil {
			return fail(err)
		}
		n, err := node.New(cfg, log)
		if err != nil {
			return fail(fmt.Errorf("node %s: %w (is another castmesh running on these ports?)", cfg.Node.Name, err))
		}
		nodes = append(nodes, n)
		fmt.Fprintf(stdout, "started %s: api %s  edge %s\n", n.Name(), n.APIURL(), n.EdgeURL())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := nodes[0].Cluster().WaitForLeader(ctx)
	if err != nil {
		return fail(fmt.Errorf("no leader elected: %w", err))
	}
	fmt.Fprintf(stdout, "cluster formed; leader %s\n", leader.Name)

	src, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	source := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "sample.mp4", time.Unix(0, 0), bytes.NewReader(sampleMP4))
	})}
	go source.Serve(src)
	defer source.Close()
	uri := "http://" + src.Addr().String() + "/sample.mp4"

	api := &apiproxy.Client{BaseURL: nodes[1].APIURL(), User: "admin", Password: password}
	fmt.Fprintf(stdout, "pullStream on n2: uri=%s localStreamName=vod/sample.mp4\n", uri)
	err = api.Call(ctx, "pullStream", map[string]string{"uri": uri, "localStreamName": "vod/sample.mp4"}, nil)
	if err != nil && !errors.Is(err, apiproxy.ErrFail) {
		return fail(err)
	}
	if err != nil {
		fmt.Fprintf(stdout, "  (%v — kept from an earlier run)\n", err)
	}
	if err := waitHealthy(ctx, nodes); err != nil {
		return fail(fmt.Errorf("nodes did not all get the sample: %w", err))
	}
	fmt.Fprintln(stdout, "\nevery node serves the sample:")
	for _, n := range nodes {
		fmt.Fprintf(stdout, "  %s/vod/sample.mp4\n", n.EdgeURL())
	}
	fmt.Fprintf(stdout, "\ntry:  curl -sI %s/vod/sample.mp4\n      ffprobe %s/vod/sample.mp4\n", nodes[2].EdgeURL(), nodes[2].EdgeURL())
	fmt.Fprintf(stdout, "      CASTMESH_PASSWORD=%s go run ./cmd/listconfig\n\nlistconfig now shows:\n", password)
	lc, err := api.ListConfig(ctx)
	if err != nil {
		return fail(err)
	}
	apiproxy.WriteTable(stdout, lc)
	fmt.Fprintln(stdout, "\nCtrl-C stops the cluster; its data stays in", *dir)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	return 0
}
