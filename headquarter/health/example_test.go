package health_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"time"

	"github.com/garrisonhq/garrison/headquarter/health"
)

// A task serving /health on its host port is checked every 10 ms; the first
// success turns its check alive, which is what headquarter turns into a
// health_status_changed_event.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		panic(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		panic(err)
	}

	changes := make(chan health.Change, 1)
	m := health.NewMonitor(health.WithOnChange(func(c health.Change) { changes <- c }))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- m.Run(ctx) }()

	err = m.Add("ktv_account.1f0c", "ktv_account.1f0c", time.Now(), []health.Check{{
		Protocol:               health.HTTP,
		Path:                   "/health",
		Port:                   port,
		Interval:               10 * time.Millisecond,
		Timeout:                time.Second,
		GracePeriod:            time.Minute,
		MaxConsecutiveFailures: 3,
	}})
	if err != nil {
		panic(err)
	}
	c := <-changes
	fmt.Println(c.TaskID, "check", c.CheckIndex, "alive:", c.Alive)
	healthy, known := m.Healthy("ktv_account.1f0c")
	fmt.Println("healthy:", healthy, "known:", known)

	m.Remove("ktv_account.1f0c")
	cancel()
	fmt.Println("run:", <-stopped)
	// Output:
	// ktv_account.1f0c check 0 alive: true
	// healthy: true known: true
	// run: <nil>
}
