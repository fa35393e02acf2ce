package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/client"
)

func (x *cli) tasksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "tasks [APP]",
		Short:             "list tasks (all, or one app's); `tasks kill ID` kills one",
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			appID := optionalArg(args)
			tasks, err := c.Tasks(cmd.Context(), appID)
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printList(len(tasks), func(i int) json.RawMessage { return tasks[i].Raw })
			}
			return x.taskTable(tasks, appID == "", time.Now())
		}),
	}
	cmd.AddCommand(x.tasksKill(), x.tasksLog())
	return cmd
}

func (x *cli) tasksLog() *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:               "log ID",
		Short:             "print the end of a task's stdout and stderr",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeTasks,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 1 || tail > api.MaxLogTail {
				return usageError{fmt.Sprintf("tasks log: --tail %d: want 1 to %d lines", tail, api.MaxLogTail)}
			}
			c, err := x.client()
			if err != nil {
				return err
			}
			b, err := c.TaskLog(cmd.Context(), args[0], tail)
			if err != nil {
				return err
			}
			_, err = x.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().IntVar(&tail, "tail", api.DefaultLogTail, "lines to print from the end of each stream")
	return cmd
}

// taskHealth sums a task's health check results.
func taskHealth(t *client.Task) string {
	if len(t.HealthCheckResults) == 0 {
		return "-"
	}
	for _, r := range t.HealthCheckResults {
		if !r.Alive {
			return "unhealthy"
		}
	}
	return "healthy"
}

func (x *cli) taskTable(tasks []client.Task, withApp bool, now time.Time) error {
	sort.SliceStable(tasks, func(i, j int) bool {
		if tasks[i].AppID != tasks[j].AppID {
			return tasks[i].AppID < tasks[j].AppID
		}
		return tasks[i].ID < tasks[j].ID
	})
	headers := []string{"ID", "STATE", "HEALTH", "HOST", "PORTS", "AGE", "VERSION"}
	if x.wide() {
		headers = append(headers, "STAGED", "STARTED")
	}
	if withApp {
		headers = append([]string{"APP"}, headers...)
	}
	t := newTable(x.stdout, headers...)
	for i := range tasks {
		tk := &tasks[i]
		ports := make([]string, len(tk.Ports))
		for j, p := range tk.Ports {
			ports[j] = strconv.Itoa(p)
		}
		since := tk.StartedAt
		if since == "" {
			since = tk.StagedAt
		}
		cells := []string{tk.ID, strings.TrimPrefix(tk.State, "TASK_"), taskHealth(tk), tk.Host, strings.Join(ports, ","), age(since, now), tk.Version}
		if x.wide() {
			cells = append(cells, orDash(tk.StagedAt), orDash(tk.StartedAt))
		}
		if withApp {
			cells = append([]string{tk.AppID}, cells...)
		}
		t.row(cells...)
	}
	return t.flush()
}

// completeTasks completes task ids.
func (x *cli) completeTasks(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return x.completeFirst(true, func(ctx context.Context, c *client.Client) ([]string, error) {
		tasks, err := c.Tasks(ctx, "")
		ids := make([]string, len(tasks))
		for i, t := range tasks {
			ids[i] = t.ID
		}
		return ids, err
	})(cmd, args, prefix)
}

func (x *cli) tasksKill() *cobra.Command {
	var wf waitFlags
	var scale bool
	var yes bool
	cmd := &cobra.Command{
		Use:   "kill ID...",
		Short: "kill tasks; garrison replaces them unless --scale shrinks their apps",
		Long: `kill stops tasks by id. Without --scale garrison starts replacements (the app
keeps its count); with --scale each app shrinks by the tasks killed, which is a
deployment that --wait can follow.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: x.completeTasks,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if err := x.confirm(yes, "kill "+strings.Join(ids, ", ")); err != nil {
				return err
			}
			if !scale {
				if wf.wait {
					return usageError{"tasks kill: --wait needs --scale (a kill without it starts no deployment)"}
				}
				c, err := x.client()
				if err != nil {
					return err
				}
				killed, _, err := c.KillTasks(cmd.Context(), ids, false)
				if err != nil {
					return err
				}
				if x.structured() {
					return x.printList(len(killed), func(i int) json.RawMessage { return killed[i].Raw })
				}
				for _, t := range killed {
					fmt.Fprintf(x.stdout, "killed %s\n", t.ID)
				}
				return nil
			}
			apps := make([]string, 0, len(ids))
			for _, id := range ids {
				if a, err := app.AppIDFromTaskID(id); err == nil {
					apps = append(apps, a)
				}
			}
			return x.deploy(cmd.Context(), wf, "killed "+strings.Join(ids, ", ")+" and scaled down", apps, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				_, w, err := c.KillTasks(ctx, ids, true)
				return w, err
			})
		},
	}
	wf.register(cmd)
	cmd.Flags().Lookup("force").Hidden = true
	cmd.Flags().BoolVar(&scale, "scale", false, "shrink the apps instead of replacing the tasks")
	yesFlag(cmd, &yes)
	return cmd
}

func (x *cli) deploymentsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "deployments",
		Aliases: []string{"deployment", "deploys"},
		Short:   "list and cancel deployments in progress",
	})
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list deployments in progress",
		Args:    usageArgs(cobra.NoArgs),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			deps, err := c.Deployments(cmd.Context())
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printList(len(deps), func(i int) json.RawMessage { return deps[i].Raw })
			}
			now := time.Now()
			t := newTable(x.stdout, "ID", "APPS", "ACTIONS", "STEP", "AGE")
			for _, d := range deps {
				var actions []string
				for _, a := range d.CurrentActions {
					actions = append(actions, a.Action+" "+a.App)
				}
				t.row(d.ID, strings.Join(d.AffectedApps, ","), strings.Join(actions, ", "),
					fmt.Sprintf("%d/%d", d.CurrentStep, d.TotalSteps), age(d.Version, now))
			}
			return t.flush()
		}),
	}
	var yes bool
	var wf waitFlags
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "cancel a deployment: roll its apps back (a new deployment), or with --force just stop it",
		Args:  usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: x.completeFirst(false, func(ctx context.Context, c *client.Client) ([]string, error) {
			deps, err := c.Deployments(ctx)
			ids := make([]string, len(deps))
			for i, d := range deps {
				ids[i] = d.ID + "\t" + strings.Join(d.AffectedApps, ",")
			}
			return ids, err
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := x.confirm(yes, "cancel deployment "+args[0]); err != nil {
				return err
			}
			c, err := x.client()
			if err != nil {
				return err
			}
			// The rollback's apps are the cancelled deployment's.
			var apps []string
			if deps, err := c.Deployments(cmd.Context()); err == nil {
				for _, d := range deps {
					if d.ID == args[0] {
						apps = d.AffectedApps
					}
				}
			}
			what := "cancelled " + args[0]
			if !wf.force {
				what += ", rolling back"
			}
			return x.deploy(cmd.Context(), wf, what, apps, func(ctx context.Context, c *client.Client) (*client.Written, error) {
				return c.CancelDeployment(ctx, args[0], wf.force)
			})
		},
	}
	wf.register(cancel)
	yesFlag(cancel, &yes)
	cancel.Flags().Lookup("force").Usage = "stop the deployment without rolling back"
	cmd.AddCommand(ls, cancel)
	return cmd
}
