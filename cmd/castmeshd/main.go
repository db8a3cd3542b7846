// Command castmeshd runs a castmesh node.
//
//	castmeshd [--config FILE]   run a node (no file: a single-node cluster on the defaults)
//	castmeshd demo              run a local 3-node cluster serving a bundled sample
//	castmeshd probe FILE        print what media/ finds in a file, as JSON
//	castmeshd version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/castmesh/castmesh/config"
	"github.com/castmesh/castmesh/node"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "probe":
			os.Exit(runProbe(args[1:], os.Stdout, os.Stderr))
		case "demo":
			os.Exit(runDemo(args[1:], os.Stdout, os.Stderr))
		case "version", "--version":
			fmt.Println("castmeshd", node.Version)
			return
		}
	}
	os.Exit(runNode(args, os.Stdout, os.Stderr))
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: expected debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runNode(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("castmeshd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (.toml or .ini); none: a single-node cluster on the defaults")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "castmeshd:", err)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "castmeshd:", err)
		return 1
	}
	generated, err := config.EnsureAPIPassword(&cfg)
	if err != nil {
		fmt.Fprintln(stderr, "castmeshd:", err)
		return 1
	}
	if generated {
		fmt.Fprintf(stdout, "API password for user %q generated and kept in %s/api-password: %s\n", cfg.API.UserName, cfg.Node.DataDir, cfg.API.Password)
	}
	n, err := node.New(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "castmeshd:", err)
		return 1
	}
	fmt.Fprintf(stdout, "castmesh node %s: api %s  edge %s  health %s/health  gossip %s:%d  data %s\n",
		n.Name(), n.APIURL(), n.EdgeURL(), n.EdgeURL(), cfg.Node.BindAddr, cfg.Cluster.GossipPort, cfg.Node.DataDir)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		select {
		case <-n.Done():
			log.Info("node stopped")
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(n, *path, log)
				continue
			}
			log.Info("stopping", "signal", sig.String())
			if err := n.Close(); err != nil {
				log.Error("stop", "err", err)
				return 1
			}
			return 0
		}
	}
}

// reload re-reads the config file; a bad file keeps the running config.
func reload(n *node.Node, path string, log *slog.Logger) {
	if path == "" {
		log.Info("SIGHUP: no config file to reload")
		return
	}
	cfg, err := config.Load(path)
	if err == nil {
		_, err = config.EnsureAPIPassword(&cfg)
	}
	if err == nil {
		err = n.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed; keeping the running config", "err", err)
		return
	}
	log.Info("config reloaded", "file", path)
}

// waitHealthy polls until every node is healthy or ctx ends.
func waitHealthy(ctx context.Context, nodes []*node.Node) error {
	for {
		var why []string
		for _, n := range nodes {
			if ok, reason := n.Health(); !ok {
				why = append(why, n.Name()+": "+reason)
			}
		}
		if len(why) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New(strings.Join(why, "; "))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
