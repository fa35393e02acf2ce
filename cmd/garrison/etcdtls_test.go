package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/certtest"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// startEtcdTLS runs Debian's etcd serving clients over TLS only, requiring
// a client certificate signed by the test CA. Ports are picked free and
// etcd is started again on new ones if it exits while starting (another
// process took a port in between).
func startEtcdTLS(t *testing.T, certs *certtest.Files) string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addrs := freeAddrs(t, 1)
		host, port := splitHostPort(t, addrs[0])
		client := "https://" + addrs[0]
		peer := fmt.Sprintf("http://%s:%d", host, port+1)
		dir := t.TempDir()
		log, err := os.Create(filepath.Join(dir, "etcd.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(etcdtest.Binary(), "--name", "tls", "--data-dir", filepath.Join(dir, "etcd"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "tls="+peer,
			"--cert-file", certs.ServerCert, "--key-file", certs.ServerKey, "--trusted-ca-file", certs.CA, "--client-cert-auth",
			"--log-level", "error")
		cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", etcdtest.Binary(), err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); log.Close(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })

		cli, err := registrar.NewClient([]string{client}, registrar.WithTLS(certs.ClientTLS(t)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err = cli.Get(ctx, "probe")
			cancel()
			if err == nil {
				cli.Close()
				return client
			}
			select {
			case <-exited:
			default:
				if time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				t.Fatalf("etcd over TLS not ready: %v", err)
			}
			break
		}
		cli.Close()
		if attempt == 2 {
			b, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Fatalf("etcd over TLS exited while starting:\n%s", b)
		}
	}
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return addr[:i], port
}

// enableEtcdAuth turns etcd's auth on at endpoint: users root (rootpw)
// and garrison (gpw), the latter allowed /garrison/ and /service/ only,
// as the README shows.
func enableEtcdAuth(t *testing.T, endpoint string, certs *certtest.Files) {
	t.Helper()
	admin, err := registrar.NewClient([]string{endpoint}, registrar.WithTLS(certs.ClientTLS(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "garrison"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "garrison", "/garrison/", clientv3.GetPrefixRangeEnd("/garrison/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "garrison", "/service/", clientv3.GetPrefixRangeEnd("/service/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "garrison", "gpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "garrison", "garrison"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth set-up step %d: %v", i, err)
		}
	}
}

// TestUpWithExternalEtcdOverTLSAndAuth: against Debian's etcd with client
// certificates required and etcd auth enabled, `garrison up --etcd` with
// --etcd-cacert/--etcd-cert/--etcd-key and --etcd-user/--etcd-password
// (a user allowed /garrison/ and /service/ only, as the README shows) runs
// and writes; without the user it refuses to start, naming the settings.
func TestUpWithExternalEtcdOverTLSAndAuth(t *testing.T) {
	certs := certtest.New(t, "not-a-user")
	endpoint := startEtcdTLS(t, certs)
	enableEtcdAuth(t, endpoint, certs)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	root, err := registrar.NewClient([]string{endpoint}, registrar.WithTLS(certs.ClientTLS(t)), registrar.WithCredentials("root", "rootpw"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	tlsArgs := []string{"--etcd", endpoint, "--etcd-cacert", certs.CA, "--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey}
	t.Run("without etcd credentials", func(t *testing.T) {
		addr := freeAddrs(t, 1)[0]
		p := startGarrison(t, append([]string{"up", "--addr", addr, "--data-dir", t.TempDir()}, tlsArgs...)...)
		p.WaitExit(t, 60*time.Second)
		if !strings.Contains(p.Stderr(), "refuses garrison's credentials (--etcd-user/--etcd-password, --etcd-cert)") {
			t.Fatalf("stderr:\n%s", p.Stderr())
		}
	})

	addr := freeAddrs(t, 1)[0]
	base := "http://" + addr
	startGarrison(t, append([]string{"up", "--addr", addr, "--data-dir", t.TempDir(), "--etcd-user", "garrison", "--etcd-password", "gpw"}, tlsArgs...)...)
	waitHTTP(t, base+"/ping", 60*time.Second)
	if code, body := call(t, http0, "POST", base+"/v2/apps", `{"id":"/secure/app","cmd":"sleep 1000","instances":0}`, ""); code != 201 {
		t.Fatalf("POST /v2/apps: %d %s", code, body)
	}
	got, err := root.Get(ctx, "/garrison/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range got.Kvs {
		found = found || strings.Contains(string(kv.Key), "secure")
	}
	if !found {
		t.Fatalf("the app is not in etcd: %d keys under /garrison/", len(got.Kvs))
	}
	reg, err := registrar.Register(ctx, root, "vault", "v-1", registrar.Endpoint{Addr: "127.0.0.1:4100"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	if body := waitHTTP(t, base+"/api/v1/services/vault", 10*time.Second); !strings.Contains(body, "127.0.0.1:4100") {
		t.Fatalf("registry over TLS: %s", body)
	}

	// `garrison agent` takes the same settings: its /metrics answers once
	// it has read garrison's cluster id from etcd.
	metrics := freeAddrs(t, 1)[0]
	agent := startGarrison(t, append([]string{"agent", "--metrics-addr", metrics, "--etcd-user", "garrison", "--etcd-password", "gpw"}, tlsArgs...)...)
	waitHTTP(t, "http://"+metrics+"/metrics", 60*time.Second)
	if strings.Contains(agent.Stderr(), "gpw") {
		t.Fatalf("the agent logs the etcd password:\n%s", agent.Stderr())
	}
}
