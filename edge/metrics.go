package edge

import "github.com/prometheus/client_golang/prometheus"

// metrics are the edge's Prometheus series, per vhost where it matters.
type metrics struct {
	requests  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	active    *prometheus.GaugeVec
	throttled *prometheus.GaugeVec
	dropped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "castmesh_edge_requests_total", Help: "Viewer requests by HTTP status code.",
		}, []string{"code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "castmesh_edge_bytes_sent_total", Help: "Response body bytes sent to viewers, by vhost.",
		}, []string{"vhost"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "castmesh_edge_sessions_active", Help: "Viewer sessions being sent now (files and live), by vhost.",
		}, []string{"vhost"}),
		throttled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "castmesh_edge_sessions_throttled", Help: "Active sessions that are paced (bandwidth throttling applies), by vhost.",
		}, []string{"vhost"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "castmesh_edge_sessions_dropped_total", Help: "Sessions the edge ended because the viewer stopped taking data for the write timeout, by vhost.",
		}, []string{"vhost"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.active, m.throttled, m.dropped)
	}
	return m
}

// vhostMetrics are one vhost's series, looked up once so that a write
// costs an atomic add.
type vhostMetrics struct {
	bytes     prometheus.Counter
	active    prometheus.Gauge
	throttled prometheus.Gauge
	dropped   prometheus.Counter
}

func (m *metrics) forVHost(name string) *vhostMetrics {
	return &vhostMetrics{
		bytes:     m.bytes.WithLabelValues(name),
		active:    m.active.WithLabelValues(name),
		throttled: m.throttled.WithLabelValues(name),
		dropped:   m.dropped.WithLabelValues(name),
	}
}
