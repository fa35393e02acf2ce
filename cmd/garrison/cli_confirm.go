package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// errNotConfirmed is a destructive command the person declined (exit 1).
var errNotConfirmed = errors.New("not confirmed: nothing done")

// yesFlag adds --yes (-y) to a destructive command.
func yesFlag(cmd *cobra.Command, yes *bool) {
	cmd.Flags().BoolVarP(yes, "yes", "y", false, "do it without asking (no question is asked when stdin is not a terminal)")
}

// confirm asks "what? [y/N]" on a terminal and fails unless the answer is
// yes. Scripts are not asked: when stdin is not a terminal, or with --yes,
// it goes ahead, as kubectl and nomad do.
func (x *cli) confirm(yes bool, what string) error {
	if yes || !isTerminal(x.stdin) {
		return nil
	}
	fmt.Fprintf(x.stderr, "%s? [y/N] ", what)
	line, err := bufio.NewReader(x.stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(x.stderr)
		return errNotConfirmed
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}

// isTerminal reports whether r is a terminal (a tty answers the termios
// ioctl; /dev/null, pipes and files do not).
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
