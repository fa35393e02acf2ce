// Package promsd serves the registry to Prometheus as HTTP service
// discovery (http_sd_configs): every live instance under
// /service/<name>/<id> becomes one target group, labelled with the app it
// belongs to, so a query can sum or average per app:
//
//	scrape_configs:
//	  - job_name: garrison-services
//	    http_sd_configs:
//	      - url: http://127.0.0.1:8080/sd/prometheus
//	        refresh_interval: 5s
//
// Each request reads the registry afresh with one Get on the prefix: one
// range read per Prometheus refresh is cheap next to the scrapes it drives.
package promsd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// Labels every target group carries.
const (
	// LabelApp is the Marathon app id (metadata appId), else the service
	// name: the label scout/prometheus groups by.
	LabelApp = "app"
	// LabelService is the registry's service name.
	LabelService = "service"
	// LabelTask is the task id (metadata taskId), else the instance id.
	LabelTask = "task"
)

// Metadata keys garrison writes when it registers a task on its behalf
// (headquarter/scheduler).
const (
	MetaAppID  = "appId"
	MetaTaskID = "taskId"
)

// Group is one http_sd target group.
type Group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Option changes a Handler.
type Option func(*Handler)

// WithTimeout bounds one registry read (default 3s, under Prometheus's own
// http_sd timeout).
func WithTimeout(d time.Duration) Option { return func(h *Handler) { h.timeout = d } }

// WithLogger sets where failed reads and skipped entries are logged.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.logger = l } }

// Handler serves the target groups. It is safe for concurrent use.
type Handler struct {
	kv      clientv3.KV
	timeout time.Duration
	logger  *slog.Logger
}

// New returns a Handler reading the registry through kv.
func New(kv clientv3.KV, opts ...Option) *Handler {
	h := &Handler{kv: kv, timeout: 3 * time.Second, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Groups reads the registry and returns one target group per instance,
// sorted by service and instance id. Two registrations of one address (a
// service that registers itself and garrison registering its task) give one
// target, the one that carries an appId, so the instance is scraped once.
func (h *Handler) Groups(ctx context.Context) ([]Group, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	resp, err := h.kv.Get(ctx, registrar.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("promsd: read registry %s: %w", registrar.Prefix, err)
	}
	byAddr := make(map[string]registrar.Instance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			h.logger.Debug("promsd: skip registry entry", "error", err)
			continue
		}
		old, seen := byAddr[inst.Endpoint.Addr]
		if seen && !better(inst, old) {
			continue
		}
		byAddr[inst.Endpoint.Addr] = inst
	}
	insts := make([]registrar.Instance, 0, len(byAddr))
	for _, inst := range byAddr {
		insts = append(insts, inst)
	}
	slices.SortFunc(insts, func(a, b registrar.Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ID, b.ID))
	})
	groups := make([]Group, len(insts))
	for i, inst := range insts {
		groups[i] = Group{
			Targets: []string{inst.Endpoint.Addr},
			Labels: map[string]string{
				LabelApp:     cmp.Or(inst.Endpoint.Metadata[MetaAppID], inst.Service),
				LabelService: inst.Service,
				LabelTask:    cmp.Or(inst.Endpoint.Metadata[MetaTaskID], inst.ID),
			},
		}
	}
	return groups, nil
}

// better says whether a should replace b for the same address: the one
// naming its app wins, then the lower key, so the choice is stable.
func better(a, b registrar.Instance) bool {
	aApp, bApp := a.Endpoint.Metadata[MetaAppID] != "", b.Endpoint.Metadata[MetaAppID] != ""
	if aApp != bApp {
		return aApp
	}
	return registrar.Key(a.Service, a.ID) < registrar.Key(b.Service, b.ID)
}

// ServeHTTP answers GET with the target groups as JSON. When the registry
// cannot be read it answers 503: Prometheus then keeps the targets it had,
// rather than dropping every target because etcd blinked.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	groups, err := h.Groups(r.Context())
	if err != nil {
		h.logger.Warn("promsd: serve targets", "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(groups); err != nil {
		http.Error(w, fmt.Sprintf("promsd: encode: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}
