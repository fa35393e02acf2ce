package mailer_test

import (
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/ci/mailer"
	"github.com/garrisonhq/garrison/internal/smtptest"
)

// The server in these tests is aiosmtpd, a real SMTP server (Debian's
// python3-aiosmtpd), delivering to a Maildir.

func newMailer(t *testing.T, cfg mailer.Config) *mailer.Mailer {
	t.Helper()
	m, err := mailer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSendOverStartTLSWithAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: true, User: "garrison", Password: "mail-pw"})
	cas, err := mailer.LoadCAs(srv.CA)
	if err != nil {
		t.Fatal(err)
	}
	m := newMailer(t, mailer.Config{Addr: srv.Addr, From: "garrison CI <ci@example.com>", Username: "garrison", Password: "mail-pw",
		StartTLS: true, RootCAs: cas, Hello: "garrison.test"})
	body := "Run shop.3 failed.\n.a line that starts with a dot\n" + strings.Repeat("long ", 40) + "\nnon-ASCII: ünïcode ✓\n"
	if err := m.Send(context.Background(), []string{"Mei Chen <mei@example.com>", "ops@example.com"}, "run shop.3 failed ✗\r\nBcc: x@evil.example", body); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered", len(msgs))
	}
	h := msgs[0].Header
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if subject != "run shop.3 failed ✗  Bcc: x@evil.example" || h.Get("Bcc") != "" {
		t.Errorf("subject %q (Bcc %q)", subject, h.Get("Bcc"))
	}
	if h.Get("From") != `"garrison CI" <ci@example.com>` || h.Get("To") != `"Mei Chen" <mei@example.com>, <ops@example.com>` {
		t.Errorf("From %q To %q", h.Get("From"), h.Get("To"))
	}
	// aiosmtpd's Mailbox records the envelope.
	if h.Get("X-MailFrom") != "ci@example.com" || h.Get("X-RcptTo") != "mei@example.com, ops@example.com" {
		t.Errorf("envelope: from %q to %q", h.Get("X-MailFrom"), h.Get("X-RcptTo"))
	}
	got, err := io.ReadAll(quotedprintable.NewReader(msgs[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ReplaceAll(string(got), "\r\n", "\n") != body {
		t.Errorf("body:\n%q\nwant\n%q", got, body)
	}
}

func TestRefusals(t *testing.T) {
	tlsSrv := smtptest.Start(t, smtptest.Options{TLS: true, User: "garrison", Password: "mail-pw"})
	cas, err := mailer.LoadCAs(tlsSrv.CA)
	if err != nil {
		t.Fatal(err)
	}
	plain := smtptest.Start(t, smtptest.Options{})
	send := func(cfg mailer.Config) error {
		return newMailer(t, cfg).Send(context.Background(), []string{"mei@example.com"}, "s", "b")
	}
	for _, tc := range []struct {
		name string
		cfg  mailer.Config
		want string
	}{
		{"wrong password", mailer.Config{Addr: tlsSrv.Addr, From: "ci@example.com", Username: "garrison", Password: "nope", StartTLS: true, RootCAs: cas},
			"AUTH PLAIN as garrison: 535"},
		{"untrusted certificate", mailer.Config{Addr: tlsSrv.Addr, From: "ci@example.com", Username: "garrison", Password: "mail-pw", StartTLS: true},
			"STARTTLS: tls: failed to verify certificate"},
		{"no STARTTLS offered", mailer.Config{Addr: plain.Addr, From: "ci@example.com", StartTLS: true},
			"the server offers no STARTTLS"},
		{"no AUTH offered", mailer.Config{Addr: plain.Addr, From: "ci@example.com", Username: "u", Password: "p"},
			"the server offers no AUTH"},
		// The server refuses mail before STARTTLS.
		{"TLS off where required", mailer.Config{Addr: tlsSrv.Addr, From: "ci@example.com"},
			"530"},
	} {
		if err := send(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if n := len(tlsSrv.Messages(t)) + len(plain.Messages(t)); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
	// A relay on this machine, in the clear and without AUTH, takes it.
	if err := send(mailer.Config{Addr: plain.Addr, From: "ci@example.com"}); err != nil {
		t.Fatal(err)
	}
	if n := len(plain.Messages(t)); n != 1 {
		t.Errorf("%d messages through the relay", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  mailer.Config
		want string
	}{
		{mailer.Config{Addr: "mail.example.com", From: "ci@example.com"}, "want host:port"},
		{mailer.Config{Addr: "mail.example.com:587"}, "without a sender"},
		{mailer.Config{Addr: "mail.example.com:587", From: "ci"}, `sender "ci": mail: missing '@'`},
		{mailer.Config{Addr: "mail.example.com:587", From: "ci@example.com", Username: "u"}, "set both or neither"},
	} {
		if _, err := mailer.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	m := newMailer(t, mailer.Config{Addr: "127.0.0.1:1", From: "ci@example.com"})
	if err := m.Send(context.Background(), []string{"not an address"}, "s", "b"); err == nil || !strings.Contains(err.Error(), `recipient "not an address"`) {
		t.Errorf("bad recipient: %v", err)
	}
}
