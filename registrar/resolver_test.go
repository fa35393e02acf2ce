package registrar_test

import (
	"context"
	"net"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// TestStockGRPCClientFindsServiceThroughEtcdResolver proves the target form
// from the registry issue: a plain gRPC client with etcd's resolver dials
// "etcd:////service/<name>" (four slashes: gRPC drops one leading slash of
// the path, and the registry prefix itself starts with one).
func TestStockGRPCClientFindsServiceThroughEtcdResolver(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	ctx := t.Context()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer()) // reports SERVING for ""
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("grpc serve: %v", err)
		}
	})

	reg, err := registrar.Register(ctx, cli, "greeter", "g-1", registrar.Endpoint{Addr: lis.Addr().String()})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })

	builder, err := resolver.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	check := func(target string, timeout time.Duration) error {
		conn, err := grpc.NewClient(target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("grpc.NewClient(%q): %v", target, err)
		}
		defer conn.Close()
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: health %v", target, resp.GetStatus())
		}
		return err
	}

	if err := check("etcd:////service/greeter", 10*time.Second); err != nil {
		t.Fatalf("RPC through etcd:////service/greeter: %v", err)
	}
	// Three slashes make the resolver watch "service/greeter/", which holds
	// nothing: the call cannot find the server.
	if err := check("etcd:///service/greeter", 500*time.Millisecond); err == nil {
		t.Fatal("RPC through etcd:///service/greeter succeeded; the registry keys start with a slash, so it should find nothing")
	}
}
