// Package mailer sends garrison's notification mail through a configured
// SMTP server (a company relay, a mail provider's submission port): one
// plain-text message per notification, over STARTTLS and with AUTH PLAIN
// when configured. It queues nothing: a server that does not take the
// message is an error for the caller to log.
package mailer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"time"
)

// DefaultTimeout bounds one message, connection to QUIT.
const DefaultTimeout = 30 * time.Second

// Config is the SMTP server and who garrison sends as.
type Config struct {
	// Addr is the server's host:port (587 for submission, 25 for a relay).
	Addr string
	// From is the sender, "garrison <ci@example.com>" or an address.
	From string
	// Username and Password authenticate with AUTH PLAIN; empty sends
	// without authenticating.
	Username, Password string
	// StartTLS requires the server to switch to TLS (STARTTLS) before
	// anything else is said; false talks in the clear, for a relay on
	// the same machine.
	StartTLS bool
	// RootCAs verify the server's certificate; nil uses the system's.
	RootCAs *x509.CertPool
	// Timeout bounds one message (default DefaultTimeout).
	Timeout time.Duration
	// Hello is the name garrison gives in EHLO (default: the host name).
	Hello string
}

// Mailer sends messages through one server.
type Mailer struct {
	cfg  Config
	host string
	from *mail.Address
}

// New checks cfg and returns a mailer; nothing is dialled yet.
func New(cfg Config) (*Mailer, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("SMTP server %q: want host:port, e.g. mail.example.com:587", cfg.Addr)
	}
	if cfg.From == "" {
		return nil, errors.New("SMTP server without a sender: set the from address")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("sender %q: %w", cfg.From, err)
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("SMTP user and password go together: set both or neither")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Hello == "" {
		cfg.Hello, _ = os.Hostname()
		if cfg.Hello == "" {
			cfg.Hello = "localhost"
		}
	}
	return &Mailer{cfg: cfg, host: host, from: from}, nil
}

// LoadCAs reads a PEM file of CA certificates for Config.RootCAs.
func LoadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SMTP CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("SMTP CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Send mails subject and body (plain text) to every address of to.
func (m *Mailer) Send(ctx context.Context, to []string, subject, body string) error {
	rcpts := make([]*mail.Address, 0, len(to))
	for _, t := range to {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("recipient %q: %w", t, err)
		}
		rcpts = append(rcpts, a)
	}
	if len(rcpts) == 0 {
		return errors.New("no recipients")
	}
	msg, err := m.message(rcpts, subject, body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	if err := m.deliver(ctx, rcpts, msg); err != nil {
		return fmt.Errorf("mail via %s: %w", m.cfg.Addr, err)
	}
	return nil
}

func (m *Mailer) deliver(ctx context.Context, rcpts []*mail.Address, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Addr)
	if err != nil {
		return err
	}
	// net/smtp takes no context: the deadline bounds every read and
	// write, and a cancel closes the connection under it.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(m.cfg.Hello); err != nil {
		return err
	}
	if m.cfg.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the server offers no STARTTLS, and TLS is required (a relay on this machine may go without: starttls off)")
		}
		if err := c.StartTLS(&tls.Config{ServerName: m.host, RootCAs: m.cfg.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server offers no AUTH, and a user is configured")
		}
		// PlainAuth sends the password only over TLS or to localhost.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, m.host)); err != nil {
			return fmt.Errorf("AUTH PLAIN as %s: %w", m.cfg.Username, err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("MAIL FROM %s: %w", m.from.Address, err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", r.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	return c.Quit()
}

// message is the RFC 5322 message: headers, then the body as
// quoted-printable UTF-8 (lines of any length, any language).
func (m *Mailer) message(rcpts []*mail.Address, subject, body string) ([]byte, error) {
	var b bytes.Buffer
	names := make([]string, len(rcpts))
	for i, r := range rcpts {
		names[i] = r.String()
	}
	id := make([]byte, 12)
	rand.Read(id)
	// A subject is one line: a newline in it would start a header.
	subject = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, subject)
	fmt.Fprintf(&b, "From: %s\r\n", m.from.String())
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id), m.cfg.Hello)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
