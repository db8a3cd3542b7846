package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func unit(d time.Duration, key bool, data string) Unit {
	return Unit{Data: []byte(data), Duration: d, Key: key}
}

func TestRelayBurstStartsAtKeyUnit(t *testing.T) {
	r := NewRelay(RelayOptions{Window: 10 * time.Second})
	r.SetHeader([]byte("init"))
	for i := range 10 { // 1 s units, a key every 3
		r.Publish(unit(time.Second, i%3 == 0, fmt.Sprint(i)))
	}
	for _, tc := range []struct {
		burst time.Duration
		first string
	}{
		{0, ""},                // live edge: waits for the next unit
		{2 * time.Second, "9"}, // units 8,9 are within 2 s; 9 is a key
		{4 * time.Second, "6"}, // 6..9, the earliest key is 6
		{time.Hour, "0"},
	} {
		rd := r.NewReader(tc.burst)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		u, err := rd.Next(ctx)
		cancel()
		if want := map[bool]string{true: "", false: "init"}[tc.first == ""]; string(rd.Header()) != want {
			t.Fatalf("burst %v: header %q after Next, want %q", tc.burst, rd.Header(), want)
		}
		if tc.first == "" {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("burst 0: got %q %v, want to wait for the live edge", u.Data, err)
			}
		} else if err != nil || string(u.Data) != tc.first {
			t.Errorf("burst %v: first unit %q %v, want %q", tc.burst, u.Data, err, tc.first)
		}
		rd.Close()
	}
	if readers, _, _, _ := r.Stats(); readers != 0 {
		t.Fatalf("%d readers after all closed", readers)
	}
}

// A viewer that connects before the source sent its init segment still
// gets it before its first unit.
func TestRelayReaderOpenedBeforeHeaderGetsIt(t *testing.T) {
	r := NewRelay(RelayOptions{})
	rd := r.NewReader(5 * time.Second)
	if rd.Header() != nil {
		t.Fatalf("header %q before any unit", rd.Header())
	}
	r.SetHeader([]byte("init"))
	r.Publish(unit(time.Second, true, "0"))
	u, err := rd.Next(context.Background())
	if err != nil || string(u.Data) != "0" || string(rd.Header()) != "init" {
		t.Fatalf("got unit %q header %q err %v, want unit 0 after header init", u.Data, rd.Header(), err)
	}
}

func TestRelaySlowReaderIsDroppedAndDoesNotBlock(t *testing.T) {
	r := NewRelay(RelayOptions{Window: 5 * time.Second, LagLimit: 3 * time.Second})
	slow := r.NewReader(0)
	fast := r.NewReader(0)
	ctx := context.Background()
	for i := range 20 {
		r.Publish(unit(500*time.Millisecond, true, fmt.Sprint(i))) // never blocks
		if u, err := fast.Next(ctx); err != nil || string(u.Data) != fmt.Sprint(i) {
			t.Fatalf("fast reader: %q %v", u.Data, err)
		}
	}
	if _, err := slow.Next(ctx); !errors.Is(err, ErrLagging) {
		t.Fatalf("slow reader: %v, want ErrLagging", err)
	}
	readers, dropped, bytes, edge := r.Stats()
	if readers != 1 || dropped != 1 || edge != 20 || bytes == 0 {
		t.Fatalf("stats readers=%d dropped=%d bytes=%d edge=%d", readers, dropped, bytes, edge)
	}
}

func TestRelayResumeFromSeqAndClose(t *testing.T) {
	r := NewRelay(RelayOptions{Window: 3 * time.Second})
	for i := range 10 {
		r.Publish(unit(time.Second, true, fmt.Sprint(i)))
	}
	// seq 8 is unit "7"; still buffered: no gap, no duplicate.
	rd := r.NewReaderFrom(8)
	for _, want := range []string{"7", "8", "9"} {
		u, err := rd.Next(context.Background())
		if err != nil || string(u.Data) != want {
			t.Fatalf("resume: %q %v, want %q", u.Data, err, want)
		}
	}
	// seq 2 is gone: start at the oldest kept.
	old := r.NewReaderFrom(2)
	if u, _ := old.Next(context.Background()); u.Seq != 8 { // 3 s window of 1 s units: seqs 8..10
		t.Fatalf("resume from a lost seq started at %d", u.Seq)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := rd.Next(context.Background()); !errors.Is(err, ErrRelayClosed) {
			t.Errorf("after close: %v", err)
		}
	}()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	wg.Wait()
}

func TestRelayBoundsMemory(t *testing.T) {
	r := NewRelay(RelayOptions{Window: time.Hour, MaxBytes: 1000})
	for range 100 {
		r.Publish(Unit{Data: make([]byte, 100), Duration: time.Millisecond})
	}
	if _, _, b, _ := r.Stats(); b > 1000 {
		t.Fatalf("buffered %d bytes, cap 1000", b)
	}
}

// BenchmarkRelayFanOut publishes 4 KiB units to 10,000 readers that keep
// up (the lag limit is lifted: the publisher runs far faster than real
// time); it reports the cost per unit delivered.
func BenchmarkRelayFanOut(b *testing.B) {
	r := NewRelay(RelayOptions{Window: time.Hour, MaxBytes: 1 << 30, LagLimit: time.Hour})
	const readers = 10000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var delivered atomic.Int64
	for range readers {
		rd := r.NewReader(0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := rd.Next(ctx); err != nil {
					return
				}
				delivered.Add(1)
			}
		}()
	}
	data := make([]byte, 4096)
	b.ResetTimer()
	for range b.N {
		r.Publish(Unit{Data: data, Duration: 100 * time.Millisecond, Key: true})
	}
	r.Close()
	wg.Wait()
	_, dropped, _, _ := r.Stats()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered.Load()), "ns/delivery")
	b.ReportMetric(float64(dropped), "dropped")
}

// Numbers jump when a new source session rebases the relay; readers and
// resuming peers go across the jump, and a peer that is ahead of this relay
// (it got a unit from the old origin that this node did not) gets only the
// units published after the jump.
func TestRelayRebaseAndNumberedPublish(t *testing.T) {
	r := NewRelay(RelayOptions{Window: time.Hour})
	for i := uint64(100); i < 110; i++ {
		if got := r.PublishAt(unit(time.Second, true, fmt.Sprint(i)), i); got != i {
			t.Fatalf("PublishAt(%d) = %d", i, got)
		}
	}
	viewer := r.NewReaderFrom(108)
	ahead := r.NewReaderFrom(111) // a peer that has 110 from the old origin
	r.Rebase(1 << 40)
	r.Rebase(5) // never goes back
	r.Publish(unit(time.Second, true, "new"))
	if got := r.PublishAt(unit(time.Second, true, "behind"), 3); got != 1<<40+1 {
		t.Fatalf("a number below the next one became %d, want %d", got, 1<<40+1)
	}
	ctx := context.Background()
	for _, want := range []string{"108", "109", "new", "behind"} {
		if u, err := viewer.Next(ctx); err != nil || string(u.Data) != want {
			t.Fatalf("viewer: %q %v, want %q", u.Data, err, want)
		}
	}
	if u, err := ahead.Next(ctx); err != nil || string(u.Data) != "new" || u.Seq != 1<<40 {
		t.Fatalf("peer ahead: %q seq %d %v, want the first unit after the jump", u.Data, u.Seq, err)
	}
	// A reader asking for a number inside the jump gets the first after it.
	if u, _ := r.NewReaderFrom(500).Next(ctx); string(u.Data) != "new" {
		t.Fatalf("resume inside the jump: %q", u.Data)
	}
}

// A reader whose next unit was evicted lost data: it is dropped, even
// when numbers jumped.
func TestRelayEvictionDropsReaderAcrossJumps(t *testing.T) {
	r := NewRelay(RelayOptions{Window: 2 * time.Second, LagLimit: time.Hour})
	r.Publish(unit(time.Second, true, "a"))
	rd := r.NewReaderFrom(1)
	r.Rebase(1000)
	for range 4 {
		r.Publish(unit(time.Second, true, "x"))
	}
	if _, err := rd.Next(context.Background()); !errors.Is(err, ErrLagging) {
		t.Fatalf("reader behind the evicted units: %v, want ErrLagging", err)
	}
	if _, dropped, _, _ := r.Stats(); dropped != 1 {
		t.Fatalf("dropped %d", dropped)
	}
}

// A burst never reaches back before a jump in the numbers: the units of
// an earlier source session may not fit the new one (fMP4 timestamps
// start over, the init segment may change).
func TestRelayBurstStaysInTheSourceSession(t *testing.T) {
	r := NewRelay(RelayOptions{Window: time.Hour})
	for i := range 5 {
		r.Publish(unit(time.Second, true, fmt.Sprint("old", i)))
	}
	r.Rebase(1000)
	r.Publish(unit(time.Second, false, "new0"))
	r.Publish(unit(time.Second, true, "new1"))
	r.Publish(unit(time.Second, false, "new2"))
	if u, _ := r.NewReader(time.Hour).Next(context.Background()); string(u.Data) != "new1" {
		t.Fatalf("burst starts at %q, want the first key unit of the new session", u.Data)
	}
}
