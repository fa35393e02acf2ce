package elasticsearch

// Elasticsearch cannot be installed on this machine, so these tests do not
// run against Elasticsearch: the test server below, on 127.0.0.1, replays
// Elasticsearch 8.x's response shapes. The bodies in testdata/ are in the
// exact form Elasticsearch 8 answers _search and _count (took, timed_out,
// _shards{total,successful,skipped,failed,failures}, hits{total{value,
// relation},max_score,hits}, a filter aggregation holding a terms
// aggregation; error bodies {"error":{"root_cause":[...],"type","reason",
// ...},"status":N} for index_not_found_exception and security_exception),
// with the X-Elastic-Product header the official client checks. The server
// also checks what the client sent: the index pattern in the path, the
// range on the time field with the window's bounds, the terms filter
// listing the apps' services, size 0 and the terms aggregation, the
// credentials and the server-side timeout.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/scout/sample"
)

// at is the end of every test window.
var at = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newServer starts the stand-in on 127.0.0.1; handle writes the answer.
// Every answer carries the headers Elasticsearch 8 sends.
func newServer(t testing.TB, handle func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		handle(w, r)
	}))
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want 127.0.0.1", srv.URL)
	}
	t.Cleanup(srv.Close)
	return srv
}

// sentSearch is the part of the request body the server checks.
type sentSearch struct {
	Size  *int `json:"size"`
	Query struct {
		Bool struct {
			Filter []map[string]json.RawMessage `json:"filter"`
		} `json:"bool"`
	} `json:"query"`
	Aggs map[string]struct {
		Filter struct {
			Terms map[string][]string `json:"terms"`
		} `json:"filter"`
		Aggs map[string]struct {
			Terms struct {
				Field string `json:"field"`
				Size  int    `json:"size"`
			} `json:"terms"`
		} `json:"aggs"`
	} `json:"aggs"`
}

// wantSearch is what the client must have sent.
type wantSearch struct {
	path         string // /<index>/_search
	timeField    string
	serviceField string
	gte, lt      string
	services     []string // in the order of the apps asked
	filter       string   // extra filter clause, compact JSON; "" for none
	auth         string   // Authorization header
	timeout      string   // ?timeout=
}

// checkSearch fails t unless r is the search w describes.
func checkSearch(t testing.TB, r *http.Request, w wantSearch) {
	t.Helper()
	if r.Method != http.MethodPost || r.URL.Path != w.path {
		t.Errorf("request %s %s, want POST %s", r.Method, r.URL.Path, w.path)
	}
	if got := r.URL.Query().Get("timeout"); got != w.timeout {
		t.Errorf("timeout=%q, want %q", got, w.timeout)
	}
	if got := r.Header.Get("Authorization"); got != w.auth {
		t.Errorf("Authorization %q, want %q", got, w.auth)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("read body: %v", err)
		return
	}
	var s sentSearch
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Errorf("body %s: %v", raw, err)
		return
	}
	if s.Size == nil || *s.Size != 0 {
		t.Errorf("size %v, want 0 in %s", s.Size, raw)
	}
	var gotRange, gotExists, gotFilter bool
	for _, f := range s.Query.Bool.Filter {
		switch {
		case f["range"] != nil:
			var rg map[string]struct{ Gte, Lt, Lte, Format string }
			if err := json.Unmarshal(f["range"], &rg); err != nil {
				t.Errorf("range %s: %v", f["range"], err)
			}
			b, ok := rg[w.timeField]
			if !ok || b.Gte != w.gte || b.Lt != w.lt || b.Lte != "" {
				t.Errorf("range %s, want %s in [%s, %s)", f["range"], w.timeField, w.gte, w.lt)
			}
			gotRange = true
		case f["exists"] != nil:
			if want := fmt.Sprintf(`{"field":%q}`, w.serviceField); string(f["exists"]) != want {
				t.Errorf("exists %s, want %s", f["exists"], want)
			}
			gotExists = true
		default:
			b, _ := json.Marshal(f)
			if string(b) != w.filter {
				t.Errorf("filter clause %s, want %q", b, w.filter)
			}
			gotFilter = true
		}
	}
	if !gotRange || !gotExists || gotFilter != (w.filter != "") {
		t.Errorf("query %s: range %v, exists %v, extra filter %v (want %q)", raw, gotRange, gotExists, gotFilter, w.filter)
	}
	apps, ok := s.Aggs["apps"]
	if !ok || len(s.Aggs) != 1 {
		t.Errorf("aggs %s, want one named apps", raw)
		return
	}
	if got := apps.Filter.Terms[w.serviceField]; !slices.Equal(got, w.services) || len(apps.Filter.Terms) != 1 {
		t.Errorf("terms filter %v, want %s: %v", apps.Filter.Terms, w.serviceField, w.services)
	}
	terms := apps.Aggs["services"].Terms
	if terms.Field != w.serviceField || terms.Size != len(w.services) {
		t.Errorf("terms aggregation on %q size %d, want %q size %d", terms.Field, terms.Size, w.serviceField, len(w.services))
	}
}

func qps(v float64) sample.Reading { return sample.Reading{sample.QPS: {Value: v, OK: true}} }

var noData = sample.Reading{sample.QPS: {}}

// apps asked in most cases: account and room log under a mapped or
// overridden service value, song under its own id.
var apps = []sample.App{
	{ID: "/ktv/account"},
	{ID: "/ktv/room", Query: map[sample.Metric]string{sample.QPS: "ktv-room"}},
	{ID: "ktv-song"},
}

func TestRead(t *testing.T) {
	base := Config{
		Index:    "nginx-access-*",
		Username: "garrison",
		Password: "s3cret",
		Services: map[string]string{"/ktv/account": "ktv-account", "/ktv/room": "ignored: Query wins"},
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("garrison:s3cret"))
	want := wantSearch{
		path:         "/nginx-access-*/_search",
		timeField:    "@timestamp",
		serviceField: "service.name",
		gte:          "2025-03-14T11:59:00.000Z",
		lt:           "2025-03-14T12:00:00.000Z",
		services:     []string{"ktv-account", "ktv-room", "ktv-song"},
		auth:         basic,
		timeout:      "4000ms",
	}
	tests := []struct {
		name   string
		config func(*Config)
		req    sample.Request
		want   func(*wantSearch)
		status int
		file   string
		// readings, or error substrings
		readings sample.Readings
		errs     []string
		status2  int // *Error.Status when an error is wanted
	}{{
		// 600 documents in 1m are 10 QPS; song has no bucket while the
		// window has documents: it was idle, 0 with OK.
		name:   "apps in one request, window division, missing bucket is zero",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 200, file: "search_apps.json",
		readings: sample.Readings{"/ktv/account": qps(10), "/ktv/room": qps(0.5), "ktv-song": qps(0)},
	}, {
		name: "other fields, API key, extra filter, lag, 10s window",
		config: func(c *Config) {
			c.ServiceField, c.TimeField = "fields.app", "event.created"
			c.APIKey = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
			c.Filter = json.RawMessage(`{"term": {"event.dataset": "nginx.access"}}`)
			c.Lag = 5 * time.Second
			c.Timeout = time.Second
		},
		req: sample.Request{Apps: apps, Window: 10 * time.Second, At: at},
		want: func(w *wantSearch) {
			w.serviceField, w.timeField = "fields.app", "event.created"
			w.auth = "APIKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
			w.filter = `{"term":{"event.dataset":"nginx.access"}}`
			w.gte, w.lt = "2025-03-14T11:59:45.000Z", "2025-03-14T11:59:55.000Z"
			w.timeout = "800ms"
		},
		status: 200, file: "search_apps.json",
		readings: sample.Readings{"/ktv/account": qps(60), "/ktv/room": qps(3), "ktv-song": qps(0)},
	}, {
		name: "two apps logging under one service both get its count",
		req: sample.Request{Window: time.Minute, At: at, Apps: []sample.App{
			{ID: "/ktv/account"}, {ID: "/ktv/account-canary", Query: map[sample.Metric]string{sample.QPS: "ktv-account"}},
		}},
		want:   func(w *wantSearch) { w.services = []string{"ktv-account"} },
		status: 200, file: "search_apps.json",
		readings: sample.Readings{"/ktv/account": qps(10), "/ktv/account-canary": qps(10)},
	}, {
		// No log line at all in the window: the pipeline is down, which
		// must not read as every app idle.
		name:   "zero hits is no data for every app",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 200, file: "search_zero_hits.json",
		readings: sample.Readings{"/ktv/account": noData, "/ktv/room": noData, "ktv-song": noData},
	}, {
		name:   "index not found",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 404, file: "error_index_not_found.json",
		errs: []string{"404", "index_not_found_exception", "no such index [nginx-access-2025.03.14]"}, status2: 404,
	}, {
		name:   "unauthorized names the credentials",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 401, file: "error_unauthorized.json",
		errs: []string{"401", "credentials rejected (check Username/Password or APIKey)", "security_exception", "unable to authenticate user [garrison]"}, status2: 401,
	}, {
		name:   "forbidden names the privilege",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 403, file: "error_forbidden.json",
		errs: []string{"403", "credentials lack the read privilege on nginx-access-*", "security_exception", "is unauthorized for user [garrison]"}, status2: 403,
	}, {
		// A failed shard's documents are missing from the counts: an error,
		// not a warning, since undercounting would scale down.
		name:   "shard failure is an error",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 200, file: "search_shard_failure.json",
		errs: []string{"circuit_breaking_exception", "1 of 3 shards failed", "nginx-access-2025.03.14 shard 1", "Data too large"}, status2: 200,
	}, {
		name:   "timed_out is an error",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 200, file: "search_timed_out.json",
		errs: []string{"timed_out", "search exceeded 4s"}, status2: 200,
	}, {
		name:   "5xx with a plain body",
		req:    sample.Request{Apps: apps, Window: time.Minute, At: at},
		status: 500, file: "",
		errs: []string{"500 Internal Server Error", "upstream exploded"}, status2: 500,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := want
			if tc.want != nil {
				tc.want(&w)
			}
			var body []byte
			if tc.file != "" {
				body = testdata(t, tc.file)
			} else {
				body = []byte("upstream exploded\n")
			}
			var calls atomic.Int32
			srv := newServer(t, func(rw http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				checkSearch(t, r, w)
				rw.WriteHeader(tc.status)
				rw.Write(body)
			})
			cfg := base
			cfg.Services = cloneMap(base.Services)
			if tc.config != nil {
				tc.config(&cfg)
			}
			cfg.Addresses = []string{srv.URL}
			src, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Read(t.Context(), tc.req)
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("Read = %v, want an error", got)
				}
				for _, s := range tc.errs {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				var ee *Error
				if !errors.As(err, &ee) || ee.Status != tc.status2 {
					t.Errorf("error %#v, want *Error with status %d", err, tc.status2)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.readings) {
				t.Errorf("Read =\n %v\nwant\n %v", got, tc.readings)
			}
		})
	}
}

// hang answers nothing until the client goes away or the test ends. The
// body is read first: the server notices a closed connection only then.
func hang(t *testing.T, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-t.Context().Done():
	}
}

// A server that never answers: Read gives up at Timeout, with the deadline
// in the error, and does not retry on another attempt after it.
func TestReadTimeout(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		hang(t, r)
	})
	src, err := New(Config{Addresses: []string{srv.URL}, Index: "nginx-access-*", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = src.Read(t.Context(), sample.Request{Apps: apps, Window: time.Minute, At: at})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read error %v, want a deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Read took %s with a 200ms timeout", d)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (no retry after the deadline)", n)
	}
}

// The caller's cancellation ends Read too.
func TestReadCancelled(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { hang(t, r) })
	src, err := New(Config{Addresses: []string{srv.URL}, Index: "nginx-access-*"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := src.Read(ctx, sample.Request{Apps: apps, Window: time.Minute, At: at}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read error %v, want canceled", err)
	}
}

// Without the X-Elastic-Product header the official client refuses the
// answer: the test server must send it, as Elasticsearch does.
func TestReadNotElasticsearch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(testdata(t, "search_apps.json"))
	}))
	defer srv.Close()
	src, err := New(Config{Addresses: []string{srv.URL}, Index: "nginx-access-*"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Read(t.Context(), sample.Request{Apps: apps, Window: time.Minute, At: at})
	if err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Fatalf("Read error %v, want the product check", err)
	}
}

func TestReadNoApps(t *testing.T) {
	src, err := New(Config{Addresses: []string{"http://127.0.0.1:1"}, Index: "x"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Read(t.Context(), sample.Request{Window: time.Minute, At: at})
	if err != nil || len(got) != 0 {
		t.Fatalf("Read = %v, %v; want no readings and no request", got, err)
	}
	if _, err := src.Read(t.Context(), sample.Request{Apps: apps, At: at}); err == nil {
		t.Error("Read with a zero window succeeded")
	}
	if _, err := src.Read(t.Context(), sample.Request{Apps: apps, Window: time.Minute}); err == nil {
		t.Error("Read without At succeeded")
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"no address", Config{Index: "x"}, "no addresses"},
		{"bad address", Config{Addresses: []string{"127.0.0.1:9200"}, Index: "x"}, "want http(s)://host:port"},
		{"no index", Config{Addresses: []string{"http://127.0.0.1:9200"}}, "no index pattern"},
		{"filter not an object", Config{Addresses: []string{"http://127.0.0.1:9200"}, Index: "x", Filter: json.RawMessage(`["term"]`)}, "want a query DSL object"},
		{"negative lag", Config{Addresses: []string{"http://127.0.0.1:9200"}, Index: "x", Lag: -time.Second}, "negative lag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New error %v, want %q", err, tc.err)
			}
		})
	}
}

// searchAnswer is search_apps.json with one bucket per service, doc_count
// 600 each: the answer Elasticsearch gives for many apps.
func searchAnswer(t testing.TB, services []string) []byte {
	t.Helper()
	var r map[string]any
	if err := json.Unmarshal(testdata(t, "search_apps.json"), &r); err != nil {
		t.Fatal(err)
	}
	buckets := make([]any, len(services))
	for i, s := range services {
		buckets[i] = map[string]any{"key": s, "doc_count": 600}
	}
	aggs := r["aggregations"].(map[string]any)["apps"].(map[string]any)
	aggs["doc_count"] = 600 * len(services)
	aggs["services"].(map[string]any)["buckets"] = buckets
	r["hits"].(map[string]any)["total"] = map[string]any{"value": 10000, "relation": "gte"}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The answer for 1,000 apps is parsed whole: every app reads 10 QPS.
func TestReadManyApps(t *testing.T) {
	const n = 1000
	many, services := manyApps(n)
	answer := searchAnswer(t, services)
	w := wantSearch{
		path: "/nginx-access-*/_search", timeField: "@timestamp", serviceField: "service.name",
		gte: "2025-03-14T11:59:00.000Z", lt: "2025-03-14T12:00:00.000Z",
		services: services, timeout: "4000ms",
	}
	srv := newServer(t, func(rw http.ResponseWriter, r *http.Request) {
		checkSearch(t, r, w)
		rw.Write(answer)
	})
	src, err := New(Config{Addresses: []string{srv.URL}, Index: "nginx-access-*"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Read(t.Context(), sample.Request{Apps: many, Window: time.Minute, At: at})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d readings, want %d", len(got), n)
	}
	for id, r := range got {
		if v := r[sample.QPS]; !v.OK || v.Value != 10 || v.Instances != 0 {
			t.Fatalf("%s: %+v, want 10 QPS, OK, 0 instances", id, v)
		}
	}
}

func manyApps(n int) ([]sample.App, []string) {
	apps := make([]sample.App, n)
	services := make([]string, n)
	for i := range apps {
		apps[i] = sample.App{ID: fmt.Sprintf("app-%04d", i)}
		services[i] = apps[i].ID
	}
	return apps, services
}

// BenchmarkRead1000Apps reads 1,000 apps with one _search through the
// official client, and reports in the same run:
//   - x_raw_http: its time over the same request made with bare net/http
//     and decoded with encoding/json (the client's overhead);
//   - x_per_app_count: the time of 1,000 per-app _count requests (what a
//     source asking app by app would cost) over its time.
func BenchmarkRead1000Apps(b *testing.B) {
	const n = 1000
	many, services := manyApps(n)
	answer := searchAnswer(b, services)
	count := testdata(b, "count.json")
	srv := newServer(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/_count") {
			w.Write(count)
			return
		}
		w.Write(answer)
	})
	src, err := New(Config{Addresses: []string{srv.URL}, Index: "nginx-access-*"})
	if err != nil {
		b.Fatal(err)
	}
	req := sample.Request{Apps: many, Window: time.Minute, At: at}
	ctx := b.Context()

	// Baseline 1: the same request and decoding without the client.
	body, err := src.searchBody(services, at.Add(-time.Minute), at)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{}
	raw := func() {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/nginx-access-*/_search?timeout=4000ms", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(hr)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		var r searchResponse
		if err := json.NewDecoder(res.Body).Decode(&r); err != nil || len(r.Aggregations.Apps.Services.Buckets) != n {
			b.Fatalf("raw search: %v", err)
		}
	}
	// Baseline 2: one _count per app, through the same client.
	perApp := func() {
		for _, svc := range services {
			q := fmt.Sprintf(`{"query":{"bool":{"filter":[{"range":{"@timestamp":{"gte":%q,"lt":%q}}},{"term":{"service.name":%q}}]}}}`,
				"2025-03-14T11:59:00.000Z", "2025-03-14T12:00:00.000Z", svc)
			res, err := src.client.Count(
				src.client.Count.WithContext(ctx),
				src.client.Count.WithIndex("nginx-access-*"),
				src.client.Count.WithBody(strings.NewReader(q)),
			)
			if err != nil {
				b.Fatal(err)
			}
			var c struct{ Count int64 }
			err = json.NewDecoder(res.Body).Decode(&c)
			res.Body.Close()
			if err != nil || c.Count != 600 {
				b.Fatalf("count %s: %d, %v", svc, c.Count, err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.Read(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	readPer := float64(b.Elapsed()) / float64(b.N)
	// The baselines run after the loop, in the same process and conditions.
	rawPer := perOp(min(b.N, 500), raw)
	countPer := perOp(3, perApp)
	b.ReportMetric(readPer/rawPer, "x_raw_http")
	b.ReportMetric(countPer/readPer, "x_per_app_count")
	b.ReportMetric(countPer/1e6, "ms/1000_counts")
}

// perOp is the mean time of f over n runs, after one warm-up run.
func perOp(n int, f func()) float64 {
	f()
	start := time.Now()
	for range n {
		f()
	}
	return float64(time.Since(start)) / float64(n)
}
