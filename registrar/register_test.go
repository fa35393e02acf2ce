package registrar_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

func TestRegisterVisibleAndCloseRemovesAtOnce(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	ctx := t.Context()
	ep := registrar.Endpoint{Addr: "127.0.0.1:31005", Metadata: map[string]string{"version": "v1"}}
	reg, err := registrar.Register(ctx, cli, "echo", "i-1", ep, registrar.WithTTL(5*time.Second))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	resp, err := cli.Get(ctx, "/service/echo/i-1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get registered key: %v, %d kvs", err, len(resp.Kvs))
	}
	var got registrar.Endpoint
	if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil || got.Addr != ep.Addr || got.Metadata["version"] != "v1" {
		t.Fatalf("value %s: %+v, %v", resp.Kvs[0].Value, got, err)
	}
	if resp.Kvs[0].Lease != int64(reg.Lease()) || reg.Lease() == 0 {
		t.Fatalf("key lease %x, registration lease %x", resp.Kvs[0].Lease, int64(reg.Lease()))
	}
	ttl, err := cli.TimeToLive(ctx, reg.Lease())
	if err != nil || ttl.GrantedTTL != 5 {
		t.Fatalf("lease TTL: %+v, %v", ttl, err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	resp, err = cli.Get(ctx, "/service/echo/i-1")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key still present right after Close: %v, %d kvs", err, len(resp.Kvs))
	}
}

func TestRegisterComesBackAfterLeaseRevokedElsewhere(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	ctx := t.Context()
	leases := make(chan clientv3.LeaseID, 4)
	reg, err := registrar.Register(ctx, cli, "echo", "i-2", registrar.Endpoint{Addr: "127.0.0.1:1"},
		registrar.WithTTL(2*time.Second), registrar.WithOnRegister(func(id clientv3.LeaseID) { leases <- id }))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	first := <-leases
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	select {
	case second := <-leases:
		if second == first {
			t.Fatalf("re-registered under the revoked lease %x", int64(first))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no re-registration within 5 s of the lease being revoked")
	}
	resp, err := cli.Get(ctx, reg.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after re-registration: %v, %d kvs", err, len(resp.Kvs))
	}
}

func TestRegisterRejectsBadNames(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	for _, tc := range []struct{ service, id, addr string }{
		{"", "i", "a:1"}, {"a/b", "i", "a:1"}, {"a", "x/y", "a:1"}, {"a", "i", ""}, {"-a", "i", "a:1"},
	} {
		if _, err := registrar.Register(t.Context(), cli, tc.service, tc.id, registrar.Endpoint{Addr: tc.addr}); err == nil {
			t.Errorf("Register(%q, %q, %q) succeeded", tc.service, tc.id, tc.addr)
		}
	}
}
