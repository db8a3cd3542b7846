package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/castmesh/castmesh/media"
)

// runProbe is `castmeshd probe [-fragments] FILE`: it prints what media.Probe
// finds in FILE as one JSON object and returns 0; a file it cannot read or
// parse gives one line "castmeshd probe: FILE: reason" on stderr and 1; bad
// usage gives 2.
func runProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("castmeshd probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withFragments := fs.Bool("fragments", false, "also list each fMP4 fragment (offset, length, start_s, duration_s, keyframe)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: castmeshd probe [-fragments] FILE")
		fmt.Fprintln(stderr, "prints the kind, duration, bit rate, header byte ranges and tracks of an MP4, M4A or MP3 file as JSON")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	info, err := media.ProbeFile(path)
	if err != nil {
		// One line, whatever the error says.
		reason := strings.Join(strings.Fields(err.Error()), " ")
		fmt.Fprintf(stderr, "castmeshd probe: %s: %s\n", path, reason)
		return 1
	}
	var out any = info
	if *withFragments {
		type fragment struct {
			Offset    int64   `json:"offset"`
			Length    int64   `json:"length"`
			StartS    float64 `json:"start_s"`
			DurationS float64 `json:"duration_s"`
			Keyframe  bool    `json:"keyframe"`
		}
		list := make([]fragment, 0, len(info.FragmentList))
		for _, f := range info.FragmentList {
			list = append(list, fragment{f.Offset, f.Length, f.Start.Seconds(), f.Duration.Seconds(), f.Keyframe})
		}
		out = struct {
			*media.Info
			FragmentList []fragment `json:"fragment_list"`
		}{info, list}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(stderr, "castmeshd probe: %s: %v\n", path, err)
		return 1
	}
	return 0
}
