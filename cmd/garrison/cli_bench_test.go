package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/client"
)

// BenchmarkCLIAppsList times `garrison apps ls` (request, decode, table)
// with 1,000 apps against a plain GET /v2/apps of the same apps read to
// the end, both in this process; and the built binary against curl, both
// as processes. Rounds alternate the two sides so that a noisy neighbour
// hits both; the medians are reported with their ratio.
func BenchmarkCLIAppsList(b *testing.B) {
	const apps, rounds = 1000, 15
	s := startCLIStack(b)
	c, err := client.New(client.Config{Addr: s.addr, Token: s.token})
	if err != nil {
		b.Fatal(err)
	}
	defs := make([]string, apps)
	for i := range defs {
		defs[i] = fmt.Sprintf(`{"id":"/bench/app-%04d","cmd":"sleep 600","instances":0,"cpus":0.01,"mem":16}`, i)
	}
	// A deployment changes at most 60 apps: send them in batches.
	for i := 0; i < apps; i += 50 {
		if _, err := c.PutApps(b.Context(), []byte("["+strings.Join(defs[i:i+50], ",")+"]"), false); err != nil {
			b.Fatal(err)
		}
	}
	list, err := c.Apps(b.Context())
	if err != nil || len(list) != apps {
		b.Fatalf("%d apps listed, %v", len(list), err)
	}

	cliArgs := []string{"--addr", s.addr, "--token", s.token, "apps", "ls"}
	inProcess := func() {
		if err := run(b.Context(), cliArgs, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	plainGET := func() {
		req, _ := http.NewRequestWithContext(b.Context(), "GET", "http://"+s.addr+"/v2/apps", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n == 0 {
			b.Fatalf("GET /v2/apps: %d, %d bytes", resp.StatusCode, n)
		}
	}
	curl, curlErr := exec.LookPath("curl")
	binary := func() {
		cmd := exec.Command(garrisonBinary, cliArgs...)
		cmd.Env = s.env()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("garrison apps ls: %v\n%s", err, out)
		}
	}
	curlGET := func() {
		cmd := exec.Command(curl, "-sf", "-o", "/dev/null", "-H", "Authorization: Bearer "+s.token, "http://"+s.addr+"/v2/apps")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("curl: %v\n%s", err, out)
		}
	}
	timeIt := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}

	var cliT, getT, binT, curlT []time.Duration
	inProcess() // warm both connections and caches
	plainGET()
	for b.Loop() {
		for range rounds {
			cliT = append(cliT, timeIt(inProcess))
			getT = append(getT, timeIt(plainGET))
			if curlErr == nil {
				binT = append(binT, timeIt(binary))
				curlT = append(curlT, timeIt(curlGET))
			}
		}
	}
	cli, get := median(cliT), median(getT)
	b.ReportMetric(cli, "cli-ms")
	b.ReportMetric(get, "get-ms")
	b.ReportMetric(cli/get, "ratio")
	if curlErr != nil {
		b.Logf("no curl (%v): process comparison left out", curlErr)
		return
	}
	bin, cu := median(binT), median(curlT)
	b.ReportMetric(bin, "binary-ms")
	b.ReportMetric(cu, "curl-ms")
	b.ReportMetric(bin/cu, "binary-ratio")
}
