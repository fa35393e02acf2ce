package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/client"
)

// run makes a command's RunE that first builds the API client: every
// command but version needs one, and a bad --addr is a usage error before
// anything is sent.
func (x *cli) run(body func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := x.client()
		if err != nil {
			return err
		}
		return body(cmd, c, args)
	}
}

// completeFirst completes a command's first argument (or a flag, when
// anyArgs is set) with what one API call lists. list returns candidates as
// "value" or "value\tdescription"; those whose value starts with the typed
// prefix are offered. A completion asks the server, so it is bounded by a
// short timeout: a shell must not hang on a slow or absent garrison.
func (x *cli) completeFirst(anyArgs bool, list func(ctx context.Context, c *client.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 && !anyArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := x.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
		defer cancel()
		all, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, cand := range all {
			value, _, _ := strings.Cut(cand, "\t")
			// App ids match with or without their leading slash.
			if strings.HasPrefix(value, prefix) || strings.HasPrefix(strings.TrimPrefix(value, "/"), prefix) {
				out = append(out, cand)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// optionalArg is the one optional argument of a command, or "".
func optionalArg(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return ""
}
