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

// maxRate bounds the load one run sends (requests per second).
const maxRate = 10000

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:2379", "etcd client URLs")
	service := flag.String("service", "", "service name in the registry")
	path := flag.String("path", "/", "request path")
	rate := flag.Float64("rate", 100, "requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long (at most 10 minutes)")
	flag.Parse()
	if *service == "" || *duration > 10*time.Minute || *rate <= 0 || *rate > maxRate {
		fmt.Fprintf(os.Stderr, "load: -service is required, -duration at most 10m and -rate above 0 and at most %d\n", maxRate)
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
	// The first listing waits for etcd: bounded, so a wrong -etcd or a
	// garrison that is not running ends the program instead of hanging it.
	listCtx, cancelList := context.WithTimeout(ctx, 10*time.Second)
	svc, err := discovery.New(listCtx, cli, *service)
	cancelList()
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
