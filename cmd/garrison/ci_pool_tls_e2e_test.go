package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/internal/certtest"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/pooltest"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/docker"
)

// TestRunnerPoolOverEtcdTLSAndAuth: garrison on Debian's etcd with client
// certificates required and auth on gives its runners the same client
// settings; a runner in its container claims a job from that etcd and
// runs it, with the API's token. Neither etcd's password nor the token
// is on a command line or in an env that docker inspect or GET /v2/apps
// shows: the runners read them, and the certificates, from a read-only
// directory.
func TestRunnerPoolOverEtcdTLSAndAuth(t *testing.T) {
	certs := certtest.New(t, "not-a-user")
	endpoint := startEtcdTLS(t, certs)
	enableEtcdAuth(t, endpoint, certs)
	const poolApp, password, token = "/ci/tls-runners", "gpw", "api-t0ken"
	d := dockertest.Client(t)
	t.Cleanup(func() { removeAppContainers(d, poolApp) }) // after garrison is killed
	addr := freeAddrs(t, 1)[0]
	base := "http://" + addr
	startGarrison(t, "up", "--addr", addr, "--data-dir", t.TempDir(), "--task-ports", "19800-19899", "--drain-delay", "100ms",
		"--etcd", endpoint, "--etcd-cacert", certs.CA, "--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey,
		"--etcd-user", "garrison", "--etcd-password", password, "--auth-token", token, "--ci-runner-pool", poolApp)
	waitHTTP(t, base+"/ping", 60*time.Second)
	poll.Until(t, 2*time.Minute, "the pool's runner healthy", func() (bool, string) {
		code, body := call(t, http.DefaultClient, "GET", base+"/v2/apps"+poolApp, "", "Bearer "+token)
		var st appStatus
		json.Unmarshal([]byte(body), &st)
		return code == http.StatusOK && st.App.TasksHealthy == 1, body
	})

	cli, err := registrar.NewClient([]string{endpoint}, registrar.WithTLS(certs.ClientTLS(t)), registrar.WithCredentials("garrison", password))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{Token: token})
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var log garrisontest.Buffer
	// The claim's note and the output come by two paths, in either order.
	code, err := p.Run(ctx, pool.Job{ID: "tls", Script: "echo claimed over TLS", Timeout: time.Minute}, t.TempDir(), &log)
	if code != 0 || err != nil || !strings.Contains(log.String(), "took the job") || !strings.Contains(log.String(), "claimed over TLS\n") {
		t.Fatalf("job: %d %v\n%s", code, err, log.String())
	}

	if code, body := call(t, http.DefaultClient, "GET", base+"/v2/apps"+poolApp, "", "Bearer "+token); code != http.StatusOK || strings.Contains(body, password) || strings.Contains(body, token) {
		t.Errorf("GET the pool app: %d, shows a secret:\n%s", code, body)
	}
	list, err := d.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+poolApp))})
	if err != nil || len(list) == 0 {
		t.Fatalf("the runner's container: %v %v", list, err)
	}
	for _, c := range list {
		info, err := d.ContainerInspect(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		seen := strings.Join(append(append([]string{info.Path}, info.Args...), info.Config.Env...), " ")
		if strings.Contains(seen, password) || strings.Contains(seen, token) || !strings.Contains(seen, "--etcd-password-file") || !strings.Contains(seen, "--token-file") {
			t.Errorf("docker inspect of the runner shows: %s", seen)
		}
		for _, m := range info.Mounts {
			if m.RW {
				t.Errorf("the runner's etcd settings are mounted writable: %+v", m)
			}
		}
	}
}
