package discovery_test

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// endpoints are the client URLs of the etcd the examples use: TestMain
// starts one. A service passes its own, e.g. []string{"http://127.0.0.1:2379"}.
var endpoints []string

func TestMain(m *testing.M) { etcdtest.Main(m, &endpoints) }

// A caller follows a service: New lists its instances, a watch keeps them
// current, and Pick hands them out in turn.
func ExampleNew() {
	ctx := context.Background()
	cli, err := registrar.NewClient(endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	// Two instances of "web" (registered here; normally by themselves).
	for i, addr := range []string{"127.0.0.1:31001", "127.0.0.1:31002"} {
		reg, err := registrar.Register(ctx, cli, "web", fmt.Sprintf("web-%d", i+1), registrar.Endpoint{Addr: addr})
		if err != nil {
			log.Fatal(err)
		}
		defer reg.Close(ctx)
	}

	web, err := discovery.New(ctx, cli, "web")
	if err != nil {
		log.Fatal(err)
	}
	defer web.Close()
	for range 3 {
		inst, err := web.Pick()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("call", inst.Endpoint.Addr)
	}

	// A third instance appears; Updates fires after each change.
	reg, err := registrar.Register(ctx, cli, "web", "web-3", registrar.Endpoint{Addr: "127.0.0.1:31003"})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close(ctx)
	for len(web.Snapshot().Instances) != 3 {
		<-web.Updates()
	}
	for _, inst := range web.Snapshot().Instances {
		fmt.Println(inst.ID, inst.Endpoint.Addr)
	}
	// Output:
	// call 127.0.0.1:31001
	// call 127.0.0.1:31002
	// call 127.0.0.1:31001
	// web-1 127.0.0.1:31001
	// web-2 127.0.0.1:31002
	// web-3 127.0.0.1:31003
}

// The weighted picker learns from the caller's reports (latency, error) and
// steers away from failing or slow instances. While etcd is unreachable the
// Service keeps serving the instances it last knew, marked stale.
func ExampleNewWeighted() {
	ctx := context.Background()
	cli, err := registrar.NewClient(endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	reg, err := registrar.Register(ctx, cli, "api", "api-1", registrar.Endpoint{Addr: "127.0.0.1:31011"})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close(ctx)

	api, err := discovery.New(ctx, cli, "api", discovery.WithPicker(discovery.NewWeighted()))
	if err != nil {
		log.Fatal(err)
	}
	defer api.Close()

	inst, err := api.Pick()
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	callErr := call(inst.Endpoint.Addr)
	api.Report(inst.Endpoint.Addr, time.Since(start), callErr)
	fmt.Println("called", inst.Endpoint.Addr, "error:", callErr)

	if snap := api.Snapshot(); snap.Stale {
		fmt.Printf("etcd unreachable since %s; serving %d last known instances\n", snap.Since, len(snap.Instances))
	}
	// Output: called 127.0.0.1:31011 error: <nil>
}

func call(addr string) error { return nil }
