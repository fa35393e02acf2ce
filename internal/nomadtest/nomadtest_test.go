package nomadtest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// An agent whose RPC port (base+1) is taken fails with errBind, which
// Start answers by trying other ports. (A taken HTTP port fails the same
// way, only a minute later: Nomad binds it last.)
func TestStartReportsPortInUse(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := start(ctx, bin, port-1)
	if err == nil {
		a.Stop()
		t.Fatalf("agent started with RPC port %d, which a listener holds", port)
	}
	if !errors.Is(err, errBind) {
		t.Fatalf("start: %v, want errBind", err)
	}
}

func TestStartServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, err := a.Client.Nodes().List(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes %v %v: want the dev node", nodes, err)
	}
	a.Stop()
	if _, _, err := a.Client.Nodes().List(nil); err == nil {
		t.Error("the agent still answers after Stop")
	}
}
