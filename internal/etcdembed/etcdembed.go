// Package etcdembed runs etcd's own server code inside the garrison process,
// so that one machine needs nothing else to keep garrison's state.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/garrisonhq/garrison/internal/diskguard"
)

// Config says where the embedded server keeps its data and listens.
type Config struct {
	// DataDir holds the member's WAL and snapshot; created when missing.
	DataDir string
	// ClientURL is where clients connect, e.g. http://127.0.0.1:2379.
	ClientURL string
	// PeerURL is the raft peer address; a single member only needs it to be free.
	PeerURL string
	// Name of the member; "garrison" when empty.
	Name string
	// LogLevel for etcd's own zap logger; "error" when empty, so garrison's
	// slog output stays readable.
	LogLevel string
	// StartTimeout bounds how long Start waits for the member to be ready.
	StartTimeout time.Duration
	// QuotaBytes is the database quota (etcd's --quota-backend-bytes);
	// etcd's default (2 GiB) when 0.
	QuotaBytes int64
}

// DefaultQuotaBytes is etcd's own default database quota.
const DefaultQuotaBytes = 2 << 30

// Server is a running embedded etcd member.
type Server struct {
	etcd     *embed.Etcd
	logLevel zap.AtomicLevel
	// ClientURL is the URL clients should dial.
	ClientURL string
}

// Start checks the data directory and the ports first, so that the usual
// mistakes get a clear message instead of etcd's raw error, then starts the
// member and waits until it serves requests.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "garrison"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := checkSpace(cfg.DataDir); err != nil {
		return nil, err
	}
	clientURL, err := url.Parse(cfg.ClientURL)
	if err != nil || clientURL.Host == "" {
		return nil, fmt.Errorf("etcd client URL %q: want a URL like http://127.0.0.1:2379", cfg.ClientURL)
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL, err = defaultPeerURL(clientURL)
		if err != nil {
			return nil, err
		}
	}
	peerURL, err := url.Parse(cfg.PeerURL)
	if err != nil || peerURL.Host == "" {
		return nil, fmt.Errorf("etcd peer URL %q: want a URL like http://127.0.0.1:2380", cfg.PeerURL)
	}
	for _, u := range []*url.URL{clientURL, peerURL} {
		if err := checkPortFree(u.Host); err != nil {
			return nil, err
		}
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.LogLevel = cfg.LogLevel
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("etcd log level %q: %w", cfg.LogLevel, err)
	}
	// Our own logger, so that Close can silence the errors etcd logs about
	// its listeners closing, which are expected then.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), level)))
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peerURL.String())
	// Keep a day of history for watchers that reconnect; older revisions are
	// compacted so the database does not grow without bound.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "24h"
	ec.QuotaBackendBytes = cfg.QuotaBytes

	e, err := startEtcd(ctx, ec)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-timer.C:
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd was not ready after %s", cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Server{etcd: e, logLevel: level, ClientURL: clientURL.String()}, nil
}

// Err reports a fatal error of the running member; garrison stops on it.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member gracefully: in-flight requests finish and the WAL
// is synced, so nothing acknowledged is lost.
func (s *Server) Close() {
	s.logLevel.SetLevel(zapcore.FatalLevel)
	s.etcd.Close()
}

// startEtcd runs embed.StartEtcd, which can block for good (on the file
// lock of a database another process holds), and gives up when ctx ends: a
// SIGTERM during start must stop garrison. The abandoned start is closed
// when it returns.
func startEtcd(ctx context.Context, ec *embed.Config) (*embed.Etcd, error) {
	type started struct {
		e   *embed.Etcd
		err error
	}
	done := make(chan started, 1)
	go func() {
		e, err := embed.StartEtcd(ec)
		done <- started{e, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("start embedded etcd in %s: %w", ec.Dir, r.err)
		}
		return r.e, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.e != nil {
				r.e.Close()
			}
		}()
		return nil, fmt.Errorf("stopped while starting embedded etcd in %s: %w", ec.Dir, context.Cause(ctx))
	}
}

// checkSpace fails when the data directory cannot hold etcd's write-ahead
// log: etcd preallocates each 64 MB segment, and one more ahead of need, and
// fails with a bare "no space left on device" (or, once running, exits on
// a failed commit) when it cannot.
func checkSpace(dir string) error {
	free, err := diskguard.FreeBytes(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	need := uint64(walSegments(dir)) * diskguard.WALSegmentBytes
	if free < need {
		return fmt.Errorf("data directory %s has %s free: etcd needs at least %s for its write-ahead log (64 MB segments, preallocated), plus room for its database; free some space or set --data-dir",
			dir, diskguard.Bytes(free), diskguard.Bytes(need))
	}
	return nil
}

// walSegments is how many new WAL segments etcd preallocates when it
// starts in dir: the first one and the next one for a new member, the next
// one for an existing member.
func walSegments(dir string) int {
	if _, err := os.Stat(filepath.Join(dir, "member", "wal")); err == nil {
		return 1
	}
	return 2
}

func defaultPeerURL(client *url.URL) (string, error) {
	host, port, err := net.SplitHostPort(client.Host)
	if err != nil {
		return "", fmt.Errorf("etcd client URL %q: %w", client.String(), err)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		return "", fmt.Errorf("etcd client URL %q: port %q is not a number", client.String(), port)
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(p+1))), nil
}

func checkDataDir(dir string) error {
	if dir == "" {
		return errors.New("data directory is empty: set --data-dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory %s is unusable: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	name := probe.Name()
	probe.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("data directory %s: remove probe %s: %w", dir, filepath.Base(name), err)
	}
	return nil
}

func checkPortFree(hostport string) error {
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return fmt.Errorf("etcd cannot listen on %s (is another etcd or garrison running?): %w", hostport, err)
	}
	return l.Close()
}
