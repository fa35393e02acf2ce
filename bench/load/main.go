// Command load sends a bounded HTTP load to the instances of a registered
// service, picking them round-robin from the registry (a caller as the
// origin design's services were): for the README tour and by-hand checks.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
)

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:2379", "etcd client URLs")
	service := flag.String("service", "", "service name in the registry")
	path := flag.String("path", "/", "request path")
	rate := flag.Float64("rate", 100, "requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long (at most 10 minutes)")
	flag.Parse()
	if *service == "" || *duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "load: -service is required and -duration at most 10m")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cli, err := registrar.NewClient(strings.Split(*etcd, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	defer cli.Close()
	svc, err := discovery.New(ctx, cli, *service)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	defer svc.Close()
	res := loadgen.Run(ctx, loadgen.Config{Rate: *rate, Duration: *duration, MaxRequests: int64(*rate * duration.Seconds()),
		Target: func() (string, error) {
			inst, err := svc.Pick()
			if err != nil {
				return "", err
			}
			return "http://" + inst.Endpoint.Addr + *path, nil
		}})
	fmt.Printf("%d requests in %s, %d failed %s\n", res.Sent, res.Elapsed.Round(time.Millisecond), res.Failed, res.FirstError)
}
