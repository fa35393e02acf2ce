// Package diskguard refuses garrison's API writes before the disk or
// etcd's quota runs out. etcd stops serving writes at its quota (the NOSPACE
// alarm) and exits on a failed commit when the disk is full, so garrison
// watches both and refuses writes while reads go on, with a message that
// says what is short and how to fix it.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WALSegmentBytes is what etcd preallocates for each write-ahead log
// segment (go.etcd.io/etcd/server/v3/storage/wal.SegmentSizeBytes).
const WALSegmentBytes = 64 * 1000 * 1000

// QuotaFraction of etcd's quota above which writes are refused: the rest is
// left for garrison's own writes (task states, registrations, decisions).
const QuotaFraction = 0.9

// Maintenance is what the guard reads of etcd; clientv3.Maintenance
// satisfies it.
type Maintenance interface {
	Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error)
	AlarmList(ctx context.Context) (*clientv3.AlarmResponse, error)
}

// Config says what to watch.
type Config struct {
	// Dir is the data directory; "" does not watch a disk.
	Dir string
	// MinFree is the free space of Dir below which writes are refused.
	MinFree uint64
	// Etcd and Endpoints are the etcd whose database size and alarms are
	// watched; nil does not watch etcd.
	Etcd      Maintenance
	Endpoints []string
	// Quota is etcd's --quota-backend-bytes, for members that do not
	// report theirs (before etcd 3.6); writes are refused above
	// QuotaFraction of it. 0 watches only etcd's NOSPACE alarm then.
	Quota int64
	// Interval between checks (default 1 s).
	Interval   time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Guard holds the latest verdict. Run keeps it current.
type Guard struct {
	cfg Config

	mu      sync.Mutex
	refusal error

	free    prometheus.Gauge
	dbSize  prometheus.Gauge
	dbInUse prometheus.Gauge
	dbQuota prometheus.Gauge
	refused prometheus.Gauge
}

// New returns a guard that accepts writes until its first Check.
func New(cfg Config) *Guard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{
		cfg: cfg,
		free: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_data_dir_free_bytes", Help: "Free space of garrison's data directory, for an unprivileged user."}),
		dbSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_etcd_db_size_bytes", Help: "Size of etcd's database (of the fullest member), which etcd's quota limits; only a defragment shrinks it."}),
		dbInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_etcd_db_size_in_use_bytes", Help: "Part of etcd's database in use (of the fullest member); a defragment frees the rest."}),
		dbQuota: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_etcd_db_quota_bytes", Help: "etcd's database quota (of the fullest member): past it every write fails with NOSPACE."}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_api_writes_refused", Help: "1 while API writes are refused for lack of disk space or etcd quota."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.refused)
		if cfg.Dir != "" {
			cfg.Registerer.MustRegister(g.free)
		}
		if cfg.Etcd != nil {
			cfg.Registerer.MustRegister(g.dbSize, g.dbInUse, g.dbQuota)
		}
	}
	return g
}

// Refusal is nil while writes are accepted, else why they are not.
func (g *Guard) Refusal() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusal
}

// Run checks every Interval until ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		g.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check measures now and updates the verdict. A measure that fails (etcd
// unreachable) keeps its part of the previous verdict: writes then fail on
// their own.
func (g *Guard) Check(ctx context.Context) {
	var reasons []error
	if g.cfg.Dir != "" {
		if err := g.checkDisk(); err != nil {
			reasons = append(reasons, err)
		}
	}
	if g.cfg.Etcd != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err, ok := g.checkEtcd(ctx)
		cancel()
		if !ok {
			err = g.previousEtcd()
		}
		if err != nil {
			reasons = append(reasons, err)
		}
	}
	refusal := errors.Join(reasons...)
	g.mu.Lock()
	was := g.refusal
	g.refusal = refusal
	g.mu.Unlock()
	switch {
	case refusal != nil && was == nil:
		g.refused.Set(1)
		g.cfg.Logger.Error("refusing API writes", "reason", refusal.Error())
	case refusal == nil && was != nil:
		g.refused.Set(0)
		g.cfg.Logger.Info("accepting API writes again")
	}
}

// etcdError marks the part of a verdict that comes from etcd.
type etcdError struct{ error }

func (e etcdError) Unwrap() error { return e.error }

func (g *Guard) previousEtcd() error {
	prev := g.Refusal()
	if prev == nil {
		return nil
	}
	var ee etcdError
	if errors.As(prev, &ee) {
		return ee
	}
	return nil
}

func (g *Guard) checkDisk() error {
	free, err := FreeBytes(g.cfg.Dir)
	if err != nil {
		g.cfg.Logger.Warn("cannot measure free space", "dir", g.cfg.Dir, "error", err)
		return nil
	}
	g.free.Set(float64(free))
	if free < g.cfg.MinFree {
		return fmt.Errorf("garrison refuses writes: the data directory %s has %s free, below the %s it keeps in reserve (--min-free-space); free some space there",
			g.cfg.Dir, Bytes(free), Bytes(g.cfg.MinFree))
	}
	return nil
}

// checkEtcd returns the etcd part of the verdict; ok is false when etcd
// could not be asked.
func (g *Guard) checkEtcd(ctx context.Context) (error, bool) {
	// Listing alarms needs etcd's root role when etcd auth is on; without
	// it the database size below still tells.
	if alarms, err := g.cfg.Etcd.AlarmList(ctx); err == nil {
		for _, a := range alarms.Alarms {
			if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
				return etcdError{errors.New("garrison refuses writes: etcd reached its database quota (NOSPACE alarm); compact and defragment etcd, then disarm the alarm (etcdctl alarm disarm), or raise its quota")}, true
			}
		}
	}
	// etcd measures its quota against the database's high-water mark
	// (DbSize), free pages included, not the part in use: after a
	// compaction only a defragment brings it down.
	// The fullest member decides: a write needs every member's room.
	var size, inUse, quota int64
	full := 0.0
	for _, ep := range g.cfg.Endpoints {
		st, err := g.cfg.Etcd.Status(ctx, ep)
		if err != nil || st.DbSize == 0 {
			continue
		}
		q := st.DbSizeQuota // etcd 3.6 reports it; older members do not
		if q <= 0 {
			q = g.cfg.Quota
		}
		if q <= 0 {
			continue
		}
		if f := float64(st.DbSize) / float64(q); f >= full {
			full, size, inUse, quota = f, st.DbSize, st.DbSizeInUse, q
		}
	}
	if quota == 0 {
		return nil, false
	}
	g.dbSize.Set(float64(size))
	g.dbInUse.Set(float64(inUse))
	g.dbQuota.Set(float64(quota))
	if full >= QuotaFraction {
		return etcdError{fmt.Errorf("garrison refuses writes: etcd's database is %s (%s in use) of its %s quota; compact etcd's history (etcdctl compact) and defragment it (etcdctl defrag), or raise the quota (--quota-backend-bytes; --etcd-quota-bytes for the embedded etcd)",
			Bytes(uint64(size)), Bytes(uint64(inUse)), Bytes(uint64(quota)))}, true
	}
	return nil, true
}

// FreeBytes is the space of dir's filesystem available to an unprivileged
// user.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Bytes formats n for people: 1.5 GiB, 12 MiB, 900 KiB.
func Bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
}
