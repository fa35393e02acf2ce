// Command garrison runs micro-services on a company's own machines the way a
// Mesos + Marathon shop does: one binary with a subcommand per role.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `garrison runs services as containers, registers them in etcd and scales them.

Usage:
  garrison up      everything on one machine: embedded etcd, API, agent
  garrison agent   register the labelled Docker containers of this host in etcd
  garrison rules check FILE...
                   validate autoscale rule files
  garrison version print the version

Run "garrison <command> -h" for the settings of a command. Every setting can
also come from the environment (GARRISON_<SETTING>) or a YAML file (--config).
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "garrison:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "garrison:", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "up":
		return runUp(ctx, rest, stderr)
	case "agent":
		return runAgent(ctx, rest, stderr)
	case "rules":
		return runRules(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "garrison", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newLogger builds the process logger: text lines on stderr, at the level
// the --log-level setting names.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// parseCommand parses a subcommand's settings, turning flag errors into usage
// errors so main exits with status 2.
func parseCommand(fs *flag.FlagSet, args []string) error {
	if err := parseSettings(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
