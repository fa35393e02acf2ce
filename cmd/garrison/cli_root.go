package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrisonhq/garrison/headquarter/client"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
)

// cli is the state the client commands share: where garrison is, who
// asks, how to print.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	addr, token, user, password string
	output                      string
	c                           *client.Client
}

// client builds the API client on first use, from the flags, then the
// environment (GARRISON_ADDR, GARRISON_TOKEN, GARRISON_USER,
// GARRISON_PASSWORD), then the default address.
func (x *cli) client() (*client.Client, error) {
	if x.c != nil {
		return x.c, nil
	}
	cfg := client.ConfigFromEnv()
	if x.addr != "" {
		cfg.Addr = x.addr
	}
	if x.token != "" {
		cfg.Token = x.token
	}
	if x.user != "" {
		cfg.Username = x.user
	}
	if x.password != "" {
		cfg.Password = x.password
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, usageError{"--addr: " + err.Error()}
	}
	x.c = c
	return c, nil
}

// helpShown is a server command's -h: its flag set printed the help, the
// exit status is 0.
var errHelpShown = errors.New("help shown")

// newRootCommand builds the command tree.
func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	x := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "garrison",
		Short: "garrison runs services as containers, registers them in etcd and scales them",
		Long: `garrison runs services as containers, registers them in etcd and scales them.

The server commands (up, agent) take Go-style flags; every setting can also
come from the environment (GARRISON_<SETTING>) or a YAML file (--config).

The client commands talk to a running garrison at --addr (or GARRISON_ADDR,
default ` + client.DefaultAddr + `), with --token (GARRISON_TOKEN) or --user and
--password (GARRISON_USER, GARRISON_PASSWORD). They print tables for people and
JSON or YAML with -o. Exit status: 0 done, 1 the API refused or a --wait failed,
2 bad usage.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q?)", s[0])
				}
				return usageError{msg}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(stderr, cmd.UsageString())
			return usageError{"no command given"}
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Sprintf("%s: %v", cmdName(cmd), err)}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&x.addr, "addr", "", "garrison's API address (env GARRISON_ADDR, default "+client.DefaultAddr+")")
	pf.StringVar(&x.token, "token", "", "bearer token (env GARRISON_TOKEN)")
	pf.StringVar(&x.user, "user", "", "basic auth user (env GARRISON_USER)")
	pf.StringVar(&x.password, "password", "", "basic auth password (env GARRISON_PASSWORD)")
	pf.StringVarP(&x.output, "output", "o", "table", "output format: table, wide (more columns), json or yaml")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "wide", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		switch x.output {
		case "table", "wide", "json", "yaml":
			return nil
		}
		return usageError{fmt.Sprintf("-o %q: want table, wide, json or yaml", x.output)}
	}

	root.AddGroup(&cobra.Group{ID: "server", Title: "Run garrison:"}, &cobra.Group{ID: "client", Title: "Talk to a running garrison:"})
	root.AddCommand(
		serverCommand("up", "everything on one machine: embedded etcd, API, agent", func(ctx context.Context, args []string) error {
			return runUp(ctx, args, stderr)
		}),
		serverCommand("hq", "one of several headquarter replicas on an external etcd cluster: one leads, all serve the API", func(ctx context.Context, args []string) error {
			return runHQ(ctx, args, stderr)
		}),
		serverCommand("agent", "register the labelled Docker containers of this host in etcd", func(ctx context.Context, args []string) error {
			return runAgent(ctx, args, stderr)
		}),
		serverCommand("runnerd", "one warm test runner of the pipeline's runner pool (garrison starts it)", func(ctx context.Context, args []string) error {
			return runRunnerd(ctx, args, stderr)
		}),
	)
	for _, c := range []*cobra.Command{
		x.appsCommand(), x.tasksCommand(), x.deploymentsCommand(), x.servicesCommand(),
		x.rulesCommand(), x.decisionsCommand(), x.evaluationsCommand(), x.eventsCommand(),
		x.runsCommand(), x.releasesCommand(), x.versionCommand(),
	} {
		if c.GroupID == "" {
			c.GroupID = "client"
		}
		root.AddCommand(c)
	}
	root.SetHelpCommandGroupID("client")
	root.SetCompletionCommandGroupID("client")
	return root
}

// serverCommand wraps a subcommand that parses its own Go flag set, so
// its flags (-config x, -h) work as before cobra.
func serverCommand(use, short string, run func(ctx context.Context, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use: use + " [flags]", Short: short, GroupID: "server",
		Long: short + ".\n\nRun \"garrison " + use + " -h\" for its settings. Every setting can also come from\n" +
			"the environment (GARRISON_<SETTING>) or a YAML file (--config).",
		DisableFlagParsing: true,
		// The flag set prints its own help; cobra's would repeat it.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			err := run(cmd.Context(), args)
			if errors.Is(err, flag.ErrHelp) {
				return errHelpShown
			}
			return err
		},
	}
}

// group makes cmd a command that only holds subcommands: run bare or with
// an unknown subcommand it is a usage error (exit 2), not help and 0.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		fmt.Fprint(c.ErrOrStderr(), c.UsageString())
		if len(args) > 0 {
			return usageError{fmt.Sprintf("%s: unknown command %q", cmdName(c), args[0])}
		}
		return usageError{fmt.Sprintf("%s: want a subcommand", cmdName(c))}
	}
	return cmd
}

// usageArgs turns a cobra argument check's error into a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Sprintf("%s: %v", cmdName(cmd), err)}
		}
		return nil
	}
}

// cmdName is the command's path without the program's name.
func cmdName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// exitCode maps a command's error to the process exit status and prints
// it: 0 done (or help), 2 usage, 1 everything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp), errors.Is(err, errHelpShown):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "garrison:", err)
		return 2
	}
	printError(stderr, err)
	return 1
}

// printError writes err for a person: an API error with each refused
// field on its own line.
func printError(w io.Writer, err error) {
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		fmt.Fprintln(w, "garrison:", err)
		return
	}
	fmt.Fprintln(w, "garrison:", err)
	for _, d := range apiErr.Details {
		path := d.Path
		if path == "" {
			path = "/"
		}
		fmt.Fprintf(w, "  %s: %s\n", path, strings.Join(d.Errors, "; "))
	}
	for _, e := range apiErr.RuleErrors {
		fmt.Fprintf(w, "  %s\n", ruleErrorText(e, e.File))
	}
	if len(apiErr.Deployments) > 0 {
		fmt.Fprintf(w, "  locked by deployment %s (see `garrison deployments ls`; --force overrides)\n", strings.Join(apiErr.Deployments, ", "))
	}
}

// ruleErrorText is a rules error as `garrison rules check` prints one:
// FILE:LINE:COL: PATH: MSG, with the server's origin replaced by file.
func ruleErrorText(e client.RuleError, file string) string {
	return rulefmt.Error{File: file, Line: e.Line, Column: e.Column, Path: e.Path, Msg: e.Message}.Error()
}

// waitFlags are the flags of a command that starts a deployment.
type waitFlags struct {
	wait    bool
	timeout time.Duration
	force   bool
}

func (w *waitFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "wait for the deployment to finish; exit 1 if it fails or --timeout passes")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 10*time.Minute, "how long --wait waits")
	cmd.Flags().BoolVar(&w.force, "force", false, "override a deployment in progress on the app")
}
