package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/gin-gonic/gin"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/ci/mailer"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/headquarter/auth"
)

type ciSettings struct {
	registry string
	projects string
	// runnerPool is the warm runner pool's app id; empty runs none.
	runnerPool string
	// tokenIdentity names bearer-token callers in releases' history.
	tokenIdentity string
	// approvers may approve releases (comma-separated); empty: everyone.
	approvers string
	smtp      mailer.Config
	smtpCA    string
	// mail is built by validate from smtp; nil sends no mail.
	mail *mailer.Mailer
}

func (s *ciSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.registry, "ci-registry", "", "host:port of the registry pipeline runs push product images to (a loopback one needs no TLS); empty builds no image")
	fs.StringVar(&s.runnerPool, "ci-runner-pool", "", "app id of the warm runner pool (garrison runnerd) that runs test steps without an image; garrison creates it, an autoscale rule with source runners sizes it; empty runs none")
	fs.StringVar(&s.tokenIdentity, "ci-token-identity", "token", "who a request with --auth-token is in release history and approvals (basic-auth requests are their user)")
	fs.StringVar(&s.approvers, "ci-approvers", "", "comma-separated users who may approve releases for environments with approval: true (never their own commits); empty: every user")
	fs.StringVar(&s.smtp.Addr, "smtp-addr", "", "host:port of the SMTP server pipeline notification mail goes through (notify: [{mail: ...}] in .garrison.yml); empty sends none")
	fs.StringVar(&s.smtp.From, "smtp-from", "", "sender of notification mail, e.g. \"garrison <ci@example.com>\"")
	fs.StringVar(&s.smtp.Username, "smtp-user", "", "SMTP AUTH PLAIN user (with --smtp-password); empty sends without AUTH")
	fs.StringVar(&s.smtp.Password, "smtp-password", "", "SMTP AUTH PLAIN password of --smtp-user")
	fs.BoolVar(&s.smtp.StartTLS, "smtp-starttls", true, "require STARTTLS before anything is sent (false: in the clear, for a relay on this machine)")
	fs.StringVar(&s.smtpCA, "smtp-cacert", "", "PEM file of the CA the SMTP server's certificate is from (default: the system's)")
	fs.StringVar(&s.projects, "ci-projects", "", "YAML file of pipeline projects loaded at start (projects: [{name, repo, secret, branches, paths, ...}])")
}

// validate checks the approvers against the credentials and builds the
// mailer, so that a mistake fails before anything starts.
func (s *ciSettings) validate(creds auth.Credentials) error {
	for _, a := range s.approverList() {
		// A name no credential authenticates as is a typo that leaves
		// releases unapprovable.
		if creds.Enabled() && a != creds.Username && !creds.Users.Has(a) && (creds.Token == "" || a != s.tokenIdentity) {
			return fmt.Errorf("--ci-approvers: %q is no user of --auth-user, --auth-users-file or --ci-token-identity", a)
		}
	}
	if s.smtp.Addr == "" {
		if s.smtp.From != "" || s.smtp.Username != "" || s.smtpCA != "" {
			return errors.New("--smtp-from, --smtp-user and --smtp-cacert need --smtp-addr")
		}
		return nil
	}
	if s.smtpCA != "" {
		cas, err := mailer.LoadCAs(s.smtpCA)
		if err != nil {
			return fmt.Errorf("--smtp-cacert: %w", err)
		}
		s.smtp.RootCAs = cas
	}
	m, err := mailer.New(s.smtp)
	if err != nil {
		return fmt.Errorf("--smtp-addr: %w", err)
	}
	s.mail = m
	return nil
}

func (s ciSettings) approverList() []string {
	var out []string
	for _, a := range strings.Split(s.approvers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// startCI mounts the pipeline's routes and starts its runner, which runs
// pipelines only while isLeader says so (nil: always, a single garrison).
// Runs deploy through this garrison's own Marathon API, called in-process
// on r (with creds, as any client).
func startCI(ctx context.Context, r *gin.Engine, cli *clientv3.Client, hq *headquarter, creds auth.Credentials, dataDir string, s ciSettings, isLeader func() bool, logger *slog.Logger) (func(), error) {
	namespace, err := hq.store.ClusterID(ctx)
	if err != nil {
		return nil, err
	}
	cfg := ci.Config{Etcd: cli, Namespace: namespace, DataDir: dataDir, Node: hq.env.Hostname,
		Registry: s.registry, ProjectsFile: s.projects, IsLeader: isLeader, Logger: logger, TokenIdentity: s.tokenIdentity, Approvers: s.approverList(),
		MarathonHandler: r, MarathonAuth: deploy.Auth{Token: creds.Token, Username: creds.Username, Password: creds.Password}}
	if hq.docker != nil {
		cfg.Docker = hq.docker
	}
	if s.mail != nil {
		cfg.Mail = s.mail
	}
	if s.runnerPool != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("runner pool: the garrison binary: %w", err)
		}
		cfg.RunnerPool, cfg.RunnerCommand = s.runnerPool, shellQuote(exe)+" runnerd"
	}
	return ci.Start(ctx, r, cfg)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runRunnerd is `garrison runnerd`: one warm test runner of the pool,
// started by garrison as the pool app's cmd.
func runRunnerd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("runnerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "host:port to listen on (default 127.0.0.1:$PORT0, the port garrison assigned)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	drain := fs.Duration("drain", runnerd.DefaultDrain, "how long a stopping runner lets its job finish before killing it")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	return runnerd.Serve(ctx, *addr, *drain, logger)
}
