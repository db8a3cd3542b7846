// Command listconfig shows the replicated streams of a castmesh cluster and
// every node's state of them.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/castmesh/castmesh/apiproxy"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("listconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", envOr("CASTMESH_API", "http://127.0.0.1:8888/apiproxy"), "base URL of any node's API proxy (env CASTMESH_API)")
	user := fs.String("user", envOr("CASTMESH_USER", "admin"), "API user name (env CASTMESH_USER)")
	password := fs.String("password", os.Getenv("CASTMESH_PASSWORD"), "API password (env CASTMESH_PASSWORD)")
	asJSON := fs.Bool("json", false, "print the EMS listConfig envelope, extended with every node's state")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &apiproxy.Client{BaseURL: strings.TrimRight(*api, "/"), User: *user, Password: *password}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *asJSON {
		raw, err := c.Raw(ctx, "listConfig")
		if err != nil {
			fmt.Fprintln(stderr, "listconfig:", err)
			return 1
		}
		var out bytes.Buffer
		if json.Indent(&out, raw, "", "  ") != nil {
			fmt.Fprintln(stderr, "listconfig: the node did not answer JSON")
			return 1
		}
		fmt.Fprintln(stdout, out.String())
		return 0
	}
	lc, err := c.ListConfig(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "listconfig:", err)
		return 1
	}
	if err := apiproxy.WriteTable(stdout, lc); err != nil {
		fmt.Fprintln(stderr, "listconfig:", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
