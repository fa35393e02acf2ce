package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// etcdSettings say how to reach an external etcd: its URLs, client TLS and
// etcd's own user/password auth. Anyone who can write /garrison/apps/ runs
// commands as garrison's user, so a shared etcd should require both.
type etcdSettings struct {
	endpoints string
	caCert    string
	cert      string
	key       string
	user      string
	password  string
	// passwordFile holds the password instead: kept out of ps and of a
	// container's command line (the runner pool's runners get one).
	passwordFile string
}

func (s *etcdSettings) register(fs *flag.FlagSet, defaultEndpoints, endpointsHelp string) {
	fs.StringVar(&s.endpoints, "etcd", defaultEndpoints, endpointsHelp)
	fs.StringVar(&s.caCert, "etcd-cacert", "", "PEM file of the CA that signed etcd's server certificate (https:// endpoints)")
	fs.StringVar(&s.cert, "etcd-cert", "", "PEM client certificate presented to etcd (etcd's --client-cert-auth), with --etcd-key")
	fs.StringVar(&s.key, "etcd-key", "", "PEM private key of --etcd-cert")
	fs.StringVar(&s.user, "etcd-user", "", "etcd user (etcd auth enabled), with --etcd-password")
	fs.StringVar(&s.password, "etcd-password", "", "password of --etcd-user")
	fs.StringVar(&s.passwordFile, "etcd-password-file", "", "file holding the password of --etcd-user (instead of --etcd-password, which ps shows)")
}

// secured reports whether any TLS or auth setting is given.
func (s *etcdSettings) secured() bool {
	return s.caCert != "" || s.cert != "" || s.key != "" || s.user != "" || s.password != "" || s.passwordFile != ""
}

// validate checks that paired settings come in pairs.
func (s *etcdSettings) validate() error {
	switch {
	case (s.cert == "") != (s.key == ""):
		return errors.New("--etcd-cert and --etcd-key go together: set both or neither")
	case s.password != "" && s.passwordFile != "":
		return errors.New("--etcd-password and --etcd-password-file: set one of them")
	case (s.user == "") != (s.password == "" && s.passwordFile == ""):
		return errors.New("--etcd-user and --etcd-password go together (or --etcd-password-file): set both or neither")
	}
	return nil
}

// readPasswordFile sets the password from --etcd-password-file.
func (s *etcdSettings) readPasswordFile() error {
	if s.passwordFile == "" {
		return nil
	}
	pw, err := readSecret("--etcd-password-file", s.passwordFile)
	s.password = pw
	return err
}

// readSecret reads a password or token from the file a flag names, its
// trailing newline cut; an empty one is an error.
func readSecret(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s %s is empty", flag, path)
	}
	return secret, nil
}

// options turns the settings into client options, reading the certificate
// files now so that a wrong path fails at start with its name.
func (s *etcdSettings) options(endpoints []string) ([]registrar.ClientOption, error) {
	var opts []registrar.ClientOption
	https := slices.ContainsFunc(endpoints, func(e string) bool { return strings.HasPrefix(e, "https://") })
	if https || s.caCert != "" || s.cert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.caCert != "" {
			pem, err := os.ReadFile(s.caCert)
			if err != nil {
				return nil, fmt.Errorf("--etcd-cacert: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--etcd-cacert %s: no PEM certificate in it", s.caCert)
			}
		}
		if s.cert != "" {
			pair, err := tls.LoadX509KeyPair(s.cert, s.key)
			if err != nil {
				return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, registrar.WithTLS(cfg))
	}
	if s.user != "" {
		if err := s.readPasswordFile(); err != nil {
			return nil, err
		}
		opts = append(opts, registrar.WithCredentials(s.user, s.password))
	}
	return opts, nil
}

// connect builds the client for endpoints with these settings.
func (s *etcdSettings) connect(endpoints []string) (*clientv3.Client, error) {
	opts, err := s.options(endpoints)
	if err != nil {
		return nil, err
	}
	return registrar.NewClient(endpoints, opts...)
}
