package runner

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/images"
)

// release deploys the run's alpha, runs the test steps against it,
// destroys it, records the release with the results and, when they all
// passed, promotes it through the environments marked auto.
func (r *Runner) release(ctx context.Context, x *run.Run, p project.Project, pl *pipeline.Pipeline, prod images.Product, image, ws string, log io.Writer) (run.State, string) {
	rel := deploy.Release{
		App: pl.App, Version: prod.Version, Image: image, Revision: prod.Revision, Committer: prod.Committer,
		Project: p.Name, RunID: x.ID, Created: time.Now().UTC(), Definition: pl.Deploy, Tests: []deploy.TestResult{},
	}
	for _, e := range pl.Environments {
		rel.Environments = append(rel.Environments, e.Name)
		if e.Approval {
			rel.NeedsApproval = append(rel.NeedsApproval, e.Name)
		}
	}
	alpha := deploy.AlphaID(x.ID, pl.App)
	destroy := func() {
		// Also when the run was cancelled: alpha never outlives its run.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := r.cfg.Releases.Destroy(dctx, alpha); err != nil {
			fmt.Fprintf(log, "*** alpha: destroying %s failed: %v\n", alpha, err)
			r.cfg.Logger.Error("runner: alpha left behind", "run", x.ID, "app", alpha, "error", err)
			return
		}
		fmt.Fprintf(log, "*** alpha: %s destroyed\n", alpha)
	}
	ep, err := r.cfg.Releases.DeployAlpha(ctx, alpha, pl.Deploy, image, log)
	if err != nil {
		destroy()
		return run.Failed, "alpha deployment: " + err.Error()
	}
	host, port, _ := net.SplitHostPort(ep)
	extra := map[string]string{"ALPHA_URL": "http://" + ep, "ALPHA_HOST": host, "ALPHA_PORT": port, "ALPHA_APP": alpha}
	rel.Passed = true
	failed := ""
	for _, t := range pl.Tests {
		code, err := r.step(ctx, x, p, t, ws, extra, log)
		res := deploy.TestResult{Name: t.Name, ExitCode: code, Passed: err == nil && code == 0}
		if err != nil {
			res.Error = err.Error()
		}
		rel.Tests = append(rel.Tests, res)
		if !res.Passed {
			rel.Passed = false
			if failed == "" {
				failed = fmt.Sprintf("test %s exited with code %d", t.Name, code)
				if err != nil {
					failed = fmt.Sprintf("test %s: %v", t.Name, err)
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	destroy()
	if ctx.Err() != nil {
		return run.Failed, "stopped during the tests"
	}
	if err := r.cfg.Releases.Record(context.WithoutCancel(ctx), rel); err != nil {
		return run.Failed, "recording the release: " + err.Error()
	}
	fmt.Fprintf(log, "*** release %s of %s recorded (tests passed: %v)\n", rel.Version, rel.App, rel.Passed)
	if !rel.Passed {
		return run.Failed, failed
	}
	for _, e := range pl.Environments {
		if e.Name == "alpha" {
			continue
		}
		if !e.Auto || e.Approval {
			// An environment needing an approval waits for it, auto or not.
			break
		}
		if err := r.cfg.Releases.Promote(ctx, rel.App, rel.Version, e.Name, "pipeline "+x.ID, log); err != nil {
			return run.Failed, fmt.Sprintf("promotion to %s: %v", e.Name, err)
		}
		fmt.Fprintf(log, "*** promoted %s to %s\n", rel.Version, e.Name)
	}
	return run.Passed, ""
}
