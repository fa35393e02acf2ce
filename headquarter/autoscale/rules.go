package autoscale

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/store"
)

// RuleStore keeps the rules document in etcd.
type RuleStore interface {
	Rules(ctx context.Context) (store.Record, error)
	PutRules(ctx context.Context, data []byte) error
}

// Rules is the rules document in force: from the store, the API (PUT
// /api/v1/rules) or a watched file. A document that does not validate is
// refused and the rules in force stay, as Prometheus keeps its rule groups
// on a bad reload.
type Rules struct {
	manager *Manager
	store   RuleStore
	log     *slog.Logger

	mu    sync.Mutex
	doc   []byte
	limit int // per-app instance limit; 0: rulefmt's default
	// defaultSource and checks: each source's own check of a rule's
	// queries (PromQL parsed for prometheus), see SetQueryChecks.
	defaultSource string
	checks        map[string]rulefmt.QueryCheck

	lastReloadOK prometheus.Gauge
	lastReload   prometheus.Gauge
}

// NewRules ties a manager to the stored rules document.
func NewRules(m *Manager, st RuleStore, reg prometheus.Registerer, logger *slog.Logger) *Rules {
	if logger == nil {
		logger = slog.Default()
	}
	r := &Rules{manager: m, store: st, log: logger,
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "garrison_rules_last_reload_successful",
			Help: "Whether the last attempt to load autoscale rules succeeded."}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{Name: "garrison_rules_last_reload_success_timestamp_seconds",
			Help: "When autoscale rules were last loaded successfully."}),
	}
	if reg != nil {
		reg.MustRegister(r.lastReloadOK, r.lastReload)
	}
	return r
}

// Load applies the stored document, if any.
func (r *Rules) Load(ctx context.Context) error {
	rec, err := r.store.Rules(ctx)
	if err != nil {
		return err
	}
	if rec.Revision == 0 {
		return nil
	}
	// The stored document was accepted when it was put; a check added
	// since (a query that does not parse) must not take every app's rules
	// out of force at start: such a query costs its own app that metric.
	_, err = r.apply(ctx, rec.Data, "etcd", false)
	return err
}

// Put validates a document (YAML or JSON), stores it and puts it in force.
// The error is rulefmt.Errors when the document does not validate.
func (r *Rules) Put(ctx context.Context, data []byte, origin string) ([]rulefmt.Rule, error) {
	return r.apply(ctx, data, origin, true)
}

// Check validates a rules document with the settings Put uses, and stores
// and applies nothing: editors call it as the user types.
func (r *Rules) Check(data []byte, origin string) ([]rulefmt.Rule, error) {
	return rulefmt.ParseWith(data, origin, r.options(true))
}

// options are the settings documents are parsed with; checks: with the
// sources' query checks.
func (r *Rules) options(checks bool) rulefmt.Options {
	r.mu.Lock()
	defer r.mu.Unlock()
	opts := rulefmt.Options{MaxInstances: r.limit}
	if checks {
		opts.DefaultSource, opts.QueryChecks = r.defaultSource, r.checks
	}
	return opts
}

func (r *Rules) apply(ctx context.Context, data []byte, origin string, persist bool) ([]rulefmt.Rule, error) {
	rules, err := rulefmt.ParseWith(data, origin, r.options(persist))
	if err != nil {
		r.lastReloadOK.Set(0)
		return nil, err
	}
	if persist {
		if err := r.store.PutRules(ctx, data); err != nil {
			r.lastReloadOK.Set(0)
			return nil, err
		}
	}
	r.mu.Lock()
	r.doc = bytes.Clone(data)
	r.mu.Unlock()
	r.manager.SetRules(rules)
	r.lastReloadOK.Set(1)
	r.lastReload.SetToCurrentTime()
	r.log.Info("autoscale rules in force", "rules", len(rules), "from", origin)
	return rules, nil
}

// SetInstanceLimit bounds min, max and schedule floors of the rules put
// from now on by the per-app instance limit apps have (0: rulefmt's
// DefaultMaxInstances), so a rule cannot ask for more than an app may run.
func (r *Rules) SetInstanceLimit(n int) {
	r.mu.Lock()
	r.limit = n
	r.mu.Unlock()
}

// SetQueryChecks makes the documents put or checked from now on pass each
// source's own check of their queries (checks by source name; a metric
// without `sources:` is read from defaultSource): a query that does not
// parse is refused with its line and field, not an error every
// evaluation. The stored document loaded at start is not held to them.
func (r *Rules) SetQueryChecks(defaultSource string, checks map[string]rulefmt.QueryCheck) {
	r.mu.Lock()
	r.defaultSource, r.checks = defaultSource, checks
	r.mu.Unlock()
}

// Document is the document in force, as it was given.
func (r *Rules) Document() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.doc)
}

// WatchFile puts path in force now and whenever it changes, until ctx
// ends. A file that does not validate at start is an error; a bad edit
// later is logged and the rules in force stay.
func (r *Rules) WatchFile(ctx context.Context, path string, every time.Duration) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("rules file: %w", err)
	}
	if _, err := r.Put(ctx, data, path); err != nil {
		return err
	}
	last := data
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			r.lastReloadOK.Set(0)
			r.log.Warn("rules file unreadable; the rules in force stay", "file", path, "error", err)
			continue
		}
		if bytes.Equal(data, last) {
			continue
		}
		last = data
		if _, err := r.Put(ctx, data, path); err != nil {
			r.log.Warn("rules file invalid; the rules in force stay", "file", path, "error", err)
		}
	}
}
