package registrar_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// endpoints are the client URLs of the etcd the examples use: TestMain
// starts one. A service passes its own, e.g. []string{"http://127.0.0.1:2379"}.
var endpoints []string

func TestMain(m *testing.M) { etcdtest.Main(m, &endpoints) }

// An HTTP service takes a free port, registers it under a lease it keeps
// alive, and on SIGTERM deregisters first, then drains and stops, so callers
// stop sending before it stops serving.
func ExampleRegister() {
	ctx := context.Background()
	cli, err := registrar.NewClient(endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	listeners, err := registrar.Listen("127.0.0.1", 1) // a free port, already bound
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })}
	go srv.Serve(listeners[0])

	addr := listeners[0].Addr().String()
	reg, err := registrar.Register(ctx, cli, "account", "account-1",
		registrar.Endpoint{Addr: addr, Metadata: map[string]string{"version": "v1"}},
		registrar.WithTTL(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}

	resp, err := cli.Get(ctx, registrar.ServicePrefix("account"), clientv3.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(kv.Key), inst.Endpoint.Metadata["version"], inst.Endpoint.Addr == addr)
	}

	// SIGTERM: leave the registry at once, then drain.
	if err := reg.Close(ctx); err != nil {
		log.Print(err) // the key still expires with its TTL
	}
	srv.Shutdown(ctx)

	resp, err = cli.Get(ctx, registrar.ServicePrefix("account"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Close:", resp.Count, "instances")
	// Output:
	// /service/account/account-1 v1 true
	// after Close: 0 instances
}

// A stock gRPC client finds a registered gRPC server through etcd's own
// resolver, knowing nothing of garrison: the target is
// etcd:////service/<name> (four slashes, as the registry's keys start with
// one).
func Example_gRPCResolver() {
	ctx := context.Background()
	cli, err := registrar.NewClient(endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	// The server: a gRPC health service on a free port, registered as
	// "greeter".
	listeners, err := registrar.Listen("127.0.0.1", 1)
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(listeners[0])
	defer gs.Stop()
	reg, err := registrar.Register(ctx, cli, "greeter", "greeter-1", registrar.Endpoint{Addr: listeners[0].Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close(ctx)

	// The client.
	builder, err := resolver.NewBuilder(cli)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("etcd:////service/greeter",
		grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetStatus())
	// Output: SERVING
}
