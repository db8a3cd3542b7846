package shaping

import (
	"context"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPacerTick measures one scheduling round with 10,000 sessions at
// 16 KiB/s (the load): uncapped, under a binding vhost cap, and
// under a binding node cap over 10 vhosts. The viewers take their grants
// outside the timer; the round itself must not allocate.
func BenchmarkPacerTick(b *testing.B) {
	const n, rate = 10000, 16 * kib
	for _, bc := range []struct {
		name     string
		groups   int
		groupCap float64
		nodeCap  float64
	}{
		{"uncapped", 1, 0, 0},
		{"vhost-cap", 1, n * rate / 3, 0},
		{"node-cap-10-vhosts", 10, 0, n * rate / 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, clk := newFakePacer(PacerConfig{NodeCap: bc.nodeCap})
			var groups []*Group
			for i := range bc.groups {
				groups = append(groups, p.NewGroup(string(rune('a'+i)), bc.groupCap))
			}
			ss := make([]*Session, n)
			for i := range ss {
				ss[i] = groups[i%len(groups)].NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: 64 * kib}, 0)
				ss[i].tryNext(1 << 40)
			}
			take := func() {
				for _, s := range ss {
					for s.tryNext(1<<40) > 0 {
					}
				}
			}
			for range 40 { // warm up: scratch slices grown, boosts done
				clk.advance(50 * time.Millisecond)
				p.tick(clk.now())
				take()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clk.advance(50 * time.Millisecond)
				p.tick(clk.now())
				b.StopTimer()
				take()
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
		})
	}
}

// BenchmarkNextUnthrottled is the cost of Next for an unthrottled session
// under no cap: the pass-through path.
func BenchmarkNextUnthrottled(b *testing.B) {
	p, _ := newFakePacer(PacerConfig{})
	s := p.NewGroup("www", 0).NewSession(Policy{}, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.Next(ctx, 16*kib)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkPacerRealtime runs the load on the real clock: 10,000
// sessions at 16 KiB/s after a 64 KiB boost, each a goroutine doing
// Next + io.CopyN into io.Discard, for SHAPING_REALTIME (default 5 s; the
// accuracy target is stated over 60 s, and over a few seconds the rate
// error is mostly the size of a grant). SHAPING_MAXGRANTS sets
// PacerConfig.MaxGrantsPerSec. It reports the process's CPU use in % of one
// core (no sockets: the pacing overhead alone), the rate error of the
// sessions after their boost (p1, p99) and heap bytes per session. Run it
// alone: go test -run '^$' -bench PacerRealtime ./shaping/
func BenchmarkPacerRealtime(b *testing.B) {
	d := 5 * time.Second
	if v := os.Getenv("SHAPING_REALTIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	var cfg PacerConfig
	if v := os.Getenv("SHAPING_MAXGRANTS"); v != "" {
		var err error
		if cfg.MaxGrantsPerSec, err = strconv.ParseFloat(v, 64); err != nil {
			b.Fatal(err)
		}
	}
	const n, rate, boost = 10000, 16 * kib, 64 * kib
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		p := NewPacer(cfg)
		g := p.NewGroup("www", 0)
		ctx, cancel := context.WithCancel(context.Background())
		sent := make([]int64, n)        // after the boost
		pacedAt := make([]time.Time, n) // when the boost was over
		var wg sync.WaitGroup
		var ready sync.WaitGroup
		ready.Add(n)
		for i := range n {
			s := g.NewSession(Policy{Throttled: true, RateBytesPerSec: rate, BoostBytes: boost}, 0)
			// Each request has its own context, as net/http gives it.
			ctx, cancel := context.WithCancel(ctx)
			wg.Go(func() {
				defer cancel()
				defer s.Close()
				if _, err := s.CopyN(ctx, io.Discard, zeros{}, boost); err != nil {
					b.Error(err)
				}
				pacedAt[i] = time.Now()
				ready.Done()
				for {
					k, err := s.Next(ctx, 1<<40)
					if err != nil {
						return
					}
					io.CopyN(io.Discard, zeros{}, k)
					sent[i] += k
				}
			})
		}
		ready.Wait()
		var mid runtime.MemStats
		runtime.ReadMemStats(&mid)
		ru0 := rusage()
		t0 := time.Now()
		time.Sleep(d)
		cpu := rusage() - ru0
		wall := time.Since(t0)
		end := time.Now()
		cancel()
		wg.Wait()
		p.Close()
		errs := make([]float64, n)
		for i := range n {
			got := float64(sent[i]) / end.Sub(pacedAt[i]).Seconds()
			errs[i] = got/rate - 1
		}
		slices.Sort(errs)
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu")
		b.ReportMetric(100*errs[n/100], "p1-rate-err-%")
		b.ReportMetric(100*errs[n*99/100], "p99-rate-err-%")
		b.ReportMetric(float64(mid.HeapAlloc-before.HeapAlloc)/n, "heap-B/session")
		b.ReportMetric(float64(n), "sessions")
	}
}

// rusage returns the process's user + system CPU time.
func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
