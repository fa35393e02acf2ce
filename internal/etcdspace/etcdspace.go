// Package etcdspace exports how full etcd's backend is on /metrics: the
// decision log, the registry and every deploy share etcd's quota, and
// once it is full (NOSPACE) every write is refused, deploys included.
package etcdspace

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// defaultQuota is etcd's own default backend quota, reported when the
// server leaves its quota at 0 (the default).
const defaultQuota = 2 << 30

// Status is the part of etcd's maintenance API the collector uses.
type Status interface {
	Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error)
}

// Collector reads each endpoint's status at scrape time.
type Collector struct {
	status    Status
	endpoints func() []string
	timeout   time.Duration

	size, inUse, quota, up *prometheus.Desc
}

// New returns a collector over the client's endpoints.
func New(cli *clientv3.Client) *Collector {
	return NewFor(cli.Maintenance, cli.Endpoints, 2*time.Second)
}

// NewFor returns a collector asking status about endpoints().
func NewFor(status Status, endpoints func() []string, timeout time.Duration) *Collector {
	labels := []string{"endpoint"}
	return &Collector{status: status, endpoints: endpoints, timeout: timeout,
		size:  prometheus.NewDesc("garrison_etcd_db_size_bytes", "Size of etcd's backend database file, history included.", labels, nil),
		inUse: prometheus.NewDesc("garrison_etcd_db_size_in_use_bytes", "Part of etcd's backend database in use (the rest is freed by defragmentation).", labels, nil),
		quota: prometheus.NewDesc("garrison_etcd_db_quota_bytes", "etcd's backend quota: past it every write fails with NOSPACE.", labels, nil),
		up:    prometheus.NewDesc("garrison_etcd_status_up", "Whether etcd answered the status request (1) or not (0).", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.inUse
	ch <- c.quota
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, ep := range c.endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		st, err := c.status.Status(ctx, ep)
		cancel()
		if err != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, ep)
			continue
		}
		quota := st.DbSizeQuota
		if quota <= 0 {
			quota = defaultQuota
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, ep)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.DbSize), ep)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(st.DbSizeInUse), ep)
		ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(quota), ep)
	}
}
