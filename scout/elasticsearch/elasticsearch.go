// Package elasticsearch is scout's QPS source over access logs in
// Elasticsearch: every Nginx/PHP request is one document, so an app's QPS
// is the number of its documents in the window divided by the window's
// seconds.
//
// One Read is one _search for all the apps asked, whatever their number:
//
//	POST /<Index>/_search?timeout=<80% of Timeout>
//	{"size": 0,
//	 "query": {"bool": {"filter": [
//	   {"range": {<TimeField>: {"gte": At-Lag-Window, "lt": At-Lag}}},
//	   {"exists": {"field": <ServiceField>}},
//	   <Filter, if any>]}},
//	 "aggs": {"apps": {"filter": {"terms": {<ServiceField>: [services asked]}},
//	   "aggs": {"services": {"terms": {"field": <ServiceField>, "size": <number of services>}}}}}}
//
// The window is half-open, so consecutive windows never count a document
// twice. The apps' terms filter sits in the aggregation rather than in the
// query so that hits.total covers the whole window (see below). With that
// filter and size = number of services, every service asked fits in the
// aggregation, so bucket counts are exact (doc_count_error_upper_bound 0).
// Elasticsearch's defaults bound one Read to 65,536 services
// (index.max_terms_count, search.max_buckets).
//
// Semantics, in the order Read applies them:
//   - Any HTTP error status (401/403 with what to check), shard failure or
//     timed_out response is an error: a partial answer undercounts, and an
//     undercount looks like less traffic, which would scale down.
//   - hits.total counts every document in the window that carries a service
//     value, whichever app it belongs to: it says whether the log pipeline is
//     alive. When it is 0, every app is Value{OK: false}: a dead pipeline (or
//     a wrong ServiceField, which leaves no document with the field) must not
//     read as zero traffic.
//   - Otherwise an app with a bucket has QPS doc_count/Window.Seconds(), and
//     an app without one had no request in the window: QPS 0, OK true. (A
//     service value that never appears in the logs, e.g. a wrong mapping,
//     also reads as an idle app.)
//   - Value.Instances is 0: access logs do not say how many instances served
//     the requests, so the autoscaler divides the app's QPS by the number of
//     instances it knows are running.
package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"

	"github.com/garrisonhq/garrison/scout/sample"
)

// Defaults for the zero values of Config.
const (
	DefaultServiceField = "service.name"
	DefaultTimeField    = "@timestamp"
	DefaultTimeout      = 5 * time.Second
)

// Config configures a Source. Addresses and Index are required.
type Config struct {
	// Addresses are the Elasticsearch nodes, e.g. http://127.0.0.1:9200;
	// the client spreads requests over them and retries on another node
	// after a connection error or a 502/503/504.
	Addresses []string
	// Username and Password authenticate with HTTP Basic; APIKey (the
	// base64 "id:key" Elasticsearch returns) takes precedence over them.
	Username string
	Password string
	APIKey   string
	// Index is the index pattern searched, e.g. nginx-access-*; several
	// patterns are separated by commas, as in Elasticsearch's URL.
	Index string
	// ServiceField holds the service name in each access-log document
	// (default service.name). It must be a keyword field: for a text field
	// dynamically mapped by Filebeat use its .keyword sub-field
	// (fields.app.keyword).
	ServiceField string
	// TimeField is the document's time (default @timestamp).
	TimeField string
	// Services maps an app id to its service value in the logs. An app's
	// Query[sample.QPS] wins over it; an app in neither is looked up by its
	// id.
	Services map[string]string
	// Filter is an optional extra query clause ANDed into the search, e.g.
	// {"term": {"event.dataset": "nginx.access"}}. It must be a JSON object.
	Filter json.RawMessage
	// Lag shifts the window back to leave time for log shipping and index
	// refresh: the window is [At-Lag-Window, At-Lag). Default 0.
	Lag time.Duration
	// Timeout bounds one Read, retries included (default 5s). Elasticsearch
	// is asked to stop the search at 80% of it, so a slow search comes
	// back as timed_out (an error) rather than as a cut connection.
	Timeout time.Duration
	// Transport is the HTTP transport (default: the client's).
	Transport http.RoundTripper
}

// Source reads QPS per app from access-log documents. It is safe for
// concurrent use.
type Source struct {
	client *es.Client
	cfg    Config
	filter json.RawMessage
}

var _ sample.Source = (*Source)(nil)

// New checks cfg, fills its defaults and builds the client. It does not
// contact Elasticsearch.
func New(cfg Config) (*Source, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("elasticsearch: no addresses")
	}
	for _, a := range cfg.Addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("elasticsearch: address %q: want http(s)://host:port", a)
		}
	}
	if strings.TrimSpace(cfg.Index) == "" {
		return nil, errors.New("elasticsearch: no index pattern")
	}
	if cfg.ServiceField == "" {
		cfg.ServiceField = DefaultServiceField
	}
	if cfg.TimeField == "" {
		cfg.TimeField = DefaultTimeField
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Lag < 0 {
		return nil, fmt.Errorf("elasticsearch: negative lag %s", cfg.Lag)
	}
	var filter json.RawMessage
	if len(bytes.TrimSpace(cfg.Filter)) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(cfg.Filter, &obj); err != nil || len(obj) == 0 {
			return nil, fmt.Errorf("elasticsearch: filter %s: want a query DSL object", cfg.Filter)
		}
		filter = slices.Clone(cfg.Filter)
	}
	cfg.Services = cloneMap(cfg.Services)
	client, err := es.NewClient(es.Config{
		Addresses: slices.Clone(cfg.Addresses),
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: cfg.Transport,
		// A cancelled or expired Read is not retried on another node.
		RetryOnError: func(r *http.Request, _ error) bool { return r.Context().Err() == nil },
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: client for %v: %w", cfg.Addresses, err)
	}
	return &Source{client: client, cfg: cfg, filter: filter}, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// service returns the service value app's documents carry.
func (s *Source) service(app sample.App) string {
	if q := app.Query[sample.QPS]; q != "" {
		return q
	}
	if v, ok := s.cfg.Services[app.ID]; ok && v != "" {
		return v
	}
	return app.ID
}

// Read answers QPS for every app in req with one _search. One request per
// cycle, not one per app: the cost of a cycle is then one round trip and one
// pass over the window's documents whatever the number of apps (a _count
// per app is a round trip and a pass each; see the benchmark), and all apps
// are counted over the same documents at the same instant.
func (s *Source) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	if req.Window <= 0 {
		return nil, fmt.Errorf("elasticsearch: window %s: want > 0", req.Window)
	}
	if req.At.IsZero() {
		return nil, errors.New("elasticsearch: request without At")
	}
	out := make(sample.Readings, len(req.Apps))
	if len(req.Apps) == 0 {
		return out, nil
	}
	// svc[i] is app i's service value; services lists each value once
	// (several apps may log under one value: each gets its count).
	svc := make([]string, len(req.Apps))
	services := make([]string, 0, len(req.Apps))
	seen := make(map[string]struct{}, len(req.Apps))
	for i, app := range req.Apps {
		svc[i] = s.service(app)
		if _, ok := seen[svc[i]]; !ok {
			seen[svc[i]] = struct{}{}
			services = append(services, svc[i])
		}
	}
	to := req.At.Add(-s.cfg.Lag)
	from := to.Add(-req.Window)
	body, err := s.searchBody(services, from, to)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.client.Search(
		s.client.Search.WithContext(ctx),
		s.client.Search.WithIndex(s.cfg.Index),
		s.client.Search.WithBody(bytes.NewReader(body)),
		s.client.Search.WithTimeout(s.cfg.Timeout*4/5),
	)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: search %s: %w", s.cfg.Index, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return nil, s.responseError(res.StatusCode, res.Body)
	}
	var r searchResponse
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("elasticsearch: search %s: decode response: %w", s.cfg.Index, err)
	}
	if err := s.partial(&r); err != nil {
		return nil, err
	}

	if r.Hits.Total.Value == 0 {
		// Not one log line in the window: the pipeline is down, or nothing
		// is logged where we look. No data, not zero traffic.
		for _, app := range req.Apps {
			out[app.ID] = sample.Reading{sample.QPS: {}}
		}
		return out, nil
	}
	if r.Aggregations.Apps.Services == nil {
		return nil, fmt.Errorf("elasticsearch: search %s: response without aggregations.apps.services", s.cfg.Index)
	}
	agg := r.Aggregations.Apps.Services
	counts := make(map[string]int64, len(agg.Buckets))
	for _, b := range agg.Buckets {
		counts[string(b.Key)] = b.DocCount
	}
	secs := req.Window.Seconds()
	for i, app := range req.Apps {
		n, ok := counts[svc[i]]
		// With the terms filter and size = number of services every service
		// fits, so a missing bucket is zero requests; should Elasticsearch
		// still have left buckets out, a missing one is unknown.
		out[app.ID] = sample.Reading{sample.QPS: {Value: float64(n) / secs, OK: ok || agg.SumOtherDocCount == 0}}
	}
	return out, nil
}

// searchBody is the request body: see the package comment. Map keys are
// marshalled in sorted order, so equal requests are equal bytes (and hit
// Elasticsearch's request cache).
func (s *Source) searchBody(services []string, from, to time.Time) ([]byte, error) {
	filters := []any{
		map[string]any{"range": map[string]any{s.cfg.TimeField: map[string]any{
			"gte":    from.UTC().Format(timeFormat),
			"lt":     to.UTC().Format(timeFormat),
			"format": "strict_date_optional_time",
		}}},
		map[string]any{"exists": map[string]any{"field": s.cfg.ServiceField}},
	}
	if s.filter != nil {
		filters = append(filters, s.filter)
	}
	body := map[string]any{
		"size":  0,
		"query": map[string]any{"bool": map[string]any{"filter": filters}},
		"aggs": map[string]any{"apps": map[string]any{
			// The apps' terms filter sits in the aggregation, not in the
			// query, so that hits.total counts the whole window (pipeline
			// alive?) while the buckets count only the apps asked.
			"filter": map[string]any{"terms": map[string]any{s.cfg.ServiceField: services}},
			"aggs": map[string]any{"services": map[string]any{"terms": map[string]any{
				"field": s.cfg.ServiceField,
				"size":  len(services),
			}}},
		}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: encode search: %w", err)
	}
	return b, nil
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

type searchResponse struct {
	TimedOut bool `json:"timed_out"`
	Shards   struct {
		Total    int `json:"total"`
		Failed   int `json:"failed"`
		Failures []struct {
			Shard  int       `json:"shard"`
			Index  string    `json:"index"`
			Reason errorBody `json:"reason"`
		} `json:"failures"`
	} `json:"_shards"`
	Hits struct {
		Total struct {
			Value int64 `json:"value"`
		} `json:"total"`
	} `json:"hits"`
	Aggregations struct {
		Apps struct {
			Services *struct {
				SumOtherDocCount int64    `json:"sum_other_doc_count"`
				Buckets          []bucket `json:"buckets"`
			} `json:"services"`
		} `json:"apps"`
	} `json:"aggregations"`
}

type bucket struct {
	Key      bucketKey `json:"key"`
	DocCount int64     `json:"doc_count"`
}

// bucketKey is a bucket's service value: a string for keyword fields, the
// number as written for numeric ones (as the terms filter matches them).
type bucketKey string

func (k *bucketKey) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' {
		if !bytes.ContainsRune(b, '\\') {
			*k = bucketKey(b[1 : len(b)-1])
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("bucket key %s: %w", b, err)
		}
		*k = bucketKey(s)
		return nil
	}
	*k = bucketKey(b)
	return nil
}

type errorBody struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Error is a failure Elasticsearch reported: an HTTP error status, or a
// 200 answer with failed shards or timed_out.
type Error struct {
	// Index is the index pattern searched.
	Index string
	// Status is the HTTP status (200 for a partial answer).
	Status int
	// Type and Reason are Elasticsearch's error.type and error.reason
	// (for a partial answer: the first shard failure's, or "timed_out").
	Type   string
	Reason string
	// Hint says what to check, for 401 and 403.
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "elasticsearch: search %s: ", e.Index)
	if e.Status != http.StatusOK {
		fmt.Fprintf(&b, "%d %s: ", e.Status, http.StatusText(e.Status))
	}
	if e.Hint != "" {
		b.WriteString(e.Hint + ": ")
	}
	b.WriteString(e.Type)
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

// responseError reads an error answer ({"error":{...},"status":N}).
func (s *Source) responseError(status int, body io.Reader) error {
	e := &Error{Index: s.cfg.Index, Status: status}
	raw, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return fmt.Errorf("elasticsearch: search %s: %d: read error body: %w", s.cfg.Index, status, err)
	}
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	var eb errorBody
	if json.Unmarshal(raw, &r) == nil && len(r.Error) > 0 {
		// error is an object, or a plain string from some proxies.
		if json.Unmarshal(r.Error, &eb) != nil {
			var str string
			if json.Unmarshal(r.Error, &str) == nil {
				eb.Reason = str
			}
		}
	}
	e.Type, e.Reason = eb.Type, eb.Reason
	if e.Type == "" && e.Reason == "" {
		e.Reason = strings.TrimSpace(string(raw))
	}
	switch status {
	case http.StatusUnauthorized:
		e.Hint = "credentials rejected (check Username/Password or APIKey)"
	case http.StatusForbidden:
		e.Hint = fmt.Sprintf("credentials lack the read privilege on %s", s.cfg.Index)
	}
	return e
}

// partial turns a 200 answer with failed shards or timed_out into an
// error: its counts miss documents, and fewer documents read as less load.
func (s *Source) partial(r *searchResponse) error {
	switch {
	case r.Shards.Failed > 0:
		e := &Error{Index: s.cfg.Index, Status: http.StatusOK, Type: "shard_failure"}
		detail := ""
		if len(r.Shards.Failures) > 0 {
			f := r.Shards.Failures[0]
			e.Type = f.Reason.Type
			detail = fmt.Sprintf(" (first: index %s shard %d: %s)", f.Index, f.Shard, f.Reason.Reason)
		}
		e.Reason = fmt.Sprintf("%d of %d shards failed, counts would be partial%s", r.Shards.Failed, r.Shards.Total, detail)
		return e
	case r.TimedOut:
		return &Error{Index: s.cfg.Index, Status: http.StatusOK, Type: "timed_out",
			Reason: fmt.Sprintf("search exceeded %s, counts would be partial", s.cfg.Timeout*4/5)}
	}
	return nil
}
