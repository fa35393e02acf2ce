package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
)

const rulesUsage = `Usage:
  garrison rules check FILE...   validate autoscale rule files; every error with file, line and field
`

// runRules handles `garrison rules ...`.
func runRules(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, rulesUsage)
		return usageError{"rules: want `rules check FILE...`"}
	}
	files := args[1:]
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
		rules, err := rulefmt.Parse(data, file)
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
		fmt.Fprintf(stdout, "%s: %d rules, valid\n", file, len(rules))
	}
	if bad > 0 {
		return fmt.Errorf("rules check: %d of %d files invalid", bad, len(files))
	}
	return nil
}
