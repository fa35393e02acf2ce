package registrar

import (
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientOption configures NewClient.
type ClientOption func(*clientv3.Config)

// WithTLS dials etcd over TLS (https:// endpoints): cfg holds the CA that
// signed etcd's certificate and, for etcd's --client-cert-auth, this
// client's certificate.
func WithTLS(cfg *tls.Config) ClientOption {
	return func(c *clientv3.Config) { c.TLS = cfg }
}

// WithCredentials authenticates to an etcd with auth enabled.
func WithCredentials(username, password string) ClientOption {
	return func(c *clientv3.Config) { c.Username, c.Password = username, password }
}

// NewClient connects to etcd the way registrations and watchers want it:
// gRPC's default reconnect backoff grows to two minutes, which would keep an
// instance out of the registry long after etcd came back, so it is capped at
// one second here. There is no dial timeout: the client connects lazily, so
// a service that starts while etcd is down keeps retrying instead of failing.
func NewClient(endpoints []string, opts ...ClientOption) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:            endpoints,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	return cli, nil
}
