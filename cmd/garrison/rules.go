package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	scoutprom "github.com/garrisonhq/garrison/scout/prometheus"
	"github.com/garrisonhq/garrison/scout/sample"
)

const rulesUsage = `Usage:
  garrison rules check [--metrics-source S] [--prometheus URL] FILE...
      validate autoscale rule files; every error with file, line and field.
      The queries of metrics read from Prometheus (sources: prometheus, or
      none with --metrics-source prometheus, the default with --prometheus,
      as garrison up decides) are parsed as PromQL; with --prometheus, that
      Prometheus parses them too (it knows its own functions).
`

// runRules handles `garrison rules ...`.
func runRules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, rulesUsage)
		return usageError{"rules: want `rules check FILE...`"}
	}
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	promURL := fs.String("prometheus", "", "URL of the Prometheus the rules' queries will run on, to parse them")
	source := fs.String("metrics-source", "", "default metric source of the rules, as garrison up's (default: prometheus with --prometheus, else local)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{"rules check: " + err.Error()}
	}
	if *source == "" {
		*source = "local"
		if *promURL != "" {
			*source = "prometheus"
		}
	}
	opts := rulefmt.Options{DefaultSource: *source, QueryChecks: queryChecks}
	var prom *scoutprom.Source
	if *promURL != "" {
		var err error
		if prom, err = scoutprom.New(*promURL); err != nil {
			return usageError{"rules check: --prometheus: " + err.Error()}
		}
	}
	files := fs.Args()
	if len(files) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return usageError{"rules check: no file given"}
	}
	bad := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			bad++
			continue
		}
		rules, err := rulefmt.ParseWith(data, file, opts)
		if err != nil {
			var list rulefmt.Errors
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(stderr, e.Error())
				}
			} else {
				fmt.Fprintln(stderr, err)
			}
			bad++
			continue
		}
		if prom != nil {
			if n := checkQueries(ctx, prom, *source, file, rules, stderr); n > 0 {
				bad++
				continue
			}
		}
		fmt.Fprintf(stdout, "%s: %d rules, valid\n", file, len(rules))
	}
	if bad > 0 {
		return fmt.Errorf("rules check: %d of %d files invalid", bad, len(files))
	}
	return nil
}

// checkQueries has Prometheus parse every query of the rules read from it
// (source is the rules' default source), printing each refusal as
// FILE:LINE:COL: PATH: message; it returns how
// many were refused. Prometheus unreachable is one error for the file.
func checkQueries(ctx context.Context, prom *scoutprom.Source, source, file string, rules []rulefmt.Rule, stderr io.Writer) int {
	bad := 0
	for i, r := range rules {
		for _, m := range sample.Metrics {
			if cmp.Or(r.Sources[m], source) != "prometheus" {
				continue
			}
			for _, instances := range []bool{false, true} {
				q, path := r.Queries[m], fmt.Sprintf("rules[%d].queries.%s", i, m)
				if instances {
					q, path = r.InstanceQueries[m], path+".instances"
				} else if r.InstanceQueries[m] != "" {
					path += ".value"
				}
				if q == "" {
					continue
				}
				err := prom.Check(ctx, q, r.App, r.Window)
				var qerr *scoutprom.QueryError
				switch {
				case errors.As(err, &qerr):
					pos := r.QueryPos(m, instances)
					fmt.Fprintln(stderr, rulefmt.Error{File: file, Line: pos.Line, Column: pos.Column, Path: path, Msg: qerr.Error()}.Error())
					bad++
				case err != nil:
					fmt.Fprintf(stderr, "%s: %s: %v\n", file, path, err)
					return bad + 1
				}
			}
		}
	}
	return bad
}
