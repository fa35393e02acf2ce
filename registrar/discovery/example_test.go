package discovery_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
)

// A caller follows a service, picks an instance per call and reports how
// the call went, so the weighted picker steers away from failing instances.
func ExampleNew() {
	ctx := context.Background()
	cli, err := registrar.NewClient([]string{"http://127.0.0.1:2379"})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	web, err := discovery.New(ctx, cli, "web", discovery.WithPicker(discovery.NewWeighted()))
	if err != nil {
		log.Fatal(err)
	}
	defer web.Close()

	inst, err := web.Pick()
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	callErr := call(inst.Endpoint.Addr)
	web.Report(inst.Endpoint.Addr, time.Since(start), callErr)

	if snap := web.Snapshot(); snap.Stale {
		fmt.Printf("etcd unreachable since %s; serving %d last known instances\n", snap.Since, len(snap.Instances))
	}
}

func call(addr string) error { return nil }
