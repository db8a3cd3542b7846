package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	mp3Fixture = "../testdata/media/mp3-cbr128.mp3"
	mp4Sample  = "../cmd/castmeshd/sample/sample.mp4"
)

// startSource runs ffmpeg as a source client until the test ends.
func startSource(t *testing.T, args ...string) {
	ffmpeg := requireTool(t, "ffmpeg")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ffmpeg, append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("source ffmpeg stderr: %s", stderr.String())
		}
	})
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

func waitLive(t *testing.T, pc *procCluster, name string) {
	t.Helper()
	for _, p := range pc.procs {
		waitFor(t, 15*time.Second, name+" live on "+p.name, func() bool {
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
	requireTool(t, "ffmpeg")
	pc := startCluster(t, 3)
	n1, n2 := pc.procs[0], pc.procs[1]

	startSource(t, "-i", mp3Fixture, "-c", "copy", "-content_type", "audio/mpeg", "-f", "mp3", n1.sourceURL("icecast", "live/radio.mp3"))
	startSource(t, "-i", mp4Sample, "-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
		"-content_type", "video/mp4", "-method", "PUT", n2.sourceURL("http", "live/tv.mp4"))
	waitLive(t, pc, "live/radio.mp3")
	waitLive(t, pc, "live/tv.mp4")

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
	ffmpeg := requireTool(t, "ffmpeg")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-t", "1", "-i", mp3Fixture, "-c", "copy",
		"-content_type", "audio/mpeg", "-f", "mp3", pc.procs[2].sourceURL("icecast", "live/radio.mp3")).CombinedOutput()
	if err == nil {
		t.Errorf("a second source on live/radio.mp3 was accepted: %s", out)
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

// liveSource serves an endless MP3 stream (the fixture looped at its own
// rate), as an Icecast mount would.
func liveSource(t *testing.T) string {
	mp3, err := os.ReadFile(mp3Fixture)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 128000 / 8
	src := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Header().Set("icy-name", "e2e radio")
		rc := http.NewResponseController(w)
		chunk := rate / 10
		for off := 0; r.Context().Err() == nil; off = (off + chunk) % (len(mp3) - chunk) {
			if _, err := w.Write(mp3[off : off+chunk]); err != nil {
				return
			}
			rc.Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	return src.URL + "/radio.mp3"
}

func TestLivePulledSourceSurvivesOriginKill(t *testing.T) {
	requireTool(t, "curl")
	pc := startCluster(t, 3)
	uri := liveSource(t)
	origin := pc.procs[0]
	code, env := curlAPI(t, origin, "admin", password, "pullStream", "uri="+uri+" localStreamName=live/pulled.mp3")
	if code != 200 || env.Status != "SUCCESS" {
		t.Fatalf("pullStream of a live source: %d %s %s", code, env.Status, env.Description)
	}
	waitLive(t, pc, "live/pulled.mp3")

	// Viewers on the two other nodes, reading continuously.
	type progress struct {
		bytes chan int
		done  chan error
	}
	watch := func(p *proc) progress {
		pr := progress{bytes: make(chan int, 1000), done: make(chan error, 1)}
		go func() {
			resp, err := http.Get(p.edgeURL() + "/live/pulled.mp3")
			if err != nil {
				pr.done <- err
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 4096)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					pr.bytes <- n
				}
				if err != nil {
					pr.done <- fmt.Errorf("viewer on %s disconnected: %w", p.name, err)
					return
				}
			}
		}()
		return pr
	}
	viewers := []progress{watch(pc.procs[1]), watch(pc.procs[2])}
	time.Sleep(2 * time.Second)

	origin.kill()
	killed := time.Now()
	// Within 5 s every viewer is receiving again, and none disconnects.
	for i, v := range viewers {
		deadline := time.After(5*time.Second - time.Since(killed))
		got := 0
	drain:
		for {
			select {
			case n := <-v.bytes:
				got += n
			default:
				break drain
			}
		}
		got = 0
		for got < 16<<10 { // a second of 128 kbps audio arriving after the kill
			select {
			case n := <-v.bytes:
				got += n
			case err := <-v.done:
				t.Fatalf("viewer %d: %v", i, err)
			case <-deadline:
				t.Fatalf("viewer %d got %d bytes in the 5 s after the origin was killed%s", i, got, pc.logs())
			}
		}
	}
	t.Logf("viewers receiving again %v after kill -9 of the origin", time.Since(killed).Round(time.Millisecond))
	if !strings.Contains(pc.logs(), "origin failover") {
		t.Log("note: no failover line in the logs")
	}
}
