package pipeline

import (
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/yamlfile"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// imageRE is a Docker image reference: [host[:port]/]name[:tag][@digest].
	imageRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$`)
)

// Parse reads and checks a pipeline file. On any problem it returns Errors
// listing all of them, in file order, each with line, column and field.
func Parse(data []byte, filename string) (*Pipeline, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: filename, Msg: fmt.Sprintf("file is %d bytes, more than the %d allowed", len(data), MaxFileSize)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlfile.SyntaxError(err, filename)}
	}
	d := &decoder{Decoder: yamlfile.Decoder{File: filename}}
	p := d.pipeline(&root)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

type decoder struct {
	yamlfile.Decoder
}

// fields decodes a mapping whose keys are the fields' names: each known
// key's value goes to its function (null values are left out, as if
// absent), unknown and duplicate keys are errors, and required keys that
// are missing are reported at the mapping. It returns false when n is not
// a mapping.
func (d *decoder) fields(n *yaml.Node, p string, required []string, fs map[string]func(v *yaml.Node, p string)) bool {
	seen := map[string]bool{}
	if !d.Mapping(n, p, func(key string, k, v *yaml.Node) {
		kp := yamlfile.Join(p, key)
		f, ok := fs[key]
		switch {
		case !ok:
			d.unknown(k, kp, fs)
		case !yamlfile.IsNull(v):
			seen[key] = true
			f(v, kp)
		case slices.Contains(required, key):
			seen[key] = true
			d.Errf(v, kp, "required")
		default:
			seen[key] = true
		}
	}) {
		return false
	}
	for _, r := range required {
		if !seen[r] {
			d.Errf(yamlfile.Resolve(n), yamlfile.Join(p, r), "required")
		}
	}
	return true
}

func (d *decoder) unknown(k *yaml.Node, p string, fs map[string]func(*yaml.Node, string)) {
	names := make([]string, 0, len(fs))
	for name := range fs {
		if strings.EqualFold(name, k.Value) {
			d.Errf(k, p, "unknown field (did you mean %q?)", name)
			return
		}
		names = append(names, name)
	}
	sort.Strings(names)
	d.Errf(k, p, "unknown field (known: %s)", strings.Join(names, ", "))
}

func (d *decoder) str(n *yaml.Node, p string) (string, bool) {
	// Numbers and booleans are read as written: `cmd: [8080]` means "8080".
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!binary" {
		d.Errf(n, p, "must be a string, not %s", yamlfile.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(n *yaml.Node, p string) bool {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.Errf(n, p, "must be true or false, not %s", yamlfile.Describe(n))
	}
	return v
}

func (d *decoder) duration(n *yaml.Node, p string) time.Duration {
	s, ok := d.str(n, p)
	if !ok {
		return 0
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.Errf(n, p, "must be a duration such as 90s or 20m, not %q", s)
	case v <= 0 || v > MaxTimeout:
		d.Errf(n, p, "must be above 0 and at most %s", MaxTimeout)
	}
	return v
}

// list calls f for each item of a sequence, checking its length.
func (d *decoder) list(n *yaml.Node, p string, max int, f func(item *yaml.Node, p string)) {
	if n.Kind != yaml.SequenceNode {
		d.Errf(n, p, "must be a list, not %s", yamlfile.Describe(n))
		return
	}
	if len(n.Content) > max {
		d.Errf(n, p, "at most %d items, has %d", max, len(n.Content))
		return
	}
	for i, item := range n.Content {
		f(yamlfile.Resolve(item), fmt.Sprintf("%s[%d]", p, i))
	}
}

func (d *decoder) strings(n *yaml.Node, p string, max int) []string {
	var out []string
	d.list(n, p, max, func(item *yaml.Node, ip string) {
		if s, ok := d.str(item, ip); ok {
			out = append(out, s)
		}
	})
	return out
}

func (d *decoder) env(n *yaml.Node, p string) map[string]string {
	out := map[string]string{}
	fs := map[string]func(*yaml.Node, string){}
	n = yamlfile.Resolve(n)
	if n.Kind == yaml.MappingNode {
		if len(n.Content)/2 > MaxEnv {
			d.Errf(n, p, "at most %d variables", MaxEnv)
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			if !envNameRE.MatchString(name) {
				d.Errf(n.Content[i], yamlfile.Join(p, name), "must be a variable name (letters, digits, '_', not starting with a digit)")
			}
			fs[name] = func(v *yaml.Node, vp string) {
				if s, ok := d.str(v, vp); ok {
					out[name] = s
				}
			}
		}
	}
	d.fields(n, p, nil, fs)
	return out
}

func (d *decoder) image(n *yaml.Node, p string) string {
	s, ok := d.str(n, p)
	if ok && !imageRE.MatchString(s) {
		d.Errf(n, p, "not an image reference (name[:tag], e.g. garrison/build:busybox)")
	}
	return s
}

func (d *decoder) pipeline(root *yaml.Node) *Pipeline {
	if root.Kind == 0 || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		d.Errf(nil, "", "empty: a pipeline needs at least app, build and image")
		return nil
	}
	if root.Kind == yaml.DocumentNode {
		root = root.Content[0]
	}
	p := &Pipeline{}
	var envNode *yaml.Node
	d.fields(root, "", []string{"app", "build", "image"}, map[string]func(*yaml.Node, string){
		"app": func(v *yaml.Node, fp string) {
			p.App, _ = d.str(v, fp)
			if msg := app.AbsoluteIDProblem(p.App); p.App != "" && msg != "" {
				d.Errf(v, fp, "%s", msg)
			}
		},
		"build": func(v *yaml.Node, fp string) { p.Build = d.step(v, fp, false) },
		"image": func(v *yaml.Node, fp string) { p.Image = d.productImage(v, fp) },
		"tests": func(v *yaml.Node, fp string) {
			names := map[string]bool{}
			d.list(v, fp, MaxTests, func(item *yaml.Node, ip string) {
				s := d.step(item, ip, true)
				if s.Name != "" && names[s.Name] {
					d.Errf(item, ip+".name", "duplicate test name %q", s.Name)
				}
				names[s.Name] = true
				p.Tests = append(p.Tests, s)
			})
		},
		"environments": func(v *yaml.Node, fp string) { envNode = v; p.Environments = d.environments(v, fp) },
		"deploy":       func(v *yaml.Node, fp string) { p.Deploy = d.deploy(v, fp) },
		"notify": func(v *yaml.Node, fp string) {
			d.list(v, fp, MaxNotify, func(item *yaml.Node, ip string) { p.Notify = append(p.Notify, d.notify(item, ip)) })
		},
	})
	if envNode == nil {
		p.Environments = slices.Clone(DefaultEnvironments)
	}
	return p
}

func (d *decoder) step(n *yaml.Node, p string, named bool) Step {
	s := Step{Timeout: DefaultTimeout}
	required := []string{"image", "commands"}
	fs := map[string]func(*yaml.Node, string){
		"image": func(v *yaml.Node, fp string) { s.Image = d.image(v, fp) },
		"commands": func(v *yaml.Node, fp string) {
			s.Commands = d.strings(v, fp, MaxCommands)
			if v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
				d.Errf(v, fp, "needs at least one command")
			}
			for i, c := range s.Commands {
				if len(c) > MaxCommandLen {
					d.Errf(v.Content[i], fmt.Sprintf("%s[%d]", fp, i), "longer than %d bytes", MaxCommandLen)
				}
			}
		},
		"env":     func(v *yaml.Node, fp string) { s.Env = d.env(v, fp) },
		"timeout": func(v *yaml.Node, fp string) { s.Timeout = d.duration(v, fp) },
	}
	if named {
		// A test step without an image runs on a warm runner of the pool.
		required = []string{"commands", "name"}
		fs["name"] = func(v *yaml.Node, fp string) {
			s.Name, _ = d.str(v, fp)
			if s.Name != "" && !nameRE.MatchString(s.Name) {
				d.Errf(v, fp, "must be lower-case letters, digits and '-'")
			}
		}
	} else {
		s.Name = "build"
		fs["hostGo"] = func(v *yaml.Node, fp string) { s.HostGo = d.boolean(v, fp) }
	}
	d.fields(n, p, required, fs)
	return s
}

func (d *decoder) productImage(n *yaml.Node, p string) Image {
	img := Image{Base: "scratch"}
	d.fields(n, p, []string{"files"}, map[string]func(*yaml.Node, string){
		"base": func(v *yaml.Node, fp string) { img.Base = d.image(v, fp) },
		"files": func(v *yaml.Node, fp string) {
			if v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
				d.Errf(v, fp, "needs at least one file")
			}
			d.list(v, fp, MaxFiles, func(item *yaml.Node, ip string) {
				var f File
				d.fields(item, ip, []string{"from", "to"}, map[string]func(*yaml.Node, string){
					"from": func(v *yaml.Node, fp string) {
						f.From, _ = d.str(v, fp)
						if c := path.Clean(f.From); f.From != "" && (path.IsAbs(f.From) || c == ".." || strings.HasPrefix(c, "../")) {
							d.Errf(v, fp, "must be a path inside the workspace")
						}
					},
					"to": func(v *yaml.Node, fp string) {
						f.To, _ = d.str(v, fp)
						if f.To != "" && (!path.IsAbs(f.To) || path.Clean(f.To) == "/") {
							d.Errf(v, fp, "must be an absolute path in the image, not /")
						}
					},
				})
				img.Files = append(img.Files, f)
			})
		},
		"entrypoint": func(v *yaml.Node, fp string) { img.Entrypoint = d.strings(v, fp, MaxCommands) },
		"cmd":        func(v *yaml.Node, fp string) { img.Cmd = d.strings(v, fp, MaxCommands) },
		"env":        func(v *yaml.Node, fp string) { img.Env = d.env(v, fp) },
	})
	return img
}

func (d *decoder) environments(n *yaml.Node, p string) []Environment {
	var out []Environment
	seen := map[string]bool{}
	d.list(n, p, MaxEnvironments, func(item *yaml.Node, ip string) {
		var e Environment
		nameNode := item
		if item.Kind == yaml.ScalarNode {
			e.Name, _ = d.str(item, ip)
		} else {
			d.fields(item, ip, []string{"name"}, map[string]func(*yaml.Node, string){
				"name":     func(v *yaml.Node, fp string) { e.Name, _ = d.str(v, fp); nameNode = v },
				"auto":     func(v *yaml.Node, fp string) { e.Auto = d.boolean(v, fp) },
				"approval": func(v *yaml.Node, fp string) { e.Approval = d.boolean(v, fp) },
			})
		}
		switch {
		case e.Name == "":
		case !nameRE.MatchString(e.Name):
			d.Errf(nameNode, ip, "environment names are lower-case letters, digits and '-'")
		case seen[e.Name]:
			d.Errf(nameNode, ip, "duplicate environment %q", e.Name)
		}
		seen[e.Name] = true
		out = append(out, e)
	})
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		d.Errf(n, p, "needs at least one environment")
	}
	return out
}

// deploy reads the app definition: any Marathon app JSON, as YAML, but the
// id and the image, which garrison sets per environment and release. The
// Marathon API checks the rest when it is deployed.
func (d *decoder) deploy(n *yaml.Node, p string) map[string]any {
	if n.Kind != yaml.MappingNode {
		d.Errf(n, p, "must be a mapping (a Marathon app definition), not %s", yamlfile.Describe(n))
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], yamlfile.Resolve(n.Content[i+1])
		switch k.Value {
		case "id":
			d.Errf(k, yamlfile.Join(p, "id"), "set by garrison for each environment: leave it out")
		case "container":
			if v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					if dk, dv := v.Content[j], yamlfile.Resolve(v.Content[j+1]); dk.Value == "docker" && dv.Kind == yaml.MappingNode {
						for l := 0; l+1 < len(dv.Content); l += 2 {
							if dv.Content[l].Value == "image" {
								d.Errf(dv.Content[l], p+".container.docker.image", "set by garrison to the run's product image: leave it out")
							}
						}
					}
				}
			}
		}
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		d.Errf(n, p, "%v", err)
	}
	return m
}

func (d *decoder) notify(n *yaml.Node, p string) Notify {
	nt := Notify{On: []string{"passed", "failed"}}
	ok := d.fields(n, p, nil, map[string]func(*yaml.Node, string){
		"url": func(v *yaml.Node, fp string) {
			nt.URL, _ = d.str(v, fp)
			if u, err := url.Parse(nt.URL); nt.URL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
				d.Errf(v, fp, "must be an http:// or https:// URL")
			}
		},
		"mail": func(v *yaml.Node, fp string) {
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				if len(v.Content) > MaxMailRecipients {
					d.Errf(v, fp, "at most %d recipients, has %d", MaxMailRecipients, len(v.Content))
					return
				}
				items = v.Content
			}
			for i, item := range items {
				ip := fp
				if v.Kind == yaml.SequenceNode {
					ip = fmt.Sprintf("%s[%d]", fp, i)
				}
				s, ok := d.str(yamlfile.Resolve(item), ip)
				if !ok {
					continue
				}
				a, err := mail.ParseAddress(s)
				if err != nil {
					d.Errf(item, ip, "not a mail address (%v): want name@example.com or \"Name <name@example.com>\"", err)
					continue
				}
				nt.Mail = append(nt.Mail, a.String())
			}
		},
		"on": func(v *yaml.Node, fp string) {
			nt.On = d.strings(v, fp, 4)
			for i, s := range nt.On {
				if s != "passed" && s != "failed" && s != "cancelled" {
					d.Errf(v.Content[i], fmt.Sprintf("%s[%d]", fp, i), "must be passed, failed or cancelled")
				}
			}
		},
	})
	if !ok {
		return nt
	}
	n = yamlfile.Resolve(n)
	has := func(k string) bool {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return true
			}
		}
		return false
	}
	switch {
	case has("url") && has("mail"):
		d.Errf(n, p, "url or mail, not both: one notification each")
	case !has("url") && !has("mail"):
		d.Errf(n, p, "needs url (a hook) or mail (recipients)")
	}
	return nt
}
