package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castmesh/castmesh/streams/livestamp"
)

const (
	mp3Fixture = "../testdata/media/mp3-cbr128.mp3"
	mp4Sample  = "../cmd/castmeshd/sample/sample.mp4"
)

// startSource runs ffmpeg as a source client until the test ends or the
// returned stop is called.
func startSource(t *testing.T, args ...string) (stop func()) {
	ffmpeg := requireTool(t, "ffmpeg")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ffmpeg, append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); cmd.Wait() }) }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("source ffmpeg stderr: %s", stderr.String())
		}
	})
	return stop
}

// liveEntry is what the live tests read of listconfig --json.
type liveEntry struct {
	LocalStreamName string `json:"localStreamName"`
	Kind            string `json:"kind"`
	Origin          string `json:"origin"`
	Nodes           map[string]struct {
		Current struct {
			State string `json:"state"`
		} `json:"current"`
		Upstream string `json:"upstream"`
		Live     *struct {
			BitrateBPS float64 `json:"bitrate_bps"`
		} `json:"live"`
	} `json:"nodes"`
}

func liveConfig(t *testing.T, p *proc, name string) (liveEntry, bool) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "listconfig"), "--json", "--api", p.apiURL(), "--user", "admin")
	cmd.Env = append(os.Environ(), "CASTMESH_PASSWORD="+password)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listconfig --json: %v", err)
	}
	var lc struct {
		Data struct{ Pull, Push []liveEntry } `json:"data"`
	}
	if err := json.Unmarshal(out, &lc); err != nil {
		t.Fatalf("listconfig --json printed %s: %v", out, err)
	}
	for _, e := range append(lc.Data.Pull, lc.Data.Push...) {
		if e.LocalStreamName == name {
			return e, true
		}
	}
	return liveEntry{}, false
}

// decodes has ffmpeg play d of url and reports its complaints.
func decodes(t *testing.T, url string, d time.Duration) error {
	ffmpeg := requireTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-t", fmt.Sprint(d.Seconds()), "-i", url, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("ffmpeg decoding %s: %v: %s", url, err, out)
	}
	return nil
}

// waitServed waits until every node of pc answers a HEAD of name with 200.
func waitServed(t *testing.T, pc *procCluster, name string, within time.Duration) {
	t.Helper()
	for _, p := range pc.procs {
		waitFor(t, within, name+" served on "+p.name, func() bool {
			resp, err := http.Head(p.edgeURL() + "/" + name)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}, pc.logs)
	}
}

func TestLivePushMP3AndFMP4ToEveryNode(t *testing.T) {
	ffmpeg := requireTool(t, "ffmpeg")
	pc := startCluster(t, 3)
	n1, n2 := pc.procs[0], pc.procs[1]

	stopRadio := startSource(t, "-i", mp3Fixture, "-c", "copy", "-content_type", "audio/mpeg", "-f", "mp3", n1.sourceURL("icecast", "live/radio.mp3"))
	startSource(t, "-i", mp4Sample, "-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
		"-content_type", "video/mp4", "-method", "PUT", n2.sourceURL("http", "live/tv.mp4"))
	waitServed(t, pc, "live/radio.mp3", 15*time.Second)
	waitServed(t, pc, "live/tv.mp4", 15*time.Second)

	errs := make(chan error, 6)
	for _, p := range pc.procs {
		for _, name := range []string{"live/radio.mp3", "live/tv.mp4"} {
			go func() { errs <- decodes(t, p.edgeURL()+"/"+name, 8*time.Second) }()
		}
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.Fatal(pc.logs())
	}

	// A second source on a live mount is refused, on any node.
	out, err := exec.Command(ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-t", "1", "-i", mp3Fixture, "-c", "copy",
		"-content_type", "audio/mpeg", "-f", "mp3", pc.procs[2].sourceURL("icecast", "live/radio.mp3")).CombinedOutput()
	if err == nil {
		t.Errorf("a second source on live/radio.mp3 was accepted: %s", out)
	}

	// The source goes away and comes back on another node: that node
	// becomes the origin, the others switch to it, viewers decode, and
	// the source's ice-* headers reach the viewers as icy-*.
	stopRadio()
	n3 := pc.procs[2]
	startSource(t, "-i", mp3Fixture, "-c", "copy", "-content_type", "audio/mpeg", "-ice_name", "castmesh e2e", "-f", "mp3", n3.sourceURL("icecast", "live/radio.mp3"))
	waitFor(t, 15*time.Second, "live/radio.mp3 to move to n3 and be live on every node", func() bool {
		e, ok := liveConfig(t, n2, "live/radio.mp3")
		if !ok || e.Origin != "n3" || len(e.Nodes) != 3 {
			return false
		}
		for name, st := range e.Nodes {
			want := "n3"
			if name == "n3" {
				want = "source"
			}
			if st.Current.State != "live" || st.Upstream != want || st.Live == nil || st.Live.BitrateBPS < 100e3 {
				return false
			}
		}
		return true
	}, pc.logs)
	resp, err := http.Get(n1.edgeURL() + "/live/radio.mp3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Icy-Name"); got != "castmesh e2e" {
		t.Errorf("viewer on n1: Icy-Name %q, want the source's ice-name", got)
	}
	if err := decodes(t, n1.edgeURL()+"/live/radio.mp3", 4*time.Second); err != nil {
		t.Error(err)
	}
	// The per-stream live series are on the API's /metrics.
	metrics := apiMetrics(t, n1)
	for _, series := range []string{`castmesh_live_ingest_bytes_total{stream="live/radio.mp3"}`, `castmesh_live_viewers{stream="live/tv.mp4"}`,
		`castmesh_live_viewers_dropped_total{stream="live/radio.mp3"}`, `castmesh_live_relay_lag_seconds{stream="live/radio.mp3"}`} {
		if !strings.Contains(metrics, series) {
			t.Errorf("n1's /metrics has no %s", series)
		}
	}

	waitFor(t, 5*time.Second, "listconfig to show both pushed streams live on every node", func() bool {
		lc := listconfigJSON(t, pc.procs[2])
		if len(lc.Data.Push) != 2 {
			return false
		}
		for _, e := range lc.Data.Push {
			if len(e.Nodes) != 3 {
				return false
			}
			for _, st := range e.Nodes {
				if st.Current.State != "live" {
					return false
				}
			}
		}
		return true
	}, pc.logs)
}

// stampedSource serves an endless live MP3 stream of stamped frames at its
// real rate, as an Icecast mount would; frame numbers follow the clock, so
// a node that connects again continues the numbering, with a gap.
func stampedSource(t *testing.T) string {
	epoch := time.Now()
	src := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Header().Set("icy-name", "e2e radio")
		rc := http.NewResponseController(w)
		next := uint64(time.Since(epoch) / livestamp.FrameDuration)
		s := livestamp.NewSource(next)
		var buf []byte
		for r.Context().Err() == nil {
			buf = buf[:0]
			for due := uint64(time.Since(epoch) / livestamp.FrameDuration); next <= due; next++ {
				buf = s.Frame(buf, time.Now())
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			rc.Flush()
			time.Sleep(50 * time.Millisecond)
		}
	}))
	return src.URL + "/radio.mp3"
}

// arrival is a stamped frame as a viewer got it.
type arrival struct {
	at    time.Time
	stamp livestamp.Stamp
}

// stampWatcher is a viewer that keeps reading a live stream and records
// every frame; done gets the reason it stopped.
type stampWatcher struct {
	name   string
	frames chan arrival
	done   chan error
}

func watchStamped(t *testing.T, url, name string) *stampWatcher {
	w := &stampWatcher{name: name, frames: make(chan arrival, 10000), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.done <- err
			return
		}
		defer resp.Body.Close()
		var rd livestamp.Reader
		buf := make([]byte, 16<<10)
		for {
			n, err := resp.Body.Read(buf)
			now := time.Now()
			rd.Write(buf[:n], func(s livestamp.Stamp) {
				select {
				case w.frames <- arrival{now, s}:
				default:
				}
			})
			if err != nil {
				w.done <- fmt.Errorf("viewer on %s disconnected: %w", name, err)
				return
			}
		}
	}()
	return w
}

func TestLivePulledSourceSurvivesOriginKill(t *testing.T) {
	requireTool(t, "curl")
	pc := startCluster(t, 3)
	uri := stampedSource(t)
	origin := pc.procs[0]
	code, env := curlAPI(t, origin, "admin", password, "pullStream", "uri="+uri+" localStreamName=live/pulled.mp3")
	if code != 200 || env.Status != "SUCCESS" {
		t.Fatalf("pullStream of a live source: %d %s %s", code, env.Status, env.Description)
	}
	waitServed(t, pc, "live/pulled.mp3", 15*time.Second)

	// Viewers on the two other nodes, reading continuously.
	viewers := []*stampWatcher{
		watchStamped(t, pc.procs[1].edgeURL()+"/live/pulled.mp3", pc.procs[1].name),
		watchStamped(t, pc.procs[2].edgeURL()+"/live/pulled.mp3", pc.procs[2].name),
	}
	for _, v := range viewers {
		select {
		case <-v.frames:
		case err := <-v.done:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatalf("viewer on %s got nothing%s", v.name, pc.logs())
		}
	}
	time.Sleep(time.Second)

	origin.kill()
	killed := time.Now()
	// Within 5 s every viewer receives frames the source sent after the
	// kill (pulled by the new origin); none disconnects and none gets a
	// frame twice or out of order.
	for _, v := range viewers {
		deadline := time.After(5*time.Second - time.Since(killed))
		var last uint64
		for fresh := false; !fresh; {
			select {
			case a := <-v.frames:
				if a.stamp.Count <= last {
					t.Fatalf("viewer on %s: frame %d after frame %d (a duplicate or out of order)", v.name, a.stamp.Count, last)
				}
				last = a.stamp.Count
				if a.stamp.Sent.After(killed) {
					fresh = true
					t.Logf("viewer on %s: receiving again %v after kill -9 of the origin (frame sent %v after the kill, %v late)",
						v.name, a.at.Sub(killed).Round(time.Millisecond), a.stamp.Sent.Sub(killed).Round(time.Millisecond), a.at.Sub(a.stamp.Sent).Round(time.Millisecond))
				}
			case err := <-v.done:
				t.Fatalf("%v%s", err, pc.logs())
			case <-deadline:
				t.Fatalf("viewer on %s got no frame sent after the kill within 5 s (last frame %d)%s", v.name, last, pc.logs())
			}
		}
	}
}

// A pulled live source of chunked fragmented MP4 (ffmpeg's own output,
// sent with Transfer-Encoding: chunked) is found live and relayed; viewers
// on every node decode it. The first connection is cut: keepAlive pulls
// again.
func TestLivePulledChunkedFMP4DecodesOnEveryNode(t *testing.T) {
	ffmpeg := requireTool(t, "ffmpeg")
	pc := startCluster(t, 3)
	var served atomic.Int64
	src := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		ctx, cancel := context.WithCancel(r.Context())
		cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", mp4Sample,
			"-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "pipe:1")
		out, err := cmd.StdoutPipe()
		if err != nil || cmd.Start() != nil {
			cancel()
			http.Error(w, "ffmpeg", 500)
			return
		}
		defer cmd.Wait()
		defer cancel() // first: stops ffmpeg, which Wait waits for
		w.Header().Set("Content-Type", "video/mp4")
		rc := http.NewResponseController(w)
		buf := make([]byte, 16<<10)
		var sent int
		for {
			k, err := out.Read(buf)
			if k > 0 {
				if _, werr := w.Write(buf[:k]); werr != nil {
					return
				}
				rc.Flush()
				sent += k
			}
			// The probe and the first pull are cut short: the origin must
			// reconnect (keepAlive) and viewers carry on.
			if err != nil || (n == 2 && sent > 64<<10) {
				return
			}
		}
	}))
	code, env := curlAPI(t, pc.procs[1], "admin", password, "pullStream", "uri="+src.URL+"/tv.mp4 localStreamName=live/pulled.mp4")
	if code != 200 || env.Status != "SUCCESS" {
		t.Fatalf("pullStream of a chunked fMP4 source: %d %s %s", code, env.Status, env.Description)
	}
	var e liveEntry
	waitFor(t, 5*time.Second, "listconfig to show the pulled stream", func() bool {
		var ok bool
		e, ok = liveConfig(t, pc.procs[0], "live/pulled.mp4")
		return ok
	}, pc.logs)
	if e.Kind != "live" {
		t.Fatalf("the chunked fMP4 source is %+v, want a live stream", e)
	}
	waitServed(t, pc, "live/pulled.mp4", 15*time.Second)
	// The viewers decode across the cut: the new session's timestamps
	// start over at the source, and castmesh carries them on.
	errs := make(chan error, 3)
	for _, p := range pc.procs {
		go func() { errs <- decodes(t, p.edgeURL()+"/live/pulled.mp4", 9*time.Second) }()
	}
	for range pc.procs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := served.Load(); n < 3 {
		t.Errorf("the source was asked %d times; the cut pull should have been followed by another", n)
	}
	if t.Failed() {
		t.Log(pc.logs())
	}
}
