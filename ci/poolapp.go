package ci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/atomicfile"
)

// PoolApp is the runner pool's app definition: one instance to start
// with, in a container of image (host networking, no new privileges, an
// init), one port, health-checked; its autoscale rule sizes it after. The
// runners register themselves (GARRISON_REGISTER=self) with their task
// id. cpus and mem are the Docker driver's hard limits of each runner,
// and so of the test steps it runs. volumes are the container's
// (Marathon's container.volumes), none when nil.
func PoolApp(id, image string, args []string, env map[string]string, volumes []map[string]any) map[string]any {
	container := map[string]any{"type": "DOCKER", "docker": map[string]any{"image": image, "network": "HOST",
		// init reaps what steps leave behind in the long-lived container.
		"parameters": []map[string]any{{"key": "security-opt", "value": "no-new-privileges"}, {"key": "init", "value": "true"}}}}
	if volumes != nil {
		container["volumes"] = volumes
	}
	return map[string]any{"id": id, "args": args, "env": env, "instances": 1, "cpus": 1, "mem": 1024,
		"container": container,
		// A scale-down or an update that stops a busy runner waits for
		// its job.
		"taskKillGracePeriodSeconds": int(runnerd.DefaultDrain / time.Second),
		"portDefinitions":            []map[string]any{{"port": 0, "name": "http"}},
		"labels":                     map[string]string{"garrison.role": "ci-runner-pool", "GARRISON_REGISTER": "self"},
		"healthChecks": []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0,
			"gracePeriodSeconds": 10, "intervalSeconds": 2, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}}}
}

// poolApp is cfg's pool app around the runner image; args and volumes
// are runnerSettings'. The jobs carry garrison's URL: a runner needs
// only etcd.
func poolApp(cfg Config, image string, args []string, volumes []map[string]any) map[string]any {
	return PoolApp(cfg.RunnerPool, image, args, map[string]string{}, volumes)
}

// RunnerEtcd is how the runners reach etcd: garrison's own client
// settings.
type RunnerEtcd struct {
	Endpoints []string
	// CACert, Cert and Key are PEM files on this machine; empty: none.
	CACert, Cert, Key string
	// User and Password are etcd's auth; empty: none.
	User, Password string
}

// RunnerSecretsDir is where a runner's container sees the files of its
// etcd and API credentials.
const RunnerSecretsDir = "/run/garrison/secrets"

// runnerSettings are the runners' flags and the volumes that bring them
// their files. The certificates, the key, etcd's password and the API's
// token or password are copied into one directory under dataDir (0700,
// files 0600) mounted read-only at RunnerSecretsDir: no secret is on a
// command line or in the app's env, where ps, docker inspect and GET
// /v2/apps would show it, and a directory mount (not one per file) sees
// the files garrison writes again at its next start.
func runnerSettings(re RunnerEtcd, api deploy.Auth, dataDir string) (args []string, volumes []map[string]any, err error) {
	args = []string{"--etcd", strings.Join(re.Endpoints, ",")}
	var files []secretFile
	for _, f := range []struct{ flag, src, name string }{
		{"--etcd-cacert", re.CACert, "etcd-ca.pem"}, {"--etcd-cert", re.Cert, "etcd-cert.pem"}, {"--etcd-key", re.Key, "etcd-key.pem"},
	} {
		if f.src == "" {
			continue
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, nil, fmt.Errorf("runner pool: %s: %w", f.flag, err)
		}
		files = append(files, secretFile{f.flag, f.name, data})
	}
	if re.User != "" {
		args = append(args, "--etcd-user", re.User)
		files = append(files, secretFile{"--etcd-password-file", "etcd-password", []byte(re.Password)})
	}
	switch {
	case api.Token != "":
		files = append(files, secretFile{"--token-file", "api-token", []byte(api.Token)})
	case api.Username != "":
		args = append(args, "--user", api.Username)
		files = append(files, secretFile{"--password-file", "api-password", []byte(api.Password)})
	}
	if len(files) == 0 {
		return args, nil, nil
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "runner-secrets"))
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		err = os.Chmod(dir, 0o700)
	}
	for _, f := range files {
		if err == nil {
			err = atomicfile.Write(filepath.Join(dir, f.name), f.data, true)
		}
		args = append(args, f.flag, RunnerSecretsDir+"/"+f.name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("runner pool: its secrets: %w", err)
	}
	return args, []map[string]any{{"containerPath": RunnerSecretsDir, "hostPath": dir, "mode": "RO"}}, nil
}

// secretFile is one file of runnerSettings' directory and the runner's
// flag that names it.
type secretFile struct {
	flag, name string
	data       []byte
}

// ensurePool builds the runner image and brings the pool app to what
// this garrison would create, retrying until the API answers (garrison's
// own may still be starting) and no deployment holds the app.
func ensurePool(ctx context.Context, target *deploy.Marathon, cfg Config, args []string, volumes []map[string]any, logger *slog.Logger) {
	image := ""
	for {
		var err error
		if image == "" {
			var log strings.Builder
			image, err = runnerd.BuildImage(ctx, cfg.Docker, cfg.RunnerBinary, &log)
			if err != nil {
				image = ""
				err = fmt.Errorf("%w\n%s", err, log.String())
			}
		}
		if err == nil {
			if err = reconcilePool(ctx, target, poolApp(cfg, image, args, volumes), logger); err == nil {
				return
			}
		}
		logger.Warn("runner pool not in place yet", "app", cfg.RunnerPool, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// errCreatedMeanwhile is a pool app another garrison created between our
// read and our create: it is compared on the next try.
var errCreatedMeanwhile = errors.New("created meanwhile by another garrison")

// reconcilePool creates the pool app want describes when Marathon lacks
// it, and when the one it has differs from want (an older garrison's
// image, args, env, volumes, ...) updates it as a user's PUT would: a
// deployment that replaces the runners rolling, each stopped runner
// finishing its job within its drain (taskKillGracePeriodSeconds). The
// fields in userSet are left as the autoscaler or a user set them; an
// app that matches is left alone.
func reconcilePool(ctx context.Context, target *deploy.Marathon, want map[string]any, logger *slog.Logger) error {
	id, _ := want["id"].(string)
	have, ok, err := target.App(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		created, err := target.Ensure(ctx, want)
		switch {
		case err != nil:
			return err
		case !created:
			return errCreatedMeanwhile
		}
		logger.Info("runner pool created", "app", id, "image", poolImage(want))
		return nil
	}
	same, err := samePool(have, want)
	if err != nil {
		return fmt.Errorf("runner pool %s: %w", id, err)
	}
	if same {
		logger.Info("runner pool up to date", "app", id, "image", poolImage(want))
		return nil
	}
	update := maps.Clone(want)
	for _, k := range userSet {
		delete(update, k)
	}
	dep, err := target.Update(ctx, id, update)
	if err != nil {
		return err
	}
	logger.Info("runner pool updated", "app", id, "image", poolImage(want), "deployment", dep)
	return nil
}

func poolImage(def map[string]any) any {
	c, _ := def["container"].(map[string]any)
	d, _ := c["docker"].(map[string]any)
	return d["image"]
}

// userSet are the pool app's fields garrison sets only when it creates
// the app: its count is the autoscaler's (or a user's), and a runner's
// cpus and mem are the user's to change through /v2/apps.
var userSet = []string{"instances", "cpus", "mem"}

// samePool reports whether the app Marathon has (have, as GET returns
// it) is want but for userSet and what Marathon sets: versions, and the
// service port assigned to a port 0.
func samePool(have json.RawMessage, want map[string]any) (bool, error) {
	h, err := app.Decode(have)
	if err != nil {
		return false, fmt.Errorf("read the existing app: %w", err)
	}
	b, err := json.Marshal(want)
	if err != nil {
		return false, err
	}
	w, err := app.Decode(b)
	if err != nil {
		return false, err
	}
	h, w = app.Normalize(h), app.Normalize(w)
	w.Instances, w.CPUs, w.Mem = h.Instances, h.CPUs, h.Mem
	if len(w.PortDefinitions) == len(h.PortDefinitions) {
		for i, pd := range w.PortDefinitions {
			if pd.Port == 0 {
				w.PortDefinitions[i].Port = h.PortDefinitions[i].Port
			}
		}
	}
	return !app.IsUpgrade(h, w), nil
}
