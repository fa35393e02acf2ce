package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/scout/elasticsearch"
	"github.com/garrisonhq/garrison/scout/local"
	scoutprom "github.com/garrisonhq/garrison/scout/prometheus"
	"github.com/garrisonhq/garrison/scout/runners"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/marathon"
)

type autoscaleSettings struct {
	rules          string
	interval       time.Duration
	source         string
	prometheus     string
	esAddresses    string
	esIndex        string
	esServiceField string
	esTimeField    string
	marathon       string
	marathonToken  string
}

func (s *autoscaleSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.rules, "rules", "", "autoscale rules file (YAML), watched for changes; rules can also be PUT to /api/v1/rules")
	fs.DurationVar(&s.interval, "autoscale-interval", autoscale.DefaultInterval, "how often every autoscale rule is evaluated (with the local source, also the window of a scale-up's rates)")
	fs.StringVar(&s.source, "metrics-source", "", "default metric source of rules: local, prometheus or elasticsearch (default: prometheus when --prometheus is set, else local)")
	fs.StringVar(&s.prometheus, "prometheus", "", "URL of a Prometheus server to read QPS, CPU and memory from, e.g. http://127.0.0.1:9090")
	fs.StringVar(&s.esAddresses, "elasticsearch", "", "comma-separated Elasticsearch URLs to count access-log documents in for QPS")
	fs.StringVar(&s.esIndex, "es-index", "nginx-access-*", "Elasticsearch index pattern of the access logs")
	fs.StringVar(&s.esServiceField, "es-service-field", elasticsearch.DefaultServiceField, "access-log field naming the service (a keyword field)")
	fs.StringVar(&s.esTimeField, "es-time-field", elasticsearch.DefaultTimeField, "access-log time field")
	fs.StringVar(&s.marathon, "marathon", "", "scale the apps of this external Marathon (URL) instead of garrison's own")
	fs.StringVar(&s.marathonToken, "marathon-token", "", "token for the external Marathon's API")
}

// startAutoscaler wires scout's sources, the manager and the scale target,
// and runs the manager (and the rules file watch) until stop.
func startAutoscaler(ctx context.Context, s autoscaleSettings, hq *headquarter, cli *clientv3.Client, reg prometheus.Registerer, logger *slog.Logger) (*autoscaleService, func(), error) {
	logger = logger.With("component", "autoscaler")
	sources := map[string]sample.Source{}
	localSource, err := local.New(local.StatsFunc(hq.taskStats), cli)
	if err != nil {
		return nil, nil, fmt.Errorf("local metric source: %w", err)
	}
	sources["local"] = localSource
	sources["runners"] = runners.New(cli) // the pipeline's warm runner pool
	if s.prometheus != "" {
		src, err := scoutprom.New(s.prometheus, scoutprom.WithLogger(logger))
		if err != nil {
			return nil, nil, fmt.Errorf("--prometheus %s: %w", s.prometheus, err)
		}
		sources["prometheus"] = src
	}
	if s.esAddresses != "" {
		src, err := elasticsearch.New(elasticsearch.Config{Addresses: splitList(s.esAddresses), Index: s.esIndex,
			ServiceField: s.esServiceField, TimeField: s.esTimeField})
		if err != nil {
			return nil, nil, fmt.Errorf("--elasticsearch: %w", err)
		}
		sources["elasticsearch"] = src
	}
	if s.source == "" {
		s.source = "local"
		if s.prometheus != "" {
			s.source = "prometheus"
		}
	}
	if _, ok := sources[s.source]; !ok {
		return nil, nil, usageError{fmt.Sprintf("--metrics-source %q is not configured (have local%s)", s.source, map[bool]string{true: ", prometheus", false: ""}[s.prometheus != ""])}
	}

	target := autoscale.SchedulerTarget(hq.sched)
	if s.marathon != "" {
		var opts []marathon.Option
		if s.marathonToken != "" {
			opts = append(opts, marathon.WithToken(s.marathonToken))
		}
		client, err := marathon.New(s.marathon, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("--marathon %s: %w", s.marathon, err)
		}
		target = marathonTarget{client}
	}
	manager := autoscale.New(autoscale.Config{Target: target, Sources: sources, DefaultSource: s.source,
		Recorder: hq.store, Events: hq.bus, Interval: s.interval, Registerer: reg, Logger: logger})
	rules := autoscale.NewRules(manager, hq.store, reg, logger)
	// A rule may not ask for more instances than an app may have.
	rules.SetInstanceLimit(hq.env.MaxInstances)
	rules.SetQueryChecks(s.source, queryChecks)
	if err := rules.Load(ctx); err != nil {
		logger.Warn("stored autoscale rules not loaded", "error", err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 2)
	running := 1
	if s.rules != "" {
		// The file must be valid at start: a typo should stop garrison, not
		// run it without the rules the operator meant.
		data, err := os.ReadFile(s.rules)
		if err == nil {
			_, err = rules.Put(ctx, data, s.rules)
		}
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("rules file: %w", err)
		}
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := rules.WatchFile(runCtx, s.rules, 2*time.Second); err != nil {
				logger.Error("rules file watch stopped", "error", err)
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		manager.Run(runCtx)
	}()
	logger.Info("autoscaler running", "interval", s.interval, "default_source", s.source, "rules", len(manager.Rules()))
	stop := func() {
		cancel()
		for range running {
			<-done
		}
	}
	return &autoscaleService{rules: rules, manager: manager, store: hq.store}, stop, nil
}

// queryChecks are the sources' offline checks of a rule's queries: PromQL
// is parsed whether or not --prometheus is set (a rule naming the source
// still holds a query meant for it).
var queryChecks = map[string]rulefmt.QueryCheck{"prometheus": scoutprom.CheckSyntax}

// autoscaleService is what the rules and decisions routes use.
type autoscaleService struct {
	rules   *autoscale.Rules
	manager *autoscale.Manager
	store   *store.Store
}

func (a *autoscaleService) Document() []byte { return a.rules.Document() }

func (a *autoscaleService) Rules() []rulefmt.Rule { return a.manager.Rules() }

func (a *autoscaleService) Put(ctx context.Context, data []byte, origin string) ([]rulefmt.Rule, error) {
	return a.rules.Put(ctx, data, origin)
}

func (a *autoscaleService) Check(data []byte, origin string) ([]rulefmt.Rule, error) {
	return a.rules.Check(data, origin)
}

func (a *autoscaleService) Evaluations(app string) any { return a.manager.Evaluations(app) }

func (a *autoscaleService) Decisions(ctx context.Context, app string, limit int) ([]json.RawMessage, error) {
	recs, err := a.store.Decisions(ctx, app, limit)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Data)
	}
	return out, nil
}

// marathonTarget scales the apps of an external Marathon, as the origin
// design's Signalman did.
type marathonTarget struct{ c *marathon.Client }

func (t marathonTarget) Status(ctx context.Context, appID string) (autoscale.AppStatus, bool, error) {
	st, err := t.c.Status(ctx, appID)
	if errors.Is(err, marathon.ErrAppNotFound) {
		return autoscale.AppStatus{}, false, nil
	}
	if err != nil {
		return autoscale.AppStatus{}, false, err
	}
	ready := st.TasksHealthy
	if ready == 0 && st.TasksUnhealthy == 0 {
		ready = st.TasksRunning // an app without health checks
	}
	return autoscale.AppStatus{Instances: st.Instances, Ready: ready, Deployment: st.DeploymentInProgress()}, true, nil
}

func (t marathonTarget) Scale(ctx context.Context, appID string, n int, reason string) error {
	res, err := t.c.Scale(ctx, appID, n, reason)
	if err != nil {
		return err
	}
	if res.Outcome == marathon.NoOp {
		return fmt.Errorf("%w: %v", autoscale.ErrNotNow, res.Cause)
	}
	return nil
}

// taskStats reads a task's usage from whichever driver runs it.
func (hq *headquarter) taskStats(ctx context.Context, taskID string) (local.Usage, error) {
	if hq.dockerDriver != nil {
		u, err := hq.dockerDriver.Stats(ctx, taskID)
		if err == nil {
			return local.Usage(u), nil
		}
		if !errors.Is(err, docker.ErrUnknownTask) {
			return local.Usage{}, err
		}
	}
	u, err := hq.proc.Stats(ctx, taskID)
	return local.Usage(u), err
}
