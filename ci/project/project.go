// Package project holds the configuration of a pipeline project (a
// repository garrison builds): where to fetch it, the webhook secret, the
// filters and limits. Projects live in etcd under /garrison/projects/; a
// file can seed them at start.
package project

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/ci/push"
)

// Limits and defaults, stated in the README.
const (
	DefaultPipelineFile  = ".garrison.yml"
	DefaultMaxConcurrent = 1
	MaxMaxConcurrent     = 16
	DefaultKeepRuns      = 50
	MaxKeepRuns          = 1000
	MaxSecrets           = 64
	MaxFilters           = 32
	// MaxSecretLen bounds each secret value.
	MaxSecretLen = 4096
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

// Project is one repository garrison builds.
type Project struct {
	Name string `json:"name" yaml:"name"`
	// Repo is what git clones: a URL (https://, ssh://, file://) or the
	// path of a bare repository on this machine.
	Repo string `json:"repo" yaml:"repo"`
	// Secret signs (GitHub, Gitea, Forgejo, generic) or is (GitLab,
	// generic token) each webhook delivery. Never returned by the API.
	Secret      string `json:"secret,omitempty" yaml:"secret"`
	push.Filter `yaml:",inline"`
	// Pipeline is the pipeline file's path in the repository.
	Pipeline string `json:"pipeline,omitempty" yaml:"pipeline,omitempty"`
	// MaxConcurrent bounds the runs of this project in flight at once;
	// more wait queued.
	MaxConcurrent int `json:"maxConcurrent,omitempty" yaml:"maxConcurrent,omitempty"`
	// KeepRuns is how many finished runs (with their logs) are kept.
	KeepRuns int `json:"keepRuns,omitempty" yaml:"keepRuns,omitempty"`
	// Secrets are injected as environment variables into every step; the
	// file never holds them. Never returned by the API.
	Secrets map[string]string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
}

// WithDefaults fills in what was left out.
func (p Project) WithDefaults() Project {
	if p.Pipeline == "" {
		p.Pipeline = DefaultPipelineFile
	}
	if p.MaxConcurrent == 0 {
		p.MaxConcurrent = DefaultMaxConcurrent
	}
	if p.KeepRuns == 0 {
		p.KeepRuns = DefaultKeepRuns
	}
	return p
}

// Redacted is the project as the API shows it: secrets' names only.
func (p Project) Redacted() View {
	v := View{Project: p, HasSecret: p.Secret != ""}
	v.Project.Secret = ""
	v.Project.Secrets = nil
	for k := range p.Secrets {
		v.SecretNames = append(v.SecretNames, k)
	}
	return v
}

// View is a project without its secrets.
type View struct {
	Project
	HasSecret   bool     `json:"hasSecret"`
	SecretNames []string `json:"secretNames,omitempty"`
}

// FieldError names the field a problem is in.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

// Validate returns every problem, each naming its field.
func (p Project) Validate() []FieldError {
	var errs []FieldError
	bad := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !nameRE.MatchString(p.Name) {
		bad("name", "must be 1-64 lower-case letters, digits and '-', starting and ending with a letter or digit")
	}
	if p.Repo == "" {
		bad("repo", "required")
	} else if strings.HasPrefix(p.Repo, "-") || strings.Contains(p.Repo, "::") {
		// git would read "-..." as an option and "ext::..." runs commands.
		bad("repo", "must be a URL (https://, ssh://, file://) or a path")
	}
	if p.Secret == "" {
		bad("secret", "required: every webhook delivery is checked against it")
	} else if len(p.Secret) > MaxSecretLen {
		bad("secret", "at most %d bytes", MaxSecretLen)
	}
	if p.MaxConcurrent < 0 || p.MaxConcurrent > MaxMaxConcurrent {
		bad("maxConcurrent", "must be between 1 and %d", MaxMaxConcurrent)
	}
	if p.KeepRuns < 0 || p.KeepRuns > MaxKeepRuns {
		bad("keepRuns", "must be between 1 and %d", MaxKeepRuns)
	}
	if len(p.Secrets) > MaxSecrets {
		bad("secrets", "at most %d", MaxSecrets)
	}
	for k, v := range p.Secrets {
		if !envNameRE.MatchString(k) {
			bad("secrets."+k, "must be an environment variable name (letters, digits, '_')")
		}
		if len(v) > MaxSecretLen {
			bad("secrets."+k, "at most %d bytes", MaxSecretLen)
		}
	}
	for field, list := range map[string][]string{"branches": p.Branches, "tags": p.Tags, "paths": p.Paths} {
		if len(list) > MaxFilters {
			bad(field, "at most %d patterns", MaxFilters)
		}
		for i, pat := range list {
			if pat == "" {
				bad(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
			}
		}
	}
	if strings.HasPrefix(p.Pipeline, "/") || strings.Contains("/"+p.Pipeline+"/", "/../") {
		bad("pipeline", "must be a path inside the repository")
	}
	return errs
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Prefix is where projects live in etcd.
const Prefix = "/garrison/projects/"

// Store keeps projects in etcd.
type Store struct {
	kv clientv3.KV
}

// NewStore returns a store over kv.
func NewStore(kv clientv3.KV) *Store { return &Store{kv: kv} }

// ErrNotFound is returned for an unknown project.
var ErrNotFound = errors.New("no such project")

// Get returns the project name with defaults applied.
func (s *Store) Get(ctx context.Context, name string) (Project, error) {
	resp, err := s.kv.Get(ctx, Prefix+name)
	if err != nil {
		return Project{}, fmt.Errorf("read project %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Project{}, fmt.Errorf("project %s: %w", name, ErrNotFound)
	}
	var p Project
	if err := json.Unmarshal(resp.Kvs[0].Value, &p); err != nil {
		return Project{}, fmt.Errorf("decode project %s: %w", name, err)
	}
	return p.WithDefaults(), nil
}

// List returns every project, by name.
func (s *Store) List(ctx context.Context) ([]Project, error) {
	resp, err := s.kv.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	out := make([]Project, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var p Project
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("decode project %s: %w", kv.Key, err)
		}
		out = append(out, p.WithDefaults())
	}
	return out, nil
}

// Put validates and stores p.
func (s *Store) Put(ctx context.Context, p Project) error {
	if errs := p.Validate(); len(errs) > 0 {
		return &InvalidError{Errs: errs}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode project %s: %w", p.Name, err)
	}
	if _, err := s.kv.Put(ctx, Prefix+p.Name, string(data)); err != nil {
		return fmt.Errorf("store project %s: %w", p.Name, err)
	}
	return nil
}

// Delete removes a project; its runs stay until retention drops them.
func (s *Store) Delete(ctx context.Context, name string) error {
	resp, err := s.kv.Delete(ctx, Prefix+name)
	if err != nil {
		return fmt.Errorf("delete project %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("project %s: %w", name, ErrNotFound)
	}
	return nil
}

// InvalidError lists what is wrong with a project.
type InvalidError struct {
	Errs []FieldError
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return "invalid project: " + strings.Join(msgs, "; ")
}

// LoadFile reads a projects file (YAML: `projects: [...]`). Unknown fields
// are errors with their line; every project is validated.
func LoadFile(path string) ([]Project, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("projects file: %w", err)
	}
	var file struct {
		Projects []Project `yaml:"projects"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("projects file %s: %w", path, err)
	}
	seen := map[string]bool{}
	var msgs []string
	for i, p := range file.Projects {
		for _, fe := range p.Validate() {
			msgs = append(msgs, fmt.Sprintf("projects[%d].%s: %s", i, fe.Path, fe.Msg))
		}
		if seen[p.Name] {
			msgs = append(msgs, fmt.Sprintf("projects[%d].name: duplicate %q", i, p.Name))
		}
		seen[p.Name] = true
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("projects file %s:\n%s", path, strings.Join(msgs, "\n"))
	}
	return file.Projects, nil
}
