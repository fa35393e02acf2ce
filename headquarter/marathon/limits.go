package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// Limits on what one request may make garrison do. Marathon has none of
// these; garrison needs them because every instance runs on its own
// machines and every write is one etcd transaction.
const (
	// DefaultMaxInstancesTotal bounds the instances of all apps together,
	// ten apps at the per-app limit (app.DefaultMaxInstances).
	DefaultMaxInstancesTotal = 10000
	// DefaultEtcdRequestBytes is etcd's default --max-request-bytes, the
	// largest transaction it accepts (embed.DefaultMaxRequestBytes).
	DefaultEtcdRequestBytes = 3 << 19 // 1.5 MiB
	// txnOverhead is kept free of each transaction for keys, the
	// deployment record and etcd's own framing.
	txnOverhead = 64 << 10
	// copiesPerApp is how often an app's JSON is in a deploy transaction:
	// apps/<key>, versions/<key>/<version>, and the previous definition in
	// the deployment record (for a rollback).
	copiesPerApp = 3
)

// bodyLimit is the default request body limit: one app body this large
// still fits etcd's transaction once written copiesPerApp times.
func bodyLimit(etcdBytes int64) int64 { return (etcdBytes - txnOverhead) / copiesPerApp }

// tooLargeError is a request whose writes would not fit one etcd
// transaction: 413 with Marathon's {message, details} shape.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }

// deployChecked deploys changes that pass checkChanges. Checks and deploys
// of the API take turns, so two requests cannot both pass the total limit
// on the same count.
func (a *api) deployChecked(ctx context.Context, changes []scheduler.Change, force bool, path string) (*scheduler.DeployResult, error) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if err := a.checkChanges(changes, path); err != nil {
		return nil, err
	}
	return a.cfg.Scheduler.Deploy(ctx, changes, force, "api")
}

// checkChanges refuses changes that would take the instances of all apps
// above MaxInstancesTotal or write more than etcd takes in one transaction.
// path names the field in the 422 ("/instances" for one app).
func (a *api) checkChanges(changes []scheduler.Change, path string) error {
	if len(changes) > scheduler.MaxChanges {
		return tooManyChanges(len(changes))
	}
	after := map[string]int{}
	size := int64(0)
	for _, c := range changes {
		id := c.Delete
		if c.App != nil {
			id = c.App.ID
			b, err := json.Marshal(c.App)
			if err != nil {
				return fmt.Errorf("encode %s: %w", id, err)
			}
			size += 2 * int64(len(b))
		}
		after[id] = 0
		if c.App != nil {
			after[id] = c.App.Instances
		}
		if cur, ok := a.cfg.Scheduler.App(id); ok {
			b, err := json.Marshal(cur)
			if err != nil {
				return fmt.Errorf("encode %s: %w", id, err)
			}
			size += int64(len(b))
		}
	}
	if limit := a.cfg.EtcdRequestBytes - txnOverhead; size > limit {
		return &tooLargeError{fmt.Sprintf("the change would write %d bytes to etcd in one transaction (each app's definition, its version copy and the previous definition), more than the %d etcd accepts: make the app definitions smaller, or send fewer apps per request", size, limit)}
	}
	before, total := 0, 0
	for _, ap := range a.cfg.Scheduler.Apps() {
		before += ap.Instances
		if _, changed := after[ap.ID]; !changed {
			total += ap.Instances
		}
	}
	for _, n := range after {
		total += n
	}
	// A change that lowers the total is always allowed, so a lowered limit
	// never blocks scaling down.
	if limit := a.cfg.MaxInstancesTotal; total > limit && total > before {
		return &app.ValidationError{Details: []app.FieldError{{Path: path, Errors: []string{fmt.Sprintf(
			"all apps together would have %d instances, more than garrison's total limit of %d (--max-instances-total): every instance runs on garrison's machines", total, limit)}}}}
	}
	return nil
}

func tooManyChanges(n int) error {
	return &app.ValidationError{Details: []app.FieldError{{Path: "/", Errors: []string{
		fmt.Sprintf("%d apps in one request: at most %d can change in one deployment, as they are written in one etcd transaction; send them in several requests", n, scheduler.MaxChanges)}}}}
}

// storeLimitError maps etcd's refusals of a too large or too long
// transaction, in case one slips past checkChanges (e.g. an etcd started
// with a smaller --max-request-bytes than garrison was told).
func storeLimitError(err error) (int, any, bool) {
	switch {
	case errors.Is(err, rpctypes.ErrRequestTooLarge), status.Code(err) == codes.ResourceExhausted:
		return http.StatusRequestEntityTooLarge, detailed("etcd refused the change as too large (its --max-request-bytes): make the app definitions smaller, or send fewer apps per request"), true
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return http.StatusUnprocessableEntity, detailed("etcd refused the change as too many operations in one transaction (its --max-txn-ops): send fewer apps per request"), true
	}
	return 0, nil, false
}

// detailedBody is Marathon's error shape with one detail on the whole
// request.
type detailedBody struct {
	Message string           `json:"message"`
	Details []app.FieldError `json:"details"`
}

func detailed(msg string) detailedBody {
	return detailedBody{Message: msg, Details: []app.FieldError{{Path: "/", Errors: []string{msg}}}}
}
