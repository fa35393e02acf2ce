package etcdspace_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/internal/etcdspace"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

func TestReportsSizeAndQuota(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	if _, err := cli.Put(t.Context(), "/garrison/x", string(make([]byte, 64<<10))); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(etcdspace.New(cli))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["garrison_etcd_status_up"] != 1 || got["garrison_etcd_db_size_bytes"] <= 0 ||
		got["garrison_etcd_db_size_in_use_bytes"] <= 0 || got["garrison_etcd_db_quota_bytes"] < got["garrison_etcd_db_size_bytes"] {
		t.Fatalf("metrics %v", got)
	}
}
