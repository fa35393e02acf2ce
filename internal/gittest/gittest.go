// Package gittest makes real Git repositories for tests with the git
// command: a bare repository (what a self-hosted server holds) and a
// working clone that commits and pushes to it.
package gittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Env is the environment every git call runs with: a fixed identity and
// no user or system configuration.
func Env() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Mei", "GIT_AUTHOR_EMAIL=mei@ktv.example",
		"GIT_COMMITTER_NAME=Mei", "GIT_COMMITTER_EMAIL=mei@ktv.example",
	)
}

// Git runs git in dir and returns its trimmed output, failing the test on
// error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Repo is a bare repository with a working clone.
type Repo struct {
	Bare string // the bare repository's path
	Work string // a clone that commits and pushes to it
	t    testing.TB
}

// New makes a bare repository (default branch main) and a clone of it.
func New(t testing.TB) *Repo {
	t.Helper()
	dir := t.TempDir()
	r := &Repo{Bare: filepath.Join(dir, "repo.git"), Work: filepath.Join(dir, "work"), t: t}
	Git(t, dir, "init", "-q", "--bare", "--initial-branch=main", r.Bare)
	Git(t, dir, "clone", "-q", r.Bare, r.Work)
	Git(t, r.Work, "checkout", "-q", "-B", "main")
	return r
}

// Commit writes files (path -> content) in the clone, commits them and
// returns the commit's id.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	Git(r.t, r.Work, "add", "-A")
	Git(r.t, r.Work, "commit", "-q", "-m", msg)
	return Git(r.t, r.Work, "rev-parse", "HEAD")
}

// Push pushes the clone's main branch and returns git's output (the
// remote's hooks print there).
func (r *Repo) Push() string {
	r.t.Helper()
	return Git(r.t, r.Work, "push", "origin", "main")
}

// HookGarrison installs garrison's post-receive hook (script is the path
// of ci/hooks/post-receive) in the bare repository: a push then calls
// garrison at url for project, with the project's token.
func (r *Repo) HookGarrison(script, url, project, token string) {
	r.t.Helper()
	data, err := os.ReadFile(script)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.Bare, "hooks", "post-receive"), data, 0o755); err != nil {
		r.t.Fatal(err)
	}
	Git(r.t, r.Bare, "config", "garrison.url", url)
	Git(r.t, r.Bare, "config", "garrison.project", project)
	Git(r.t, r.Bare, "config", "garrison.token", token)
}
