package ci

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/headquarter/app"
)

// stored is def as garrison's API answers it after a create and a scale:
// normalized, a service port assigned to its port 0, n instances.
func stored(t *testing.T, def map[string]any, n int) json.RawMessage {
	t.Helper()
	b, _ := json.Marshal(def)
	a, err := app.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	a, err = app.AssignServicePorts(app.Normalize(a), map[int]bool{})
	if err != nil {
		t.Fatal(err)
	}
	a.Instances = n
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSamePoolComparesWhatGarrisonSets: the pool app as garrison stored
// it, scaled by the autoscaler, is the same as the definition it was
// made from; a different image, args, env or volumes is not.
func TestSamePoolComparesWhatGarrisonSets(t *testing.T) {
	vols := []map[string]any{{"containerPath": RunnerSecretsDir, "hostPath": "/data/runner-secrets", "mode": "RO"}}
	want := PoolApp("/ci/runners", "garrison/runner:new", []string{"--etcd", "https://127.0.0.1:2379"}, map[string]string{"GARRISON_TOKEN": "t"}, vols)
	for _, tc := range []struct {
		name string
		have map[string]any
		same bool
	}{
		{"as created, scaled to 3", want, true},
		{"cpus and mem changed by a user", func() map[string]any { d := maps.Clone(want); d["cpus"], d["mem"] = 2, 4096; return d }(), true},
		{"another grace period", func() map[string]any { d := maps.Clone(want); d["taskKillGracePeriodSeconds"] = 3; return d }(), false},
		{"an older image", PoolApp("/ci/runners", "garrison/runner:old", []string{"--etcd", "https://127.0.0.1:2379"}, map[string]string{"GARRISON_TOKEN": "t"}, vols), false},
		{"older args", PoolApp("/ci/runners", "garrison/runner:new", []string{"--etcd", "http://127.0.0.1:2379"}, map[string]string{"GARRISON_TOKEN": "t"}, vols), false},
		{"another env", PoolApp("/ci/runners", "garrison/runner:new", []string{"--etcd", "https://127.0.0.1:2379"}, map[string]string{"GARRISON_USER": "u", "GARRISON_PASSWORD": "p"}, vols), false},
		{"no volume", PoolApp("/ci/runners", "garrison/runner:new", []string{"--etcd", "https://127.0.0.1:2379"}, map[string]string{"GARRISON_TOKEN": "t"}, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			same, err := samePool(stored(t, tc.have, 3), want)
			if err != nil || same != tc.same {
				t.Errorf("samePool = %v, %v; want %v", same, err, tc.same)
			}
		})
	}
}

// TestRunnerSettingsKeepSecretsOffTheCommandLine: TLS files, etcd's
// password and the API's token or password reach the runners through
// one read-only directory; the args name files, never a secret, and the
// copies are 0600 in a 0700 directory. With none of them, no directory.
func TestRunnerSettingsKeepSecretsOffTheCommandLine(t *testing.T) {
	args, vols, err := runnerSettings(RunnerEtcd{Endpoints: []string{"http://127.0.0.1:2379"}}, deploy.Auth{}, t.TempDir())
	if err != nil || !slices.Equal(args, []string{"--etcd", "http://127.0.0.1:2379"}) || vols != nil {
		t.Fatalf("plain etcd, open API: %q %v %v", args, vols, err)
	}

	src := t.TempDir()
	for _, f := range []string{"ca", "cert", "key"} {
		os.WriteFile(filepath.Join(src, f), []byte(f+" PEM"), 0o644)
	}
	data := t.TempDir()
	re := RunnerEtcd{Endpoints: []string{"https://a:2379", "https://b:2379"}, CACert: filepath.Join(src, "ca"),
		Cert: filepath.Join(src, "cert"), Key: filepath.Join(src, "key"), User: "garrison", Password: "s3cret pw"}
	args, vols, err = runnerSettings(re, deploy.Auth{Username: "ci", Password: "api pw"}, data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--etcd", "https://a:2379,https://b:2379", "--etcd-user", "garrison", "--user", "ci",
		"--etcd-cacert", RunnerSecretsDir + "/etcd-ca.pem", "--etcd-cert", RunnerSecretsDir + "/etcd-cert.pem",
		"--etcd-key", RunnerSecretsDir + "/etcd-key.pem", "--etcd-password-file", RunnerSecretsDir + "/etcd-password",
		"--password-file", RunnerSecretsDir + "/api-password"}
	if !slices.Equal(args, want) {
		t.Errorf("args %q\nwant %q", args, want)
	}
	dir := filepath.Join(data, "runner-secrets")
	if len(vols) != 1 || vols[0]["hostPath"] != dir || vols[0]["containerPath"] != RunnerSecretsDir || vols[0]["mode"] != "RO" {
		t.Errorf("volumes %v", vols)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v", st.Mode(), err)
	}
	for name, content := range map[string]string{"etcd-ca.pem": "ca PEM", "etcd-cert.pem": "cert PEM", "etcd-key.pem": "key PEM",
		"etcd-password": "s3cret pw", "api-password": "api pw"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		st, _ := os.Stat(filepath.Join(dir, name))
		if err != nil || string(b) != content || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %q %v %v", name, b, st.Mode(), err)
		}
	}
	def, _ := json.Marshal(poolApp(Config{RunnerPool: "/ci/runners", MarathonAuth: deploy.Auth{Username: "ci", Password: "api pw"}}, "img", args, vols))
	if strings.Contains(string(def), "s3cret") || strings.Contains(string(def), "api pw") {
		t.Errorf("a password is in the pool app:\n%s", def)
	}

	args, _, err = runnerSettings(RunnerEtcd{Endpoints: []string{"http://e"}}, deploy.Auth{Token: "tok"}, data)
	if err != nil || !slices.Equal(args, []string{"--etcd", "http://e", "--token-file", RunnerSecretsDir + "/api-token"}) {
		t.Errorf("a token: %q %v", args, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "api-token")); string(b) != "tok" {
		t.Errorf("api-token: %q", b)
	}

	re.CACert = filepath.Join(src, "missing")
	if _, _, err := runnerSettings(re, deploy.Auth{}, data); err == nil || !strings.Contains(err.Error(), "--etcd-cacert") {
		t.Errorf("a missing CA file: %v", err)
	}
}
