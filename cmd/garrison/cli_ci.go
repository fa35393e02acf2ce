package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/client"
)

var runStates = []string{"queued", "running", "passed", "failed", "cancelled"}

func (x *cli) runsCommand() *cobra.Command {
	var project, state string
	cmd := &cobra.Command{
		Use:     "runs [--project P] [--state S]",
		Aliases: []string{"run"},
		Short:   "list pipeline runs (newest first); show, follow the log of or cancel one",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("%s: unknown command %q (want show, log or cancel)", cmdName(cmd), args[0])}
			}
			return nil
		},
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			runs, err := c.Runs(cmd.Context(), project, state)
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printList(len(runs), func(i int) json.RawMessage { return runs[i].Raw })
			}
			now := time.Now()
			t := newTable(x.stdout, "ID", "PROJECT", "STATE", "REF", "REVISION", "COMMITTER", "AGE", "DURATION")
			for i := range runs {
				r := &runs[i]
				t.row(r.ID, r.Project, runState(r), strings.TrimPrefix(r.Push.Ref, "refs/heads/"), short(r.Push.After),
					orDash(r.Push.Committer.Name), age(r.Created, now), runDuration(r, now))
			}
			return t.flush()
		}),
	}
	cmd.Flags().StringVar(&project, "project", "", "only this project's runs")
	cmd.Flags().StringVar(&state, "state", "", "only runs in this state: "+strings.Join(runStates, ", "))
	cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(runStates, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("project", x.completeProjects)
	cmd.AddCommand(x.runsShow(), x.runsLog(), x.runsCancel())
	return cmd
}

// runState is the state column: a cancel asked of a live run shows.
func runState(r *client.Run) string {
	if r.CancelRequested && !r.Final() {
		return r.State + " (cancelling)"
	}
	return r.State
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return orDash(rev)
}

// runDuration is how long the run ran (runs so far while it runs).
func runDuration(r *client.Run, now time.Time) string {
	start, err := time.Parse(time.RFC3339Nano, r.Started)
	if err != nil {
		return "-"
	}
	end := now
	if f, err := time.Parse(time.RFC3339Nano, r.Finished); err == nil {
		end = f
	}
	return end.Sub(start).Round(time.Second).String()
}

// completeRuns completes run ids, only the live ones when live is set.
func (x *cli) completeRuns(live bool) cobra.CompletionFunc {
	return x.completeFirst(false, func(ctx context.Context, c *client.Client) ([]string, error) {
		runs, err := c.Runs(ctx, "", "")
		var ids []string
		for _, r := range runs {
			if !live || !r.Final() {
				ids = append(ids, r.ID+"\t"+r.State)
			}
		}
		return ids, err
	})
}

// completeProjects completes --project with the projects garrison knows.
func (x *cli) completeProjects(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return x.completeFirst(true, func(ctx context.Context, c *client.Client) ([]string, error) {
		var out struct {
			Projects []struct {
				Name string `json:"name"`
			} `json:"projects"`
		}
		resp, err := c.Do(ctx, "GET", "/api/v1/projects", nil, nil)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(resp.Body, &out); err != nil {
			return nil, err
		}
		names := make([]string, len(out.Projects))
		for i, p := range out.Projects {
			names[i] = p.Name
		}
		return names, nil
	})(cmd, args, prefix)
}

func (x *cli) runsShow() *cobra.Command {
	return &cobra.Command{
		Use:               "show ID",
		Aliases:           []string{"get"},
		Short:             "show a run: its push, state, steps and product",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeRuns(false),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			r, err := c.Run(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printData(true, r.Raw)
			}
			now := time.Now()
			kv := newTable(x.stdout, "ID", r.ID)
			kv.row("PROJECT", r.Project)
			kv.row("STATE", runState(r))
			if r.Reason != "" {
				kv.row("REASON", r.Reason)
			}
			kv.row("REF", orDash(r.Push.Ref))
			kv.row("REVISION", orDash(r.Push.After))
			if n := r.Push.Committer.Name; n != "" {
				kv.row("COMMITTER", strings.TrimSpace(n+" <"+r.Push.Committer.Email+">"))
			}
			kv.row("CREATED", age(r.Created, now)+" ago")
			kv.row("DURATION", runDuration(r, now))
			if r.Node != "" {
				kv.row("NODE", r.Node)
			}
			if r.Version != "" {
				kv.row("VERSION", r.Version)
			}
			if r.Image != "" {
				kv.row("IMAGE", r.Image)
			}
			if err := kv.flush(); err != nil {
				return err
			}
			if len(r.Steps) == 0 {
				return nil
			}
			fmt.Fprintln(x.stdout)
			t := newTable(x.stdout, "STEP", "STATE", "EXIT", "DURATION")
			for _, s := range r.Steps {
				exit := "-"
				if s.ExitCode != nil {
					exit = fmt.Sprint(*s.ExitCode)
				}
				t.row(s.Name, s.State, exit, runDuration(&client.Run{Started: s.Started, Finished: s.Finished}, now))
			}
			return t.flush()
		}),
	}
}

func (x *cli) runsLog() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "log ID",
		Short: "print a run's log; --follow keeps printing until the run ends",
		Long: `log prints what a run's steps wrote so far. With --follow (-f) it then
prints what they add until the run ends; its exit status is 1 when the run
did not pass.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeRuns(false),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			ctx := cmd.Context()
			if err := c.RunLog(ctx, args[0], follow, x.stdout); err != nil {
				return err
			}
			if !follow || ctx.Err() != nil {
				return nil
			}
			r, err := c.Run(ctx, args[0])
			if err != nil {
				return err
			}
			if r.State != "passed" {
				reason := ""
				if r.Reason != "" {
					reason = ": " + r.Reason
				}
				return fmt.Errorf("run %s %s%s", r.ID, r.State, reason)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the run ends")
	return cmd
}

func (x *cli) runsCancel() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:               "cancel ID",
		Short:             "cancel a queued or running run",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeRuns(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := x.confirm(yes, "cancel run "+args[0]); err != nil {
				return err
			}
			c, err := x.client()
			if err != nil {
				return err
			}
			r, err := c.CancelRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printData(true, r.Raw)
			}
			fmt.Fprintf(x.stdout, "cancelling %s (was %s)\n", r.ID, r.State)
			return nil
		},
	}
	yesFlag(cmd, &yes)
	return cmd
}

func (x *cli) releasesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "releases APP",
		Aliases: []string{"release"},
		Short:   "an app's releases and what each environment runs; promote or roll back one",
		Long: `releases lists an app's releases, newest first: the revision and committer each
was built from, its test results and the environments running it. Then each
environment with the release it runs and the one a rollback would restore.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			rs, err := c.Releases(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printData(true, rs.Raw)
			}
			return x.releasesTable(rs, time.Now())
		}),
	}
	cmd.AddCommand(x.releasesChange(true), x.releasesChange(false), x.releasesApprove())
	return cmd
}

func (x *cli) releasesTable(rs *client.Releases, now time.Time) error {
	running := map[string][]string{}
	for _, e := range rs.Environments {
		if e.Current != "" {
			running[e.Current] = append(running[e.Current], e.Name)
		}
	}
	t := newTable(x.stdout, "VERSION", "REVISION", "COMMITTER", "TESTS", "APPROVALS", "RUNS IN", "RUN", "AGE")
	for _, r := range rs.Releases {
		t.row(r.Version, short(r.Revision), orDash(r.Committer), testSummary(&r), approvalSummary(&r),
			orDash(strings.Join(running[r.Version], ",")), orDash(r.RunID), age(r.Created, now))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(rs.Environments) == 0 {
		return nil
	}
	fmt.Fprintln(x.stdout)
	t = newTable(x.stdout, "ENVIRONMENT", "APP", "CURRENT", "PREVIOUS", "DEPLOYED", "BY")
	for _, e := range rs.Environments {
		prev, at, by := "-", "-", "-"
		for i := len(e.History) - 1; i >= 0; i-- {
			if e.History[i].Version != e.Current {
				prev = e.History[i].Version
				break
			}
		}
		if n := len(e.History); n > 0 {
			at, by = age(e.History[n-1].At, now)+" ago", e.History[n-1].By
			if e.History[n-1].Rollback {
				by += " (rollback)"
			}
			if a := e.History[n-1].ApprovedBy; a != "" {
				by += ", approved by " + a
			}
		}
		t.row(e.Name, e.App, orDash(e.Current), prev, at, by)
	}
	return t.flush()
}

// approvalSummary is "production: lin" per environment needing an
// approval, or "production: needed".
func approvalSummary(r *client.Release) string {
	var out []string
	for _, env := range r.NeedsApproval {
		if by := r.ApprovedBy(env); by != "" {
			out = append(out, env+": "+by)
		} else {
			out = append(out, env+": needed")
		}
	}
	return orDash(strings.Join(out, ","))
}

// testSummary is "passed 2/2" or "FAILED 1/2: name".
func testSummary(r *client.Release) string {
	if len(r.Tests) == 0 {
		if r.Passed {
			return "passed"
		}
		return "FAILED"
	}
	ok := 0
	var failed []string
	for _, t := range r.Tests {
		if t.Passed {
			ok++
		} else {
			failed = append(failed, t.Name)
		}
	}
	if len(failed) == 0 && r.Passed {
		return fmt.Sprintf("passed %d/%d", ok, len(r.Tests))
	}
	s := fmt.Sprintf("FAILED %d/%d", ok, len(r.Tests))
	if len(failed) > 0 {
		s += ": " + strings.Join(failed, ",")
	}
	return s
}

// completeRelease completes APP, then (promote) VERSION and ENVIRONMENT
// or (rollback) ENVIRONMENT and VERSION from the app's releases.
func (x *cli) completeRelease(promote bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return x.completeApps(cmd, args, prefix)
		}
		c, err := x.client()
		if err != nil || len(args) > 2 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
		defer cancel()
		rs, err := c.Releases(ctx, args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		add := func(v, desc string) {
			if strings.HasPrefix(v, prefix) && !slices.ContainsFunc(out, func(o string) bool { return strings.HasPrefix(o, v+"\t") }) {
				out = append(out, v+"\t"+desc)
			}
		}
		versions := len(args) == 1 && promote || len(args) == 2 && !promote
		for _, r := range rs.Releases {
			switch {
			case versions:
				add(r.Version, short(r.Revision)+" "+testSummary(&r))
			case promote:
				if r.Version == args[1] {
					for _, env := range r.Environments {
						if env != "alpha" {
							add(env, "environment")
						}
					}
				}
			}
		}
		if !promote && len(args) == 1 {
			for _, e := range rs.Environments {
				add(e.Name, "runs "+orDash(e.Current))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// releasesChange is `releases promote APP VERSION ENV` or `releases
// rollback APP ENV [VERSION]`.
func (x *cli) releasesChange(promote bool) *cobra.Command {
	var yes bool
	var by string
	cmd := &cobra.Command{
		Use:               "promote APP VERSION ENVIRONMENT",
		Short:             "deploy a release that passed its tests to an environment (after the one before it)",
		Args:              usageArgs(cobra.ExactArgs(3)),
		ValidArgsFunction: x.completeRelease(promote),
	}
	if !promote {
		cmd.Use = "rollback APP ENVIRONMENT [VERSION]"
		cmd.Short = "deploy to an environment the release it ran before (or VERSION, which it ran)"
		cmd.Args = usageArgs(cobra.RangeArgs(2, 3))
		cmd.ValidArgsFunction = x.completeRelease(false)
	}
	var approve bool
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ch := client.ReleaseChange{App: args[0], By: by, Approve: approve}
		what := ""
		if promote {
			ch.Version, ch.Environment = args[1], args[2]
			what = fmt.Sprintf("promote %s of %s to %s", ch.Version, ch.App, ch.Environment)
			if approve {
				what = "approve and " + what
			}
		} else {
			ch.Environment = args[1]
			if len(args) == 3 {
				ch.Version = args[2]
			}
			what = fmt.Sprintf("roll %s of %s back", ch.Environment, ch.App)
			if ch.Version != "" {
				what += " to " + ch.Version
			}
		}
		c, err := x.releaseClient(yes, what, &ch)
		if err != nil {
			return err
		}
		call := c.Promote
		if !promote {
			call = c.RollbackRelease
		}
		out, err := call(cmd.Context(), ch)
		if err != nil {
			return err
		}
		if x.structured() {
			return x.printValue(out)
		}
		fmt.Fprintf(x.stdout, "%s now runs %s of %s\n", out.Environment, out.Version, out.App)
		return nil
	}
	yesFlag(cmd, &yes)
	cmd.Flags().StringVar(&by, "by", "", "who asks, recorded in the environment's history (default: $USER; with credentials, their user)")
	if promote {
		cmd.Flags().BoolVar(&approve, "approve", false, "approve the release for the environment first (as `releases approve`)")
	}
	return cmd
}

// releaseClient asks for confirmation of what, names the caller ($USER
// when --by is not given: only an API without credentials takes it) and
// returns the client.
func (x *cli) releaseClient(yes bool, what string, ch *client.ReleaseChange) (*client.Client, error) {
	if err := x.confirm(yes, what); err != nil {
		return nil, err
	}
	if ch.By == "" {
		ch.By = os.Getenv("USER")
	}
	return x.client()
}

// releasesApprove is `releases approve APP VERSION ENVIRONMENT`: the
// caller's approval, which the committer cannot give.
func (x *cli) releasesApprove() *cobra.Command {
	var yes bool
	var by string
	cmd := &cobra.Command{
		Use:   "approve APP VERSION ENVIRONMENT",
		Short: "approve a release for an environment marked approval: true (by a user other than its committer)",
		Long: `approve records the caller's approval of a release for an environment that
needs one. The caller is the user of --user (or the token's identity); the
committer of the release is refused.`,
		Args:              usageArgs(cobra.ExactArgs(3)),
		ValidArgsFunction: x.completeRelease(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch := client.ReleaseChange{App: args[0], Version: args[1], Environment: args[2], By: by}
			c, err := x.releaseClient(yes, fmt.Sprintf("approve %s of %s for %s", ch.Version, ch.App, ch.Environment), &ch)
			if err != nil {
				return err
			}
			r, err := c.Approve(cmd.Context(), ch)
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printValue(r)
			}
			fmt.Fprintf(x.stdout, "%s of %s approved for %s by %s\n", r.Version, r.App, ch.Environment, r.ApprovedBy(ch.Environment))
			return nil
		},
	}
	yesFlag(cmd, &yes)
	cmd.Flags().StringVar(&by, "by", "", "who approves, on an API without credentials (default: $USER; with credentials, their user)")
	return cmd
}

func (x *cli) evaluationsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "evaluations [APP]",
		Aliases: []string{"evals"},
		Short:   "the autoscaler's last evaluation of each rule: what it decided and why (or why not)",
		Long: `evaluations shows, for each autoscaling rule, the autoscaler's last look at its
app: the count it wanted and why, and whether it acted or what held it back
(cooldown, bounds, a deployment in progress, a paused or dry-run rule). A rule
whose app does not exist yet has no evaluation.`,
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			app := optionalArg(args)
			evals, err := c.Evaluations(cmd.Context(), app)
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printList(len(evals), func(i int) json.RawMessage { return evals[i].Raw })
			}
			t := newTable(x.stdout, decisionHeaders...)
			for i := range evals {
				t.row(decisionCells(&evals[i].Decision)...)
			}
			return t.flush()
		}),
	}
}
