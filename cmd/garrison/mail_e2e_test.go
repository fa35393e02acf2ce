package main

import (
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/smtptest"
)

// TestPipelineMailThroughConfiguredServer: `garrison up` with its SMTP
// server in the config file (STARTTLS, AUTH PLAIN, a private CA) mails a
// failed run to the recipients .garrison.yml names. The server is
// aiosmtpd, a real one.
func TestPipelineMailThroughConfiguredServer(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	srv := smtptest.Start(t, smtptest.Options{TLS: true, User: "ci", Password: "mail-pw"})
	repo := gittest.New(t)
	dir := t.TempDir()
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: mailed\n    repo: "+repo.Bare+"\n    secret: hook-secret\n"), 0o600)
	config := filepath.Join(dir, "garrison.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("smtp-addr: %s\nsmtp-from: garrison <ci@ktv.example>\nsmtp-user: ci\nsmtp-password: mail-pw\nsmtp-cacert: %s\n",
		srv.Addr, srv.CA)), 0o600)
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", filepath.Join(dir, "data"),
		"--ci-projects", projects, "--config", config)
	waitHTTP(t, base+"/ping", 30*time.Second)

	repo.HookGarrison("../../ci/hooks/post-receive", base, "mailed", "hook-secret")
	repo.Commit("broken build", map[string]string{".garrison.yml": fmt.Sprintf(
		"app: /e2e/mailed\nbuild:\n  image: %s\n  commands: [\"exit 4\"]\nimage:\n  files: [{from: x, to: /x}]\n"+
			"notify:\n  - mail: [\"Mei <mei@ktv.example>\"]\n    on: [failed]\n", img)})
	if out := repo.Push(); !strings.Contains(out, `"run":"mailed.1"`) {
		t.Fatalf("push output:\n%s", out)
	}
	poll.Until(t, 3*time.Minute, "the failure mailed", func() (bool, string) {
		return len(srv.Messages(t)) > 0, ""
	})
	h := srv.Messages(t)[0].Header
	subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if !strings.HasPrefix(subject, "[garrison] mailed.1 failed (main ") || h.Get("X-RcptTo") != "mei@ktv.example" || h.Get("X-MailFrom") != "ci@ktv.example" {
		t.Errorf("mail: subject %q, to %q, from %q", subject, h.Get("X-RcptTo"), h.Get("X-MailFrom"))
	}
}
