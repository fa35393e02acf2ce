// Package loadgen sends a steady, bounded HTTP load to loopback addresses
// for tests and benchmarks: a fixed rate, stopped by a deadline or a request
// count, whichever comes first, so it always ends by itself.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load.
type Config struct {
	// Target returns the URL of the next request (e.g. picking an instance
	// from the registry); an error counts as a failed request.
	Target func() (string, error)
	// Rate is requests per second.
	Rate float64
	// Duration and MaxRequests bound the load.
	Duration    time.Duration
	MaxRequests int64
	// Workers send concurrently. The default, a quarter of Rate (at least
	// 8, at most MaxWorkers), keeps the rate while a request takes up to
	// 250 ms: an instance throttled by its CPU limit answers late, and a
	// load that slows with it would hide what the instance was offered.
	Workers int
	// Timeout bounds one request (default 5 s).
	Timeout time.Duration
}

// Result counts what happened.
type Result struct {
	Sent, Failed int64
	FirstError   string
	Elapsed      time.Duration
}

// MaxWorkers bounds the default number of workers.
const MaxWorkers = 512

func defaultWorkers(rate float64) int {
	return min(MaxWorkers, max(8, int(math.Ceil(rate/4))))
}

// Run sends the load and returns when it is over or ctx ends.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Workers <= 0 {
		cfg.Workers = defaultWorkers(cfg.Rate)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 1 << 62
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	client := &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}}
	defer client.CloseIdleConnections()

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	tokens := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				if err := one(ctx, client, cfg.Target); err != nil && ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	ticker := time.NewTicker(interval)
pace:
	for sent.Load() < cfg.MaxRequests {
		select {
		case <-ctx.Done():
			break pace
		case <-ticker.C:
		}
		// A ticker drops the ticks a busy machine makes it miss: send what
		// the rate asks for by now, so the load stays open-loop.
		due := min(cfg.MaxRequests, max(sent.Load()+1, int64(time.Since(start).Seconds()*cfg.Rate)))
		for sent.Load() < due {
			select {
			case tokens <- struct{}{}:
				sent.Add(1)
			case <-ctx.Done():
				break pace
			}
		}
	}
	ticker.Stop()
	close(tokens)
	wg.Wait()
	res := Result{Sent: sent.Load(), Failed: failed.Load(), Elapsed: time.Since(start)}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	return res
}

func one(ctx context.Context, client *http.Client, target func() (string, error)) error {
	url, err := target()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return nil
}
