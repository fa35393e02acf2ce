package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/webhook"
)

// notify posts the ended run to the pipeline's notification URLs, signed
// per Standard Webhooks with the project's secret (webhook-id is
// "<run>.<state>", the same on every attempt). A receiver that fails is
// logged, never retried: a run's end does not wait on it.
func (r *Runner) notify(ctx context.Context, id string, p project.Project, to []pipeline.Notify) {
	if len(to) == 0 {
		return
	}
	x, err := r.cfg.Runs.Get(context.WithoutCancel(ctx), id)
	if err != nil {
		r.cfg.Logger.Warn("runner: notification", "run", id, "error", err)
		return
	}
	body, err := json.Marshal(map[string]any{"type": "run." + string(x.State), "run": x})
	if err != nil {
		return
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, n := range to {
		if !slices.Contains(n.On, string(x.State)) {
			continue
		}
		if len(n.Mail) > 0 {
			r.mail(ctx, x, n.Mail)
			continue
		}
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, n.URL, bytes.NewReader(body))
		if err != nil {
			continue
		}
		msgID := x.ID + "." + string(x.State)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", msgID)
		req.Header.Set("webhook-timestamp", ts)
		req.Header.Set("webhook-signature", webhook.SignStandard(p.Secret, msgID, ts, body))
		resp, err := hc.Do(req)
		if err != nil {
			r.cfg.Logger.Warn("runner: notification failed", "run", id, "url", n.URL, "error", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			r.cfg.Logger.Warn("runner: notification refused", "run", id, "url", n.URL, "status", resp.StatusCode)
		}
	}
}
