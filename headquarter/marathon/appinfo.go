package marathon

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// defCache keeps the JSON of app definitions. The scheduler never changes
// an *app.App it has handed out (a change stores a new one), so a cached
// encoding is valid as long as the pointer is the same; GET /v2/apps with
// many apps then costs little more than copying bytes.
type defCache struct {
	mu   sync.Mutex
	defs map[string]cachedDef // by app id
}

type cachedDef struct {
	app  *app.App
	json []byte
}

func (c *defCache) json(ap *app.App) ([]byte, error) {
	c.mu.Lock()
	d, ok := c.defs[ap.ID]
	c.mu.Unlock()
	if ok && d.app == ap {
		return d.json, nil
	}
	// MarshalJSON directly: json.Marshal would re-scan the output.
	b, err := ap.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode app %s: %w", ap.ID, err)
	}
	c.mu.Lock()
	if c.defs == nil {
		c.defs = map[string]cachedDef{}
	}
	c.defs[ap.ID] = cachedDef{app: ap, json: b}
	c.mu.Unlock()
	return b, nil
}

// prune forgets the apps that are gone, given every current app.
func (c *defCache) prune(live []*app.App) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.defs) <= len(live) {
		return
	}
	keep := make(map[string]bool, len(live))
	for _, ap := range live {
		keep[ap.ID] = true
	}
	for id := range c.defs {
		if !keep[id] {
			delete(c.defs, id)
		}
	}
}

// embeds says which status fields an AppInfo carries (§3.9).
type embeds struct {
	tasks, counts, deployments, lastTaskFailure, taskStats, readiness bool
}

// parseEmbeds reads the embed= values that start with prefix ("apps.",
// "app.", "group.apps."); others are ignored, as Marathon ignores unknown
// embeds. apps.failures is Marathon's deprecated shorthand for
// apps.lastTaskFailure.
func parseEmbeds(values []string, prefix string, base embeds) embeds {
	e := base
	for _, v := range values {
		for _, one := range strings.Split(v, ",") {
			name, ok := strings.CutPrefix(strings.TrimSpace(one), prefix)
			if !ok {
				continue
			}
			switch name {
			case "tasks":
				e.tasks = true
			case "counts":
				e.counts = true
			case "deployments":
				e.deployments = true
			case "lastTaskFailure", "failures":
				e.lastTaskFailure = true
			case "taskStats":
				e.taskStats = true
			case "readiness":
				e.readiness = true
			}
		}
	}
	return e
}

// appInfo writes an app with the status fields e asks for: the app's own
// JSON, then tasksStaged/Running/Healthy/Unhealthy, deployments, tasks,
// lastTaskFailure, taskStats and readinessCheckResults, as Marathon's
// AppInfo writer orders them. It splices bytes instead of re-encoding the
// app through a map, which keeps GET /v2/apps cheap with many apps.
func (a *api) appInfo(buf []byte, ap *app.App, e embeds) ([]byte, error) {
	b, err := a.defs.json(ap)
	if err != nil {
		return nil, err
	}
	buf = append(buf, b[:len(b)-1]...)
	s := a.cfg.Scheduler
	if e.counts {
		n := s.Counts(ap.ID)
		buf = append(buf, `,"tasksStaged":`...)
		buf = strconv.AppendInt(buf, int64(n.Staged), 10)
		buf = append(buf, `,"tasksRunning":`...)
		buf = strconv.AppendInt(buf, int64(n.Running), 10)
		buf = append(buf, `,"tasksHealthy":`...)
		buf = strconv.AppendInt(buf, int64(n.Healthy), 10)
		buf = append(buf, `,"tasksUnhealthy":`...)
		buf = strconv.AppendInt(buf, int64(n.Unhealthy), 10)
	}
	if e.deployments {
		buf = appendDeploymentRefs(append(buf, `,"deployments":`...), s.DeploymentsOf(ap.ID))
	}
	var tasks []scheduler.TaskInfo
	if e.tasks || e.taskStats {
		tasks = s.Tasks(ap.ID)
	}
	if e.tasks {
		tb, err := rawJSON(tasks)
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, `,"tasks":`...), tb...)
	}
	if e.lastTaskFailure {
		if f := s.LastFailure(ap.ID); f != nil {
			fb, err := rawJSON(f)
			if err != nil {
				return nil, err
			}
			buf = append(append(buf, `,"lastTaskFailure":`...), fb...)
		}
	}
	if e.taskStats {
		sb, err := rawJSON(taskStats(ap, tasks, a.cfg.Now()))
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, `,"taskStats":`...), sb...)
	}
	if e.readiness {
		// Readiness results exist only while a deployment checks them;
		// garrison's deployments gate on health, so there are none.
		buf = append(buf, `,"readinessCheckResults":[]`...)
	}
	return append(buf, '}'), nil
}

func appendDeploymentRefs(buf []byte, ids []string) []byte {
	buf = append(buf, '[')
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"id":`...)
		buf = strconv.AppendQuote(buf, id)
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// Task statistics (Marathon's TaskStatsByVersion): each category is left
// out when no task falls in it.
type taskStatsJSON struct {
	StartedAfterLastScaling *statsJSON `json:"startedAfterLastScaling,omitempty"`
	WithLatestConfig        *statsJSON `json:"withLatestConfig,omitempty"`
	WithOutdatedConfig      *statsJSON `json:"withOutdatedConfig,omitempty"`
	TotalSummary            *statsJSON `json:"totalSummary,omitempty"`
}

type statsJSON struct {
	Stats struct {
		Counts struct {
			Staged    int `json:"staged"`
			Running   int `json:"running"`
			Healthy   int `json:"healthy"`
			Unhealthy int `json:"unhealthy"`
		} `json:"counts"`
		LifeTime *lifeTimeJSON `json:"lifeTime,omitempty"`
	} `json:"stats"`
}

type lifeTimeJSON struct {
	AverageSeconds float64 `json:"averageSeconds"`
	MedianSeconds  float64 `json:"medianSeconds"`
}

func taskStats(ap *app.App, tasks []scheduler.TaskInfo, now time.Time) taskStatsJSON {
	var lastScaling, lastConfig string
	if vi := ap.VersionInfo; vi != nil {
		lastScaling, lastConfig = app.FormatVersion(vi.LastScalingAt), app.FormatVersion(vi.LastConfigChangeAt)
	}
	var afterScaling, latest, outdated []scheduler.TaskInfo
	for _, t := range tasks {
		// ISO-8601 with fixed millis: string order is time order.
		if t.StagedAt >= lastScaling {
			afterScaling = append(afterScaling, t)
		}
		if t.Version >= lastConfig {
			latest = append(latest, t)
		} else {
			outdated = append(outdated, t)
		}
	}
	return taskStatsJSON{
		StartedAfterLastScaling: stats(afterScaling, now),
		WithLatestConfig:        stats(latest, now),
		WithOutdatedConfig:      stats(outdated, now),
		TotalSummary:            stats(tasks, now),
	}
}

func stats(tasks []scheduler.TaskInfo, now time.Time) *statsJSON {
	if len(tasks) == 0 {
		return nil
	}
	out := &statsJSON{}
	c := &out.Stats.Counts
	var lives []float64
	for _, t := range tasks {
		switch t.State {
		case "TASK_STAGING", "TASK_STARTING":
			c.Staged++
		case "TASK_RUNNING":
			c.Running++
		}
		if len(t.HealthCheckResults) > 0 {
			alive := true
			for _, r := range t.HealthCheckResults {
				alive = alive && r.Alive
			}
			if alive {
				c.Healthy++
			} else {
				c.Unhealthy++
			}
		}
		if started, err := app.ParseVersion(t.StartedAt); err == nil && t.StartedAt != "" {
			lives = append(lives, now.Sub(started).Seconds())
		}
	}
	if len(lives) > 0 {
		slices.Sort(lives)
		sum := 0.0
		for _, l := range lives {
			sum += l
		}
		median := lives[len(lives)/2]
		if len(lives)%2 == 0 {
			median = (lives[len(lives)/2-1] + median) / 2
		}
		out.Stats.LifeTime = &lifeTimeJSON{AverageSeconds: sum / float64(len(lives)), MedianSeconds: median}
	}
	return out
}
