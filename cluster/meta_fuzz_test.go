package cluster

import "testing"

// FuzzDecodeMeta feeds decodeMeta what any gossip peer could send: it must
// not panic, and what it accepts survives a round trip.
func FuzzDecodeMeta(f *testing.F) {
	good, _ := encodeMeta(Meta{Raft: "10.0.0.1:8300", API: "10.0.0.1:8888", Replicates: true, BootstrapExpect: 3})
	for _, s := range []string{string(good), "", "{", `{"v":1}`, `{"v":0,"raft":"x"}`, `{"v":2,"future":[1,2]}`, "null", `{"v":1,"bootstrapExpect":"3"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		enc, err := encodeMeta(m)
		if err != nil {
			return // accepted, but too large to send again: memberlist bounds what arrives
		}
		again, err := decodeMeta(enc)
		if err != nil || again != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}
