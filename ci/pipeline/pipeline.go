package pipeline

import (
	"fmt"
	"strings"
	"time"
)

// Limits, stated in the package doc and the README.
const (
	MaxFileSize     = 256 << 10
	MaxCommands     = 100
	MaxCommandLen   = 16 << 10
	MaxEnv          = 100
	MaxFiles        = 100
	MaxTests        = 20
	MaxEnvironments = 8
	MaxNotify       = 10
	// MaxMailRecipients bounds one notification's mail recipients.
	MaxMailRecipients = 20
	DefaultTimeout    = 30 * time.Minute
	MaxTimeout        = 2 * time.Hour
	// HostGoRoot is the host directory hostGo mounts, read-only, at the
	// same path in the build container.
	HostGoRoot = "/usr/local/go"
	// Workspace is where the checkout is mounted in every step container.
	Workspace = "/workspace"
)

// Pipeline is a checked pipeline file.
type Pipeline struct {
	App          string
	Build        Step
	Image        Image
	Tests        []Step
	Environments []Environment
	// Deploy is the app definition (Marathon's app JSON, without id and
	// image) the release runs with in alpha and every environment; nil
	// deploys nothing and runs no tests.
	Deploy map[string]any
	Notify []Notify
}

// Step is a container that runs shell commands in the workspace.
type Step struct {
	Name     string
	Image    string
	Commands []string
	Env      map[string]string
	HostGo   bool
	Timeout  time.Duration
}

// Script is the step's commands as one sh -e script that echoes each
// command before running it, as CI logs show them.
func (s Step) Script() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, c := range s.Commands {
		fmt.Fprintf(&b, "printf '+ %%s\\n' %s\n%s\n", shellQuote(c), c)
	}
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Image is the product image: a runtime base plus files from the build.
type Image struct {
	Base       string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        map[string]string
}

// File copies From (a workspace path) to To (an absolute image path).
type File struct {
	From string
	To   string
}

// Environment is a stage a release is promoted through.
type Environment struct {
	Name     string
	Auto     bool
	Approval bool
}

// Notify is a URL called, or mail sent to Mail's recipients, when a run
// ends in one of On; one of URL and Mail is set.
type Notify struct {
	URL string
	// Mail are addresses as net/mail writes them ("Name" <a@b.example>).
	Mail []string
	On   []string
}

// DefaultEnvironments is the promotion order when the file names none.
var DefaultEnvironments = []Environment{{Name: "alpha"}, {Name: "qa"}, {Name: "production"}}

// ImageName is the repository name of the app's images: the app id
// without its leading slash (/ktv/account -> ktv/account).
func (p *Pipeline) ImageName() string { return strings.TrimPrefix(p.App, "/") }
