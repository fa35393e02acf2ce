package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/ci/push"
	"github.com/garrisonhq/garrison/internal/gittest"
)

// TestPostReceiveHookPostsPushes installs ci/hooks/post-receive in a real
// bare repository and pushes to it: garrison's generic hook receives each
// push with the changed files, authenticated by the project's token.
func TestPostReceiveHookPostsPushes(t *testing.T) {
	e := newEnv(t)
	repo := gittest.New(t)
	script, err := os.ReadFile("../hooks/post-receive")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo.Bare, "hooks", "post-receive"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	gittest.Git(t, repo.Bare, "config", "garrison.url", e.url)
	gittest.Git(t, repo.Bare, "config", "garrison.project", "account")
	gittest.Git(t, repo.Bare, "config", "garrison.token", secret)

	first := repo.Commit("first", map[string]string{"main.go": "package main\n", "docs/a b \"q\".md": "x"})
	out := repo.Push()
	if !strings.Contains(out, `"run":"account.1"`) {
		t.Fatalf("push output does not show the queued run:\n%s", out)
	}
	second := repo.Commit("second", map[string]string{"main.go": "package main // 2\n", "new.go": "package main\n"})
	if err := os.Remove(filepath.Join(repo.Work, "docs", "a b \"q\".md")); err != nil {
		t.Fatal(err)
	}
	gittest.Git(t, repo.Work, "commit", "-q", "-am", "third")
	third := gittest.Git(t, repo.Work, "rev-parse", "HEAD")
	repo.Push()

	got := e.rec.got()
	if len(got) != 2 {
		t.Fatalf("%d pushes received, want 2: %+v", len(got), got)
	}
	p := got[0]
	if p.Provider != "generic" || p.Ref != "refs/heads/main" || p.Before != push.ZeroSHA || p.After != first ||
		p.RepoURL != repo.Bare || p.Committer.Email != "mei@ktv.example" || p.Delivery != "post-receive:refs/heads/main:"+first {
		t.Errorf("first push = %+v", p)
	}
	p = got[1]
	if p.Before != first || p.After != third || len(p.Commits) != 1 {
		t.Fatalf("second push = %+v (second commit %s)", p, second)
	}
	c := p.Commits[0]
	if strings.Join(c.Added, ",") != "new.go" || strings.Join(c.Modified, ",") != "main.go" || strings.Join(c.Removed, ",") != `docs/a b "q".md` || c.Message != "third" {
		t.Errorf("commit = %+v", c)
	}
}
