package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

type servicesHandler struct {
	kv clientv3.KV
}

// InstanceView is one registered instance as the API shows it.
type InstanceView struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Lease    string            `json:"lease,omitempty"`
	// TTL is the seconds left on the lease and GrantedTTL its full length,
	// given when asked for (?ttl=true): a live instance's TTL keeps being
	// renewed; one that only falls is not being kept alive.
	TTL        *int64 `json:"ttl,omitempty"`
	GrantedTTL *int64 `json:"grantedTtl,omitempty"`
	lease      clientv3.LeaseID
}

// ServiceView is one service with its live instances.
type ServiceView struct {
	Name      string         `json:"name"`
	Instances []InstanceView `json:"instances"`
}

// readTimeout keeps the API answering when etcd is unreachable.
const readTimeout = 5 * time.Second

func (h servicesHandler) list(c *gin.Context) {
	services, err := h.read(c.Request.Context(), registrar.Prefix)
	if err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"message": err.Error()})
		return
	}
	if c.Query("ttl") == "true" {
		h.addTTLs(c.Request.Context(), services)
	}
	c.JSON(http.StatusOK, gin.H{"services": services})
}

func (h servicesHandler) get(c *gin.Context) {
	name := c.Param("name")
	if err := registrar.ValidateName("service name", name); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"message": err.Error()})
		return
	}
	services, err := h.read(c.Request.Context(), registrar.ServicePrefix(name))
	if err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"message": err.Error()})
		return
	}
	if c.Query("ttl") == "true" {
		h.addTTLs(c.Request.Context(), services)
	}
	if len(services) == 0 {
		c.JSON(http.StatusNotFound, gin.H{"message": fmt.Sprintf("Service '%s' has no registered instances", name)})
		return
	}
	c.JSON(http.StatusOK, services[0])
}

// read lists the registry under prefix, grouped by service and sorted. Keys
// whose value is not an endpoint are left out, as etcd's resolver does.
func (h servicesHandler) read(ctx context.Context, prefix string) ([]ServiceView, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := h.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read registry %s: %w", prefix, err)
	}
	out := []ServiceView{}
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Name != inst.Service {
			out = append(out, ServiceView{Name: inst.Service})
		}
		view := InstanceView{ID: inst.ID, Addr: inst.Endpoint.Addr, Metadata: inst.Endpoint.Metadata}
		if kv.Lease != 0 {
			view.Lease = fmt.Sprintf("%x", kv.Lease)
			view.lease = clientv3.LeaseID(kv.Lease)
		}
		last := &out[len(out)-1]
		last.Instances = append(last.Instances, view)
	}
	slices.SortFunc(out, func(a, b ServiceView) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// maxTTLLookups bounds the lease look-ups one request makes; instances
// beyond it are shown without a TTL.
const maxTTLLookups = 2000

// addTTLs asks etcd how long each distinct lease has left, a few at a time.
// The registry client is a full etcd client in garrison; a KV that is not
// also a Lease client shows no TTLs.
func (h servicesHandler) addTTLs(ctx context.Context, services []ServiceView) {
	leases, ok := h.kv.(clientv3.Lease)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	type ttl struct{ left, granted int64 }
	found := map[clientv3.LeaseID]*ttl{}
	for _, svc := range services {
		for _, inst := range svc.Instances {
			if inst.lease != 0 && len(found) < maxTTLLookups {
				found[inst.lease] = nil
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for id := range found {
		wg.Add(1)
		sem <- struct{}{}
		go func(id clientv3.LeaseID) {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := leases.TimeToLive(ctx, id)
			if err != nil || resp.TTL < 0 {
				return
			}
			mu.Lock()
			found[id] = &ttl{left: resp.TTL, granted: resp.GrantedTTL}
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	for i := range services {
		for j := range services[i].Instances {
			inst := &services[i].Instances[j]
			if t := found[inst.lease]; t != nil {
				inst.TTL, inst.GrantedTTL = &t.left, &t.granted
			}
		}
	}
}
