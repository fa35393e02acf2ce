package project_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

func TestStoreRoundTripAndValidation(t *testing.T) {
	s := project.NewStore(etcdtest.New(t).Client(t))
	ctx := context.Background()
	err := s.Put(ctx, project.Project{Name: "Bad_Name", Repo: "ext::sh -c evil", MaxConcurrent: 99})
	var inv *project.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Put(bad) = %v, want InvalidError", err)
	}
	for _, field := range []string{"name:", "repo:", "secret:", "maxConcurrent:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	p := project.Project{Name: "account", Repo: "/srv/git/account.git", Secret: "s3cret", Secrets: map[string]string{"NPM_TOKEN": "t"}}
	if err := s.Put(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "account")
	if err != nil {
		t.Fatal(err)
	}
	if got.Pipeline != ".garrison.yml" || got.MaxConcurrent != 1 || got.KeepRuns != 50 || got.Secret != "s3cret" {
		t.Errorf("got %+v, want defaults applied and the secret kept", got)
	}
	v := got.Redacted()
	if v.Secret != "" || v.Secrets != nil || !v.HasSecret || v.SecretNames[0] != "NPM_TOKEN" {
		t.Errorf("redacted = %+v", v)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, project.ErrNotFound) {
		t.Errorf("Get(nobody) = %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("projects:\n  - name: account\n    repo: /srv/git/account.git\n    secret: s\n    branches: [main]\n    paths: ['**/*.go']\n"), 0o600)
	ps, err := project.LoadFile(good)
	if err != nil || len(ps) != 1 || ps[0].Branches[0] != "main" || ps[0].Paths[0] != "**/*.go" {
		t.Fatalf("LoadFile = %+v, %v", ps, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("projects:\n  - name: account\n    repo: r\n    secret: s\n    branchez: [main]\n"), 0o600)
	if _, err := project.LoadFile(bad); err == nil || !strings.Contains(err.Error(), "line 5") || !strings.Contains(err.Error(), "branchez") {
		t.Errorf("LoadFile(bad) = %v, want line 5 and the field", err)
	}
}
