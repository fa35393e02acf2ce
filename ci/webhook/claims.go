package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClaimsPrefix is where claims live in etcd.
const ClaimsPrefix = "/garrison/ci/claims/"

// DefaultClaimTTL is how long a delivery or revision is remembered.
const DefaultClaimTTL = 24 * time.Hour

// EtcdClaims keeps claims in etcd, each under a lease that ends it after
// the TTL. Claims made within the same hour share a lease, so a busy hook
// does not create one lease per delivery.
type EtcdClaims struct {
	cli *clientv3.Client
	ttl time.Duration

	mu      sync.Mutex
	lease   clientv3.LeaseID
	granted time.Time
}

// NewEtcdClaims returns claims kept for ttl (DefaultClaimTTL when 0).
func NewEtcdClaims(cli *clientv3.Client, ttl time.Duration) *EtcdClaims {
	if ttl <= 0 {
		ttl = DefaultClaimTTL
	}
	return &EtcdClaims{cli: cli, ttl: ttl}
}

const leaseShare = time.Hour

func (c *EtcdClaims) leaseFor(ctx context.Context) (clientv3.LeaseID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease != 0 && time.Since(c.granted) < leaseShare {
		return c.lease, nil
	}
	// The shared lease outlives its last claim by at least ttl.
	resp, err := c.cli.Grant(ctx, int64((c.ttl + leaseShare).Seconds()))
	if err != nil {
		return 0, fmt.Errorf("grant claim lease: %w", err)
	}
	c.lease, c.granted = resp.ID, time.Now()
	return c.lease, nil
}

// Claim records key unless it is already recorded.
func (c *EtcdClaims) Claim(ctx context.Context, key string) (bool, error) {
	for attempt := 0; ; attempt++ {
		lease, err := c.leaseFor(ctx)
		if err != nil {
			return false, err
		}
		k := ClaimsPrefix + key
		resp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(lease))).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			// The shared lease is gone (revoked, or etcd restored from
			// an older snapshot): take a new one.
			c.mu.Lock()
			c.lease = 0
			c.mu.Unlock()
			continue
		}
		if err != nil {
			return false, fmt.Errorf("claim %s: %w", key, err)
		}
		return resp.Succeeded, nil
	}
}

// Release forgets key.
func (c *EtcdClaims) Release(ctx context.Context, key string) error {
	if _, err := c.cli.Delete(ctx, ClaimsPrefix+key); err != nil {
		return fmt.Errorf("release claim %s: %w", key, err)
	}
	return nil
}
