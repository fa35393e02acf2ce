package main

import (
	"context"
	"errors"
	"io"
)

// runAgent is wired to registrar/agent once that package lands.
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	return errors.New("agent: not wired yet")
}
