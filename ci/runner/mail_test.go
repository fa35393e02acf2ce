package runner_test

import (
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/mailer"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/smtptest"
)

// TestNotificationMail: a run's end is mailed to the recipients of the
// notifications whose on names its state, through a real SMTP server
// (aiosmtpd) over STARTTLS with AUTH PLAIN.
func TestNotificationMail(t *testing.T) {
	r := newRig(t, project.Project{})
	srv := smtptest.Start(t, smtptest.Options{TLS: true, User: "ci", Password: "mail-pw"})
	cas, err := mailer.LoadCAs(srv.CA)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mailer.New(mailer.Config{Addr: srv.Addr, From: "garrison <ci@ktv.example>", Username: "ci", Password: "mail-pw", StartTLS: true, RootCAs: cas})
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Mail = m
	file := r.pipelineFile("exit 3") + "notify:\n  - mail: [\"Mei <mei@ktv.example>\", ops@ktv.example]\n    on: [failed]\n  - mail: happy@ktv.example\n    on: [passed]\n"
	x := r.commitAndQueue(map[string]string{".garrison.yml": file})
	r.start()
	r.waitState(x.ID, run.Failed)
	poll.Until(t, time.Minute, "a mail", func() (bool, string) {
		n := len(srv.Messages(t))
		return n > 0, ""
	})
	msgs := srv.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d mails", len(msgs))
	}
	h := msgs[0].Header
	subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if want := "[garrison] " + x.ID + " failed (main " + x.Push.After[:12] + ")"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	if h.Get("X-RcptTo") != "mei@ktv.example, ops@ktv.example" {
		t.Errorf("recipients %q", h.Get("X-RcptTo"))
	}
	b, _ := io.ReadAll(quotedprintable.NewReader(msgs[0].Body))
	body := strings.ReplaceAll(string(b), "\r\n", "\n")
	for _, want := range []string{
		"Run " + x.ID + " of project account failed: build step exited with code 3.",
		"revision:   " + x.Push.After,
		"committer:  Mei <mei@ktv.example>",
		"build  failed  exit 3",
		"garrison runs log " + x.ID,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}
