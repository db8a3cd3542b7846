package shaping

import (
	"fmt"
	"math"
	"strings"

	"github.com/castmesh/castmesh/config"
)

// The bandwidth units of STON's <Bandwidth Unit="..."> and of the vhost key
// `unit`. kbps and mbps are bits per second in decimal (STON: "3000Kbps =
// 3Mbps"); bytes, kb and mb are bytes per second, kb and mb binary.
const (
	UnitKbps  = "kbps"  // 1,000 bit/s = 125 B/s
	UnitMbps  = "mbps"  // 1,000,000 bit/s = 125,000 B/s
	UnitBytes = "bytes" // 1 B/s
	UnitKB    = "kb"    // 1,024 B/s
	UnitMB    = "mb"    // 1,048,576 B/s
)

// DefaultUnit is the unit of a vhost that names none (STON's default).
const DefaultUnit = UnitKbps

// UnitBytesPerSec returns how many bytes per second one unit is. The name
// is matched without regard to case ("Kbps" is kbps); the empty name is
// DefaultUnit. An unknown name is an error that lists the known ones.
func UnitBytesPerSec(unit string) (float64, error) {
	switch strings.ToLower(unit) {
	case "", UnitKbps:
		return 1000.0 / 8, nil
	case UnitMbps:
		return 1000000.0 / 8, nil
	case UnitBytes:
		return 1, nil
	case UnitKB:
		return 1024, nil
	case UnitMB:
		return 1024 * 1024, nil
	}
	return 0, fmt.Errorf("unknown bandwidth unit %q: expected kbps, mbps, bytes, kb or mb", unit)
}

// ToBytesPerSec converts v, given in unit, to bytes per second.
func ToBytesPerSec(v float64, unit string) (float64, error) {
	f, err := UnitBytesPerSec(unit)
	if err != nil {
		return 0, err
	}
	return v * f, nil
}

// MbpsToBytesPerSec converts megabits per second (traffic_cap,
// node_traffic_cap) to bytes per second.
func MbpsToBytesPerSec(mbps float64) float64 { return mbps * 1000000 / 8 }

// KbpsToBytesPerSec converts kilobits per second (session_cap) to bytes per
// second.
func KbpsToBytesPerSec(kbps float64) float64 { return kbps * 1000 / 8 }

// Settings are a vhost's throttling settings (STON <BandwidthThrottling>):
// the figures a session gets when no rule and no query parameter says
// otherwise, and the query-string switch with its parameter names.
type Settings struct {
	Throttling bool    // STON <Throttling>: off means no session is throttled
	Bandwidth  float64 // in Unit
	Unit       string  // kbps | mbps | bytes | kb | mb ("" = kbps)
	Ratio      float64 // percent of Bandwidth
	Boost      float64 // seconds of data sent unthrottled before pacing

	QueryString    bool   // STON <Throttling QueryString="ON">
	BandwidthParam string // e.g. "mybandwidth"; "" never matches
	RatioParam     string // e.g. "myratio"
	BoostParam     string // e.g. "myboost"
}

// DefaultSettings are STON's defaults: throttling off, 1000 kbps, 100 %,
// 5 s, query string off with the parameters mybandwidth, myratio, myboost.
func DefaultSettings() Settings {
	return SettingsFromVHost(config.DefaultVHost())
}

// SettingsFromVHost takes the throttling settings of a configured vhost.
func SettingsFromVHost(v config.VHost) Settings {
	return Settings{
		Throttling:     v.Throttling,
		Bandwidth:      v.Bandwidth,
		Unit:           v.Unit,
		Ratio:          v.Ratio,
		Boost:          v.Boost,
		QueryString:    v.QueryString,
		BandwidthParam: v.BandwidthParam,
		RatioParam:     v.RatioParam,
		BoostParam:     v.BoostParam,
	}
}

// Validate reports settings Decide cannot use as written: an unknown unit,
// or a negative or non-finite figure. Decide itself never fails; with an
// unknown unit it uses kbps.
func (s Settings) Validate() error {
	if _, err := UnitBytesPerSec(s.Unit); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"bandwidth", s.Bandwidth}, {"ratio", s.Ratio}, {"boost", s.Boost}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("throttling %s: expected a finite number >= 0, got %v", f.name, f.v)
		}
	}
	return nil
}

// unitFactor is UnitBytesPerSec with kbps for an unknown unit.
func (s Settings) unitFactor() float64 {
	f, err := UnitBytesPerSec(s.Unit)
	if err != nil {
		return 1000.0 / 8
	}
	return f
}
