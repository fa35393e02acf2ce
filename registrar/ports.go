package registrar

import (
	"fmt"
	"net"
)

// Listen takes n free TCP ports on host (all interfaces when host is empty)
// and returns the listeners, already bound: handing them to the server
// avoids the race of probing a port, closing it and binding it again.
func Listen(host string, n int) ([]net.Listener, error) {
	ls := make([]net.Listener, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			for _, prev := range ls {
				prev.Close()
			}
			return nil, fmt.Errorf("take free port %d of %d on %q: %w", i+1, n, host, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// FreePorts returns n distinct ports that were free a moment ago, for
// callers that must pass a port number to another process. Anyone may take
// them before that process binds them, so such callers retry on
// EADDRINUSE with new ports. Prefer Listen when the caller serves the port
// itself.
func FreePorts(n int) ([]int, error) {
	ls, err := Listen("", n)
	if err != nil {
		return nil, err
	}
	ports := make([]int, n)
	for i, l := range ls {
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return ports, nil
}

// Port is the TCP port a listener is bound to.
func Port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }
