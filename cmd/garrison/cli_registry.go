package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/client"
)

func (x *cli) servicesCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "services [NAME]",
		Aliases: []string{"service", "svc"},
		Short:   "list the registry: services and their live instances",
		Args:    usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: x.completeFirst(false, func(ctx context.Context, c *client.Client) ([]string, error) {
			services, err := c.Services(ctx)
			names := make([]string, len(services))
			for i, s := range services {
				names[i] = s.Name
			}
			return names, err
		}),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if len(args) == 1 {
				s, err := c.Service(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if x.structured() {
					return x.printValue(s)
				}
				t := newTable(x.stdout, "ID", "ADDR", "LEASE", "METADATA")
				for _, in := range s.Instances {
					t.row(in.ID, in.Addr, orDash(in.Lease), metadataText(in.Metadata))
				}
				return t.flush()
			}
			services, err := c.Services(cmd.Context())
			if err != nil {
				return err
			}
			if x.structured() {
				return x.printValue(services)
			}
			t := newTable(x.stdout, "NAME", "INSTANCES", "ADDRESSES")
			for _, s := range services {
				addrs := make([]string, len(s.Instances))
				for i, in := range s.Instances {
					addrs[i] = in.Addr
				}
				t.row(s.Name, strconv.Itoa(len(s.Instances)), strings.Join(addrs, ","))
			}
			return t.flush()
		}),
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func metadataText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return orDash(strings.Join(parts, ","))
}

func (x *cli) rulesCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "rules",
		Short: "autoscale rules: check files, read and replace the rules in force",
	})
	check := &cobra.Command{
		Use:                "check FILE...",
		Short:              "validate autoscale rule files here, without a server; every error with file, line and field",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRules(cmd.Context(), append([]string{"check"}, args...), x.stdout, x.stderr)
		},
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "show the rules in force (-o yaml prints the document, ready for `rules apply -f`)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if x.output == "yaml" {
				doc, err := c.RulesDocument(cmd.Context())
				if err != nil {
					return err
				}
				_, err = x.stdout.Write(doc)
				return err
			}
			rules, err := c.Rules(cmd.Context())
			if err != nil {
				return err
			}
			return x.printRules(rules)
		}),
	}
	var file string
	apply := &cobra.Command{
		Use:     "apply -f FILE",
		Short:   "replace the rules in force with a rules document (YAML or JSON; - reads stdin)",
		Example: "  garrison rules apply -f rules.yaml",
		Args:    usageArgs(cobra.NoArgs),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			doc, name, err := x.readInput(file)
			if err != nil {
				return err
			}
			rules, err := c.PutRules(cmd.Context(), doc)
			var apiErr *client.APIError
			if errors.As(err, &apiErr) {
				for i := range apiErr.RuleErrors {
					apiErr.RuleErrors[i].File = name
				}
			}
			if err != nil {
				return err
			}
			return x.printRules(rules)
		}),
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the rules document (- reads stdin)")
	cmd.AddCommand(check, get, apply)
	return cmd
}

func thresholdsText(t map[string]float64) string {
	var parts []string
	for _, m := range []string{"qps", "cpu", "mem"} {
		if v, ok := t[m]; ok && v != 0 {
			parts = append(parts, m+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return orDash(strings.Join(parts, ","))
}

func (x *cli) printRules(rules []client.Rule) error {
	if x.structured() {
		return x.printList(len(rules), func(i int) json.RawMessage { return rules[i].Raw })
	}
	t := newTable(x.stdout, "APP", "MIN", "MAX", "QUORUM", "UP", "DOWN", "COOLDOWN", "SCHEDULES", "MODE")
	for _, r := range rules {
		mode := "active"
		switch {
		case r.Paused:
			mode = "paused"
		case r.DryRun:
			mode = "dry-run"
		}
		var scheds []string
		for _, s := range r.Schedules {
			scheds = append(scheds, fmt.Sprintf("%q for %s min %d", s.Cron, s.For, s.Min))
		}
		t.row(r.App, strconv.Itoa(r.Min), strconv.Itoa(r.Max), strconv.Itoa(r.Quorum),
			thresholdsText(r.Up), thresholdsText(r.Down), r.Cooldown, orDash(strings.Join(scheds, "; ")), mode)
	}
	return t.flush()
}

// decisionEvent is the event type the autoscaler publishes per decision.
const decisionEvent = "autoscale_decision_event"

func (x *cli) decisionsCommand() *cobra.Command {
	var watch bool
	var limit int
	cmd := &cobra.Command{
		Use:   "decisions [APP]",
		Short: "the autoscaler's decisions and why (oldest first); --watch follows new ones",
		Long: `decisions lists what the autoscaler decided for each app and why: scale-ups and
-downs, and the changes it held back (cooldown, bounds, a deployment in progress,
paused or dry-run rules). Tables list oldest first; -o json keeps the API's
order (newest first). --watch then follows new decisions from /v2/events, one
line (or, with -o json, one JSON object) each, until interrupted.`,
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: x.completeApps,
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			appID := ""
			if len(args) == 1 {
				appID = "/" + strings.Trim(args[0], "/")
			}
			ctx := cmd.Context()
			var stream *client.Stream
			if watch {
				// Subscribe before listing: no decision falls in between.
				var err error
				if stream, err = c.Events(ctx, decisionEvent); err != nil {
					return err
				}
				defer stream.Close()
			}
			list, err := c.Decisions(ctx, appID, limit)
			if err != nil {
				return err
			}
			if !watch {
				if x.structured() {
					return x.printList(len(list), func(i int) json.RawMessage { return list[i].Raw })
				}
				t := newTable(x.stdout, decisionHeaders...)
				for i := len(list) - 1; i >= 0; i-- {
					t.row(decisionCells(&list[i])...)
				}
				return t.flush()
			}
			printed := map[string]int{}
			if !x.structured() {
				fmt.Fprintln(x.stdout, streamLine(decisionHeaders))
			}
			show := func(d *client.Decision) error {
				if n, ok := printed[d.ID]; ok && n == d.Repeats {
					return nil
				}
				printed[d.ID] = d.Repeats
				if x.structured() {
					return x.printLine(d.Raw)
				}
				_, err := fmt.Fprintln(x.stdout, streamLine(decisionCells(d)))
				return err
			}
			for i := len(list) - 1; i >= 0; i-- {
				if err := show(&list[i]); err != nil {
					return err
				}
			}
			for {
				ev, err := stream.Next()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("event stream ended: %w", err)
				}
				var d client.Decision
				if json.Unmarshal(ev.Data, &d) != nil || appID != "" && d.App != appID {
					continue
				}
				if err := show(&d); err != nil {
					return err
				}
			}
		}),
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the list, follow new decisions")
	cmd.Flags().IntVar(&limit, "limit", 0, "how many decisions to list (default: the server's, 100)")
	return cmd
}

var decisionHeaders = []string{"TIME", "APP", "ACTION", "FROM", "TO", "ACTED", "REASON"}

// streamWidths pad streamed rows, which a tabwriter cannot align ahead.
var streamWidths = []int{8, 24, 6, 4, 4, 9}

func streamLine(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		if i < len(streamWidths) {
			fmt.Fprintf(&b, "%-*s", streamWidths[i], c)
		} else {
			b.WriteString(c)
		}
	}
	return strings.TrimRight(b.String(), " ")
}

func decisionCells(d *client.Decision) []string {
	acted := "no"
	switch {
	case d.ActError != "":
		acted = "error: " + d.ActError
	case d.DryRun:
		acted = "dry-run"
	case d.Paused:
		acted = "paused"
	case d.NotNow:
		acted = "held"
	case d.Acted:
		acted = "yes"
	}
	at := d.At
	if t, err := time.Parse(time.RFC3339Nano, d.At); err == nil {
		at = t.Local().Format("15:04:05")
	}
	reason := d.Reason
	if d.Blocked != "" {
		reason += " (blocked: " + d.Blocked + ")"
	}
	if d.Repeats > 0 {
		reason += fmt.Sprintf(" (x%d)", d.Repeats+1)
	}
	return []string{at, d.App, d.Action, strconv.Itoa(d.From), strconv.Itoa(d.To), acted, reason}
}

// printLine writes one streamed value: a JSON line, or a YAML document.
func (x *cli) printLine(raw json.RawMessage) error {
	if x.output == "yaml" {
		out, err := jsonToYAML(raw)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(x.stdout, "---\n%s", out)
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("the API sent invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := x.stdout.Write(buf.Bytes())
	return err
}

func (x *cli) eventsCommand() *cobra.Command {
	var types []string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "follow garrison's event stream (/v2/events) until interrupted",
		Long: `events prints each event of /v2/events as it happens: a line per event, or with
-o json one JSON object per line. When the stream ends (garrison restarts) it
reconnects.`,
		Example: "  garrison events --type deployment_success --type deployment_failed\n  garrison events -o json | jq .",
		Args:    usageArgs(cobra.NoArgs),
		RunE: x.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			ctx := cmd.Context()
			for {
				stream, err := c.Events(ctx, types...)
				if err != nil {
					var apiErr *client.APIError
					if errors.As(err, &apiErr) {
						return err // refused (auth): retrying will not help
					}
				} else {
					err = x.followEvents(stream)
					stream.Close()
				}
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(x.stderr, "garrison: event stream: %v; reconnecting\n", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		}),
	}
	cmd.Flags().StringArrayVar(&types, "type", nil, "event type to follow (repeat for several; default all)")
	cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions(eventTypes, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

var eventTypes = []string{
	"api_post_event", "status_update_event", "instance_changed_event", "instance_health_changed_event",
	"health_status_changed_event", "failed_health_check_event", "unhealthy_instance_kill_event",
	"group_change_success", "deployment_info", "deployment_success", "deployment_failed",
	"deployment_step_success", "deployment_step_failure", "app_terminated_event",
	"event_stream_attached", "event_stream_detached", decisionEvent,
}

// eventKeys are the fields worth a glance, in the order shown.
var eventKeys = []string{"appId", "app", "runSpecId", "taskId", "instanceId", "taskStatus", "condition",
	"id", "action", "from", "to", "alive", "healthy", "reason", "remoteAddress", "uri"}

func (x *cli) followEvents(stream *client.Stream) error {
	for {
		ev, err := stream.Next()
		if err != nil {
			return err
		}
		if x.structured() {
			if err := x.printLine(ev.Data); err != nil {
				return err
			}
			continue
		}
		var fields map[string]any
		json.Unmarshal(ev.Data, &fields)
		at := time.Now()
		if ts, ok := fields["timestamp"].(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				at = t
			}
		}
		var parts []string
		for _, k := range eventKeys {
			v, ok := fields[k]
			if !ok || v == nil || v == "" {
				continue
			}
			if s, ok := v.(string); ok && slices.Contains([]string{"reason", "uri"}, k) {
				v = strconv.Quote(s)
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
		if _, err := fmt.Fprintf(x.stdout, "%s  %-30s  %s\n", at.Local().Format("15:04:05.000"), ev.Type, strings.Join(parts, " ")); err != nil {
			return err
		}
	}
}

func (x *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print garrison's version, and the server's when one answers at --addr",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			server := ""
			if c, err := x.client(); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
				info, err := c.Info(ctx)
				cancel()
				if err == nil {
					server = info.Version
				} else if !x.structured() {
					fmt.Fprintf(x.stderr, "garrison: no server version: %v\n", err)
				}
			}
			if x.structured() {
				return x.printValue(map[string]string{"client": version, "server": server})
			}
			fmt.Fprintln(x.stdout, "garrison", version)
			if server != "" {
				fmt.Fprintf(x.stdout, "server %s at %s\n", server, x.c.Addr())
			}
			return nil
		},
	}
}
