package scheduler

import "testing"

// Two tasks hold one port (requirePorts, or an adopted task): the end of
// one does not free the port while the other holds it.
func TestPortReleaseCountsHolders(t *testing.T) {
	p := newPortAllocator("127.0.0.1", [2]int{13100, 13199})
	got, ok := p.allocate(1)
	if !ok {
		t.Fatal("no free port in 13100-13199")
	}
	held := got[0]
	p.take([]int{held}) // a second task holds it too
	p.release([]int{held})
	for range 100 {
		ports, ok := p.allocate(1)
		if !ok {
			break
		}
		if ports[0] == held {
			t.Fatalf("port %d handed out while a task still holds it", held)
		}
	}
	p.release([]int{held})
	if p.used[held] != 0 {
		t.Fatalf("port %d still counted after both holders released it", held)
	}
}
