package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestTakenPortsAreDistinctFreeAndHeld(t *testing.T) {
	ports := Take(t, 40)
	seen := map[int]bool{}
	for _, p := range ports {
		if p < Low || p > High || seen[p] {
			t.Fatalf("port %d: outside %d-%d or handed out twice (%v)", p, Low, High, ports)
		}
		seen[p] = true
		// Held: no other reservation, in this process or another, gets it.
		if locks, ok := reserve(p, 1); ok {
			for _, f := range locks {
				f.Close()
			}
			t.Fatalf("port %d reserved again while the test holds it", p)
		}
	}
	// Free: the test's own server can bind it.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatalf("bind a taken port: %v", err)
	}
	l.Close()
}

func TestBoundPortIsNotHandedOut(t *testing.T) {
	p := Low
	for ; p <= High; p++ {
		if locks, ok := reserve(p, 1); ok {
			for _, f := range locks {
				f.Close() // unlocked again: only the listener below holds it
			}
			break
		}
	}
	// A server outside the scheme listens on it.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if locks, ok := reserve(p, 1); ok {
		for _, f := range locks {
			f.Close()
		}
		t.Fatalf("port %d reserved while something listens on it", p)
	}
}
