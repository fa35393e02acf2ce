package ui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkConsoleFirstLoad1000Apps: the console's first load in headless
// chromium (a fresh profile, so nothing cached) until the apps page lists
// 1,000 apps, against the baseline of the same data fetched raw: one
// GET /v2/apps with the same embeds, over the same loopback.
func BenchmarkConsoleFirstLoad1000Apps(b *testing.B) {
	const apps = 1000
	base := startGarrison(b)
	createApps(b, base, apps)
	apiURL := base + "/v2/apps?embed=apps.counts&embed=apps.deployments&embed=apps.lastTaskFailure"

	var consoleTime, rawTime time.Duration
	var consoleBytes, rawBytes float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := http.Get(apiURL)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rawTime += time.Since(start)
		rawBytes += float64(n)

		// A new browser each run: a first load, nothing cached.
		ctx := browser(b)
		start = time.Now()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err = chromedp.Do(sctx, chromedp.Navigate(base+"/ui/#/apps"))
		if err == nil {
			_, err = chromedp.Run(sctx, chromedp.Poll[bool](fmt.Sprintf(`(() => { const c = document.querySelector('caption'); return !!c && c.textContent === '%d of %d apps'; })()`, apps, apps), chromedp.WithPollingInterval(10*time.Millisecond)))
		}
		consoleTime += time.Since(start)
		if err != nil {
			cancel()
			b.Fatalf("console never listed %d apps: %v", apps, err)
		}
		transferred, err := chromedp.Run(sctx, chromedp.Evaluate[float64](`performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).filter(e => !e.name.includes('/v2/events')).reduce((s, e) => s + e.transferSize, 0)`))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		consoleBytes += transferred
	}
	n := float64(b.N)
	b.ReportMetric(consoleTime.Seconds()/n, "console-s")
	b.ReportMetric(rawTime.Seconds()/n, "raw-GET-s")
	b.ReportMetric(consoleTime.Seconds()/rawTime.Seconds(), "console/raw-time")
	b.ReportMetric(consoleBytes/n/1024, "console-KiB")
	b.ReportMetric(rawBytes/n/1024, "raw-KiB")
	b.ReportMetric(consoleBytes/rawBytes, "console/raw-bytes")
}

// createApps makes n apps with no instances (nothing to launch: the page's
// cost is what is measured), eight requests at a time.
func createApps(b testing.TB, base string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"id":"/bench/g%02d/app-%04d","cmd":"sleep 600","instances":0,"cpus":0.1,"mem":16}`, i%20, i)
			resp, err := http.Post(base+"/v2/apps", "application/json", bytes.NewBufferString(body))
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("create app %d: %s", i, resp.Status)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
