package streams

import (
	"github.com/prometheus/client_golang/prometheus"
)

// liveCollector reports every live stream's figures when scraped, from the
// counters the relay keeps anyway: nothing is counted twice on the media
// path, and a removed stream's series go with it.
type liveCollector struct {
	m *Manager

	ingest, viewers, dropped, lag, bitrate, source *prometheus.Desc
}

func newLiveCollector(m *Manager) *liveCollector {
	l := []string{"stream"}
	return &liveCollector{
		m:       m,
		ingest:  prometheus.NewDesc("castmesh_live_ingest_bytes_total", "Bytes of a live stream received by this node, from its source (origin) or from the origin (peers).", l, nil),
		viewers: prometheus.NewDesc("castmesh_live_viewers", "Viewers of a live stream on this node now.", l, nil),
		dropped: prometheus.NewDesc("castmesh_live_viewers_dropped_total", "Readers of a live stream dropped for falling behind the live edge by more than the lag limit.", l, nil),
		lag:     prometheus.NewDesc("castmesh_live_relay_lag_seconds", "How far this node's relay of a live stream is behind the origin's live edge (0 on the origin).", l, nil),
		bitrate: prometheus.NewDesc("castmesh_live_bitrate_bps", "Bit rate of a live stream over the relay's buffer.", l, nil),
		source:  prometheus.NewDesc("castmesh_live_up", "1 when this node is receiving the live stream (from its source or the origin), else 0.", l, nil),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ingest, c.viewers, c.dropped, c.lag, c.bitrate, c.source} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.m.Statuses() {
		if st.Live == nil {
			continue // a file stream
		}
		up := 0.0
		if st.Current.State == StateLive {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ingest, prometheus.CounterValue, float64(st.Bytes), st.Name)
		ch <- prometheus.MustNewConstMetric(c.viewers, prometheus.GaugeValue, float64(st.Viewers), st.Name)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Live.ViewersDropped), st.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(st.Live.LagMS)/1000, st.Name)
		ch <- prometheus.MustNewConstMetric(c.bitrate, prometheus.GaugeValue, st.Live.BitrateBPS, st.Name)
		ch <- prometheus.MustNewConstMetric(c.source, prometheus.GaugeValue, up, st.Name)
	}
}
