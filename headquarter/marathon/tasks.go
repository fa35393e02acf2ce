package marathon

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/signalman/task"
)

// listTasks is GET /v2/tasks[?status=running|staging...]; status and
// status[] may repeat.
func (a *api) listTasks(c *gin.Context) (any, error) {
	want := map[string]bool{}
	for _, s := range append(c.QueryArray("status"), c.QueryArray("status[]")...) {
		for _, one := range strings.Split(s, ",") {
			if one = strings.TrimSpace(one); one == "" {
				continue
			}
			st := task.State("TASK_" + strings.ToUpper(strings.TrimPrefix(strings.ToLower(one), "task_")))
			if !slices.Contains(taskStates(), st) {
				// Marathon ignores what it does not know (and then lists
				// every task): a typo must not pass for a filter.
				return nil, badRequest("unknown status %q: give running or staging (Marathon's), or starting, killing, finished, failed, killed or lost", one)
			}
			want[string(st)] = true
		}
	}
	tasks := a.cfg.Scheduler.Tasks("")
	if len(want) > 0 {
		kept := tasks[:0]
		for _, t := range tasks {
			if want[t.State] {
				kept = append(kept, t)
			}
		}
		tasks = kept
	}
	return gin.H{"tasks": tasks}, nil
}

// taskStates are the states a task filter may name.
func taskStates() []task.State {
	return []task.State{task.Staging, task.Starting, task.Running, task.Killing, task.Finished, task.Failed, task.Killed, task.Lost}
}

// deleteTasks is POST /v2/tasks/delete {"ids":[...]}: kill tasks of any
// apps; with scale=true the apps shrink by the number killed (marathon-lb's
// zdd.py does this).
func (a *api) deleteTasks(c *gin.Context) (any, error) {
	scale, force, err := killOptions(c)
	if err != nil {
		return nil, err
	}
	body, err := a.body(c)
	if err != nil {
		return nil, err
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, &app.DecodeError{Details: []app.FieldError{{Path: "/ids", Errors: []string{"error.expected.jsarray"}}}}
		}
		return nil, &app.DecodeError{Syntax: err.Error()}
	}
	for _, id := range req.IDs {
		if _, err := app.AppIDFromTaskID(id); err != nil {
			return nil, badRequest("%s", err.Error())
		}
	}
	killed, res, err := a.cfg.Scheduler.KillTasks(c.Request.Context(), req.IDs, scale, force)
	if err != nil {
		return nil, err
	}
	if res != nil {
		return deployment(http.StatusOK, res), nil
	}
	return gin.H{"tasks": killed}, nil
}

// listDeployments is GET /v2/deployments; a finished deployment is gone
// from it, which go-marathon's WaitOnDeployment polls for.
func (a *api) listDeployments(*gin.Context) (any, error) {
	return a.cfg.Scheduler.Deployments(), nil
}

// cancelDeployment is DELETE /v2/deployments/{id}: force=false (default)
// rolls back with a new deployment (200 with its id); force=true only
// cancels (202, no body).
func (a *api) cancelDeployment(c *gin.Context) (any, error) {
	force, err := boolParam(c, "force", false)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Scheduler.CancelDeployment(c.Request.Context(), c.Param("id"), force)
	if err != nil {
		return nil, err
	}
	if force || res == nil {
		return &reply{status: http.StatusAccepted}, nil
	}
	return deployment(http.StatusOK, res), nil
}

type queueItem struct {
	App                    json.RawMessage `json:"app"`
	Count                  int             `json:"count"`
	Role                   string          `json:"role"`
	Delay                  queueDelay      `json:"delay"`
	Since                  string          `json:"since"`
	ProcessedOffersSummary offersSummary   `json:"processedOffersSummary"`
}

type queueDelay struct {
	TimeLeftSeconds int64 `json:"timeLeftSeconds"`
	Overdue         bool  `json:"overdue"`
}

// offersSummary is Marathon's processedOffersSummary. garrison places on
// its own machine without offers, so the counts stay zero.
type offersSummary struct {
	ProcessedOffersCount       int   `json:"processedOffersCount"`
	UnusedOffersCount          int   `json:"unusedOffersCount"`
	RejectSummaryLastOffers    []any `json:"rejectSummaryLastOffers"`
	RejectSummaryLaunchAttempt []any `json:"rejectSummaryLaunchAttempt"`
}

// queue is GET /v2/queue: apps with instances still to launch. overdue is
// true when an app waits for nothing but the next launch, false while it
// is in backoff.
func (a *api) queue(*gin.Context) (any, error) {
	entries := a.cfg.Scheduler.Queue()
	out := make([]queueItem, 0, len(entries))
	for _, e := range entries {
		def, err := rawJSON(e.App)
		if err != nil {
			return nil, err
		}
		since := e.Since
		if since.IsZero() {
			since = e.App.Version
		}
		out = append(out, queueItem{
			App: def, Count: e.Count, Role: "*",
			Delay: queueDelay{TimeLeftSeconds: int64(math.Ceil(e.Delay.Seconds())), Overdue: e.Delay <= 0},
			Since: app.FormatVersion(since),
			ProcessedOffersSummary: offersSummary{
				RejectSummaryLastOffers: []any{}, RejectSummaryLaunchAttempt: []any{}},
		})
	}
	return gin.H{"queue": out}, nil
}

// resetDelay is DELETE /v2/queue/{appId}/delay: 204, as Marathon's code
// answers (its RAML says 200).
func (a *api) resetDelay(c *gin.Context) (any, error) {
	p, ok := strings.CutSuffix(strings.TrimSuffix(c.Param("path"), "/"), "/delay")
	if !ok || strings.Trim(p, "/") == "" {
		return nil, notFound("HTTP 404 Not Found")
	}
	if err := a.cfg.Scheduler.ResetDelay(app.CanonicalID(p, "/")); err != nil {
		return nil, err
	}
	return &reply{status: http.StatusNoContent}, nil
}
