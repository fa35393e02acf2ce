package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/client"
)

func (x *cli) appsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "apps",
		Aliases: []string{"app"},
		Short:   "list, show, create, change and remove apps",
	})
	cmd.AddCommand(x.appsLs(), x.appsShow(), x.appsCreate(), x.appsApply(), x.appsScale(),
		x.appsRestart(), x.appsRollback(), x.appsRm())
	return cmd
}

// completeApps completes the first argument with app ids.
func (x *cli) completeApps(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return x.completeFirst(false, func(ctx context.Context, c *client.Client) ([]string, error) {
		apps, err := c.Apps(ctx)
		ids := make([]string, len(apps))
		for i, a := range apps {
			ids[i] = a.ID
		}
		return ids, err
	})(cmd, args, prefix)
}

// statusOf is Marathon UI's status column.
func statusOf(a *client.App) string {
	switch {
	case len(a.Deployments) > 0:
		return "Deploying"
	case a.Instances == 0:
		return "Suspended"
	case a.TasksRunning < a.Instances:
		return "Waiting"
	}
	return "Running"
}

func (x *cli) appsLs() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list apps with their task counts",
		Args:    usageArgs(cobra.NoArgs),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if x.structured() {
				raw, err := c.AppsJSON(cmd.Context())
				if err != nil {
					return err
				}
				return x.printData(false, raw...)
			}
			apps, err := c.Apps(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			headers := []string{"ID", "STATUS", "RUNNING", "HEALTHY", "STAGED", "CPUS", "MEM", "UPDATED"}
			if x.wide() {
				headers = append(headers, "UNHEALTHY", "IMAGE/COMMAND", "DEPLOYMENTS", "VERSION")
			}
			t := newTable(x.stdout, headers...)
			for i := range apps {
				a := &apps[i]
				cells := []string{a.ID, statusOf(a), fmt.Sprintf("%d/%d", a.TasksRunning, a.Instances),
					strconv.Itoa(a.TasksHealthy), strconv.Itoa(a.TasksStaged),
					strconv.FormatFloat(a.CPUs, 'g', -1, 64), strconv.FormatFloat(a.Mem, 'g', -1, 64),
					age(a.Version, now)}
				if x.wide() {
					what := a.Image()
					if what == "" {
						what = a.Cmd
					}
					deps := make([]string, len(a.Deployments))
					for j, d := range a.Deployments {
						deps[j] = d.ID
					}
					cells = append(cells, strconv.Itoa(a.TasksUnhealthy), orDash(what), orDash(strings.Join(deps, ",")), a.Version)
				}
				t.row(cells...)
			}
			return t.flush()
		}),
	}
}

func (x *cli) appsShow() *cobra.Command {
	return &cobra.Command{
		Use:               "show APP",
		Aliases:           []string{"get", "status"},
		Short:             "show an app: definition summary, tasks, deployments, last failure, versions",
		Example:           "  garrison apps show /demo/echo\n  garrison apps show /demo/echo -o json",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			a, err := c.App(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printData(true, a.Raw)
			}
			versions, err := c.AppVersions(cmd.Context(), a.ID)
			if err != nil {
				return err
			}
			return x.showApp(a, versions, time.Now())
		}),
	}
}

func (x *cli) showApp(a *client.App, versions []string, now time.Time) error {
	kv := newTable(x.stdout, "ID", a.ID)
	kv.row("STATUS", statusOf(a))
	if img := a.Image(); img != "" {
		kv.row("IMAGE", img)
	}
	if a.Cmd != "" {
		kv.row("COMMAND", a.Cmd)
	}
	kv.row("INSTANCES", fmt.Sprintf("%d (running %d, healthy %d, unhealthy %d, staged %d)",
		a.Instances, a.TasksRunning, a.TasksHealthy, a.TasksUnhealthy, a.TasksStaged))
	kv.row("RESOURCES", fmt.Sprintf("cpus %g, mem %g MiB", a.CPUs, a.Mem))
	kv.row("VERSION", fmt.Sprintf("%s (%s ago)", a.Version, age(a.Version, now)))
	if len(a.Deployments) > 0 {
		ids := make([]string, len(a.Deployments))
		for i, d := range a.Deployments {
			ids[i] = d.ID
		}
		kv.row("DEPLOYMENTS", strings.Join(ids, ", "))
	}
	if f := a.LastTaskFailure; f != nil {
		kv.row("LAST FAILURE", fmt.Sprintf("%s %s %q (%s ago)", f.State, f.TaskID, f.Message, age(f.Timestamp, now)))
	}
	if err := kv.flush(); err != nil {
		return err
	}
	fmt.Fprintln(x.stdout)
	if err := x.taskTable(a.Tasks, false, now); err != nil {
		return err
	}
	fmt.Fprintln(x.stdout)
	vt := newTable(x.stdout, "VERSION", "AGE")
	for i, v := range versions {
		if i == 5 {
			vt.row(fmt.Sprintf("(%d older)", len(versions)-5), "")
			break
		}
		vt.row(v, age(v, now))
	}
	return vt.flush()
}

func (x *cli) appsCreate() *cobra.Command {
	var file string
	var wf waitFlags
	cmd := &cobra.Command{
		Use:     "create -f FILE",
		Short:   "create an app from a JSON or YAML definition (- for stdin)",
		Example: "  garrison apps create -f echo.json --wait\n  cat echo.yaml | garrison apps create -f -",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			def, err := x.readDefinition(file)
			if err != nil {
				return err
			}
			var head struct {
				ID string `json:"id"`
			}
			if def[0] == '[' {
				return usageError{"apps create takes one app; `garrison apps apply -f` takes a list"}
			}
			json.Unmarshal(def, &head)
			return x.deploy(cmd.Context(), wf, "created "+head.ID, []string{head.ID}, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.CreateApp(ctx, def)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the app definition (JSON or YAML; - reads stdin)")
	wf.register(cmd)
	return cmd
}

func (x *cli) appsApply() *cobra.Command {
	var file string
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "create or replace apps from a definition: one app, or a list deployed together",
		Long: `apply makes each app in FILE what FILE says (a PUT with partialUpdate=false):
a missing app is created, an existing one replaced; fields left out take their
defaults. FILE holds one app or a JSON/YAML list of apps; - reads stdin.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			def, err := x.readDefinition(file)
			if err != nil {
				return err
			}
			if def[0] == '[' {
				var heads []struct {
					ID string `json:"id"`
				}
				json.Unmarshal(def, &heads)
				ids := make([]string, len(heads))
				for i, h := range heads {
					ids[i] = h.ID
				}
				return x.deploy(cmd.Context(), wf, "applied "+strings.Join(ids, ", "), ids, func(ctx context.Context, c *client.Client) (*client.Written, error) {
					return c.PutApps(ctx, def, wf.force)
				})
			}
			var head struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(def, &head) != nil || head.ID == "" {
				// The API says which field is missing, with its path.
				return x.deploy(cmd.Context(), wf, "applied", nil, func(ctx context.Context, c *client.Client) (*client.Written, error) {
					return c.PutApps(ctx, append(append([]byte{'['}, def...), ']'), wf.force)
				})
			}
			return x.deploy(cmd.Context(), wf, "applied "+head.ID, []string{head.ID}, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.PutApp(ctx, head.ID, def, wf.force)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the app definition(s) (JSON or YAML; - reads stdin)")
	wf.register(cmd)
	return cmd
}

func (x *cli) appsScale() *cobra.Command {
	var wf waitFlags
	cmd := &cobra.Command{
		Use:               "scale APP N",
		Short:             "set an app's instance count",
		Example:           "  garrison apps scale /demo/echo 4 --wait",
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: x.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return usageError{fmt.Sprintf("apps scale: instance count %q: want a whole number >= 0", args[1])}
			}
			return x.deploy(cmd.Context(), wf, fmt.Sprintf("scaled %s to %d", args[0], n), args[:1], func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.ScaleApp(ctx, args[0], n, wf.force)
			})
		},
	}
	wf.register(cmd)
	return cmd
}

func (x *cli) appsRestart() *cobra.Command {
	var wf waitFlags
	cmd := &cobra.Command{
		Use:               "restart APP",
		Short:             "replace every task of an app, rolling",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			return x.deploy(cmd.Context(), wf, "restarting "+args[0], args, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.RestartApp(ctx, args[0], wf.force)
			})
		},
	}
	wf.register(cmd)
	return cmd
}

func (x *cli) appsRollback() *cobra.Command {
	var wf waitFlags
	cmd := &cobra.Command{
		Use:               "rollback APP VERSION",
		Short:             "deploy a stored version of an app (see `apps show APP`)",
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: x.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			return x.deploy(cmd.Context(), wf, fmt.Sprintf("rolling %s back to %s", args[0], args[1]), args[:1], func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.RollbackApp(ctx, args[0], args[1], wf.force)
			})
		},
	}
	wf.register(cmd)
	return cmd
}

func (x *cli) appsRm() *cobra.Command {
	var wf waitFlags
	var yes bool
	cmd := &cobra.Command{
		Use:               "rm APP",
		Aliases:           []string{"delete", "destroy"},
		Short:             "remove an app and stop its tasks",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := x.confirm(yes, "remove "+args[0]+" and stop its tasks"); err != nil {
				return err
			}
			return x.deploy(cmd.Context(), wf, "removing "+args[0], args, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.DeleteApp(ctx, args[0], wf.force)
			})
		},
	}
	wf.register(cmd)
	yesFlag(cmd, &yes)
	return cmd
}

// deploy runs a call that starts a deployment and reports it; with --wait
// it subscribes to the event stream first, then follows the deployment to
// its end and fails when the deployment does.
func (x *cli) deploy(ctx context.Context, wf waitFlags, what string, apps []string, call func(context.Context, *client.Client) (*client.Written, error)) error {
	c, err := x.client()
	if err != nil {
		return err
	}
	var waiter *client.Waiter
	if wf.wait {
		waiter, err = c.NewWaiter(ctx)
		if err != nil {
			fmt.Fprintf(x.stderr, "garrison: no event stream (%v); following the deployment by polling\n", err)
		}
		defer waiter.Close()
	}
	w, err := call(ctx, c)
	if err != nil {
		return err
	}
	if w == nil || w.DeploymentID == "" {
		// A forced cancel: nothing to follow.
		if x.structured() {
			return x.printValue(map[string]any{})
		}
		fmt.Fprintln(x.stdout, what)
		return nil
	}
	if !wf.wait {
		if x.structured() {
			return x.printValue(w)
		}
		fmt.Fprintf(x.stdout, "%s: deployment %s\n", what, w.DeploymentID)
		return nil
	}
	fmt.Fprintf(x.stderr, "%s: waiting for deployment %s\n", what, w.DeploymentID)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wf.timeout)
	defer cancel()
	ids := make([]string, len(apps))
	for i, a := range apps {
		ids[i] = "/" + strings.Trim(a, "/")
	}
	out, err := waiter.Wait(wctx, w.DeploymentID, ids)
	took := time.Since(start).Round(10 * time.Millisecond)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("deployment %s still running after %s (it goes on: see `garrison deployments ls`, cancel with `garrison deployments cancel %s`)", w.DeploymentID, wf.timeout, w.DeploymentID)
	case err != nil:
		return fmt.Errorf("waiting for deployment %s: %w", w.DeploymentID, err)
	}
	if x.structured() {
		if err := x.printValue(map[string]any{"deploymentId": w.DeploymentID, "version": w.Version,
			"succeeded": out.Succeeded, "reason": out.Reason, "polled": out.Polled, "seconds": took.Seconds()}); err != nil {
			return err
		}
	} else if out.Succeeded {
		fmt.Fprintf(x.stdout, "%s: deployment %s finished in %s\n", what, w.DeploymentID, took)
	}
	if !out.Succeeded {
		reason := out.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return fmt.Errorf("deployment %s failed after %s: %s", w.DeploymentID, took, reason)
	}
	return nil
}
