package shaping

import (
	"testing"

	"github.com/castmesh/castmesh/config"
)

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want float64 // bytes per second
	}{
		{1000, "kbps", 125000},
		{1, "kbps", 125},
		{3000, "kbps", 375000}, // STON: 3000Kbps = 3Mbps
		{3, "mbps", 375000},
		{2, "mbps", 250000},
		{1, "Mbps", 125000},
		{16384, "bytes", 16384},
		{16, "kb", 16384},
		{1, "kb", 1024},
		{1, "mb", 1048576},
		{2, "MB", 2097152},
		{1000, "", 125000}, // no unit: kbps
	} {
		got, err := ToBytesPerSec(tc.v, tc.unit)
		if err != nil || got != tc.want {
			t.Errorf("ToBytesPerSec(%v, %q) = %v, %v; want %v", tc.v, tc.unit, got, err, tc.want)
		}
	}
	for _, bad := range []string{"kbit", "b", "gbps", "k"} {
		if _, err := UnitBytesPerSec(bad); err == nil {
			t.Errorf("UnitBytesPerSec(%q): no error", bad)
		}
	}
	if got := MbpsToBytesPerSec(50); got != 6250000 {
		t.Errorf("MbpsToBytesPerSec(50) = %v", got) // STON: a 50 Mbps TrafficCap
	}
	if got := KbpsToBytesPerSec(128); got != 16000 {
		t.Errorf("KbpsToBytesPerSec(128) = %v", got)
	}
}

func TestSettingsFromVHost(t *testing.T) {
	s := SettingsFromVHost(config.DefaultVHost())
	want := Settings{Bandwidth: 1000, Unit: "kbps", Ratio: 100, Boost: 5,
		BandwidthParam: "mybandwidth", RatioParam: "myratio", BoostParam: "myboost"}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if s != DefaultSettings() {
		t.Fatal("DefaultSettings differs from the default vhost")
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := s
	bad.Unit = "kbit"
	if bad.Validate() == nil {
		t.Error("unit kbit validated")
	}
	bad = s
	bad.Ratio = -1
	if bad.Validate() == nil {
		t.Error("ratio -1 validated")
	}
}
