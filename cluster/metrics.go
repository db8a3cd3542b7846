package cluster

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's Prometheus metrics; gauges are read from raft
// and the member list when scraped.
type metrics struct {
	reg           prometheus.Registerer
	collectors    []prometheus.Collector
	applyDuration prometheus.Histogram
}

var membersDesc = prometheus.NewDesc("castmesh_cluster_members",
	"Members known to gossip, by state.", []string{"state"}, nil)

// membersCollector counts members by state at scrape time.
type membersCollector struct{ c *Cluster }

func (m membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- membersDesc }

func (m membersCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]float64{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	for _, mb := range m.c.Members() {
		counts[mb.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, n, state)
	}
}

func newMetrics(c *Cluster, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "castmesh_raft_apply_duration_seconds",
			Help:    "Time for the leader to commit and apply a command.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms … 4 s
		}),
	}
	m.collectors = []prometheus.Collector{
		membersCollector{c},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "castmesh_raft_is_leader",
			Help: "1 when this node is the raft leader.",
		}, func() float64 {
			if c.IsLeader() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "castmesh_raft_applied_index",
			Help: "Index of the last raft entry applied to this node's FSM.",
		}, func() float64 {
			if c.closed.Load() || c.raft.State() == raft.Shutdown {
				return 0
			}
			return float64(c.raft.AppliedIndex())
		}),
		m.applyDuration,
	}
	for i, col := range m.collectors {
		if err := reg.Register(col); err != nil {
			m.collectors = m.collectors[:i]
			m.unregister()
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, col := range m.collectors {
		m.reg.Unregister(col)
	}
}
