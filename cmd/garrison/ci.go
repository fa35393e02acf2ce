package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	// hqURL is the base URL runners reach this garrison's API at (set by
	// `garrison up` from its advertised address).
	hqURL string
	// etcd is garrison's own etcd client settings, given to the runners
	// (set by `garrison up`).
	etcd etcdSettings
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
		if err := s.etcd.readPasswordFile(); err != nil {
			return nil, err
		}
		cfg.RunnerPool, cfg.RunnerBinary, cfg.RunnerHQ = s.runnerPool, exe, s.hqURL
		cfg.RunnerEtcd = ci.RunnerEtcd{Endpoints: cli.Endpoints(), CACert: s.etcd.caCert, Cert: s.etcd.cert, Key: s.etcd.key,
			User: s.etcd.user, Password: s.etcd.password}
	}
	return ci.Start(ctx, r, cfg)
}

// runnerHQ is the base URL runners reach garrison's API at: its
// advertised address, loopback when that is every interface's.
func runnerHQ(tls bool, advertise string) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if host, port, err := net.SplitHostPort(advertise); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			advertise = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return scheme + "://" + advertise
}

// runRunnerd is `garrison runnerd`: one warm test runner of the pool,
// started by garrison in the pool app's containers; it may run on any
// machine that reaches etcd and garrison's API.
func runRunnerd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("runnerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var es etcdSettings
	es.register(fs, "http://127.0.0.1:2379", "comma-separated etcd client URLs: the runner registers there and claims jobs")
	addr := fs.String("addr", "", "host:port to serve /health and /metrics on (default 127.0.0.1:$PORT0, the port garrison assigned)")
	advertise := fs.String("advertise-addr", "", "host:port registered in etcd for this runner (default: the address it listens on)")
	app := fs.String("app", os.Getenv("MARATHON_APP_ID"), "the pool app's id (default $MARATHON_APP_ID)")
	id := fs.String("id", os.Getenv("MESOS_TASK_ID"), "this runner's instance id (default $MESOS_TASK_ID, the task id)")
	token := fs.String("token", "", "bearer token of garrison's API")
	tokenFile := fs.String("token-file", "", "file holding --token (garrison's pool app gives one, kept out of docker inspect)")
	user := fs.String("user", "", "basic-auth user of garrison's API, with --password")
	password := fs.String("password", "", "password of --user")
	passwordFile := fs.String("password-file", "", "file holding --password")
	workDir := fs.String("work-dir", "", "where jobs' workspaces are copied (default: the temporary directory)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	drain := fs.Duration("drain", runnerd.DefaultDrain, "how long a stopping runner lets its job finish before killing it")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := es.validate(); err != nil {
		return usageError{err.Error()}
	}
	if *app == "" || *id == "" {
		return usageError{"--app and --id are needed (garrison sets MARATHON_APP_ID and MESOS_TASK_ID)"}
	}
	for _, f := range []struct {
		name, path string
		to         *string
	}{{"--token-file", *tokenFile, token}, {"--password-file", *passwordFile, password}} {
		if f.path == "" {
			continue
		}
		if *f.to != "" {
			return usageError{fmt.Sprintf("%s and %s: set one of them", strings.TrimSuffix(f.name, "-file"), f.name)}
		}
		secret, err := readSecret(f.name, f.path)
		if err != nil {
			return usageError{err.Error()}
		}
		*f.to = secret
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	if *addr == "" {
		*addr = "127.0.0.1:" + os.Getenv("PORT0")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("runnerd: listen on %s: %w", *addr, err)
	}
	cli, err := es.connect(splitList(es.endpoints))
	if err != nil {
		return err
	}
	defer cli.Close()
	return runnerd.Serve(ctx, l, runnerd.Config{Etcd: cli, App: *app, ID: *id, Addr: *advertise,
		Token: *token, Username: *user, Password: *password, WorkDir: *workDir, Drain: *drain, Logger: logger})
}
