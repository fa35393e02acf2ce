package scheduler

import (
	"net"
	"strconv"
)

// portAllocator hands out host ports for tasks (host networking: every task
// needs ports no other process holds). It remembers what garrison's own
// tasks hold and probes the host for anything else listening there. It
// counts holders: several tasks can hold one port (requirePorts, an
// adopted task), and one release must not free it for the others.
type portAllocator struct {
	host        string
	first, last int
	next        int
	used        map[int]int
}

func newPortAllocator(host string, r [2]int) *portAllocator {
	return &portAllocator{host: host, first: r[0], last: r[1], next: r[0], used: map[int]int{}}
}

func (p *portAllocator) take(ports []int) {
	for _, port := range ports {
		p.used[port]++
	}
}

func (p *portAllocator) release(ports []int) {
	for _, port := range ports {
		if p.used[port]--; p.used[port] <= 0 {
			delete(p.used, port)
		}
	}
}

// allocate returns n free ports, or false when the range is exhausted. It
// walks the range round-robin so a port just released is not reused at once
// by a new task while callers may still hold connections to the old one.
func (p *portAllocator) allocate(n int) ([]int, bool) {
	out := make([]int, 0, n)
	size := p.last - p.first + 1
	for tried := 0; tried < size && len(out) < n; tried++ {
		port := p.next
		p.next++
		if p.next > p.last {
			p.next = p.first
		}
		if p.used[port] > 0 || !p.free(port) {
			continue
		}
		p.used[port]++
		out = append(out, port)
	}
	if len(out) < n {
		p.release(out)
		return nil, false
	}
	return out, true
}

// free probes the port on all interfaces, as a host-networked task binds.
func (p *portAllocator) free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
