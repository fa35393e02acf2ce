// Package registrar records where each instance of a service runs: an
// instance writes its address under /service/<name>/<instance-id> in etcd,
// bound to a lease it keeps alive (TTL 10 s by default), and callers read
// the live addresses back. A crashed instance disappears when its lease
// expires; a stopping one revokes its lease first and disappears at once.
//
// The value is the JSON of etcd's naming/endpoints.Endpoint,
// {"Addr":"127.0.0.1:31005","Metadata":{...}}, so a stock gRPC client using
// etcd's resolver (target "etcd:////service/<name>") finds garrison services
// without knowing about garrison (see the gRPC example).
//
// The client side of garrison is this small module,
// github.com/garrisonhq/garrison/registrar: Register and Listen for an
// instance, package discovery for its callers, and package etcdtest for
// tests against a real etcd. It imports the etcd client and gRPC, never the
// etcd server, Docker or gin, so a service that imports it stays small.
//
// A service:
//
//	cli, err := registrar.NewClient([]string{"http://127.0.0.1:2379"})
//	listeners, err := registrar.Listen("127.0.0.1", 1) // a free port, already bound
//	reg, err := registrar.Register(ctx, cli, "account", instanceID,
//		registrar.Endpoint{Addr: listeners[0].Addr().String()})
//	// ... serve on listeners[0]; on SIGTERM:
//	reg.Close(ctx) // deregister first, then drain and stop
//
// Register keeps the lease alive and registers again by itself after etcd
// was unreachable or the lease was lost.
package registrar
