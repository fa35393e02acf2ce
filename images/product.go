package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// OCI annotation keys (image-spec annotations.md) and garrison's own.
const (
	LabelRevision  = "org.opencontainers.image.revision"
	LabelSource    = "org.opencontainers.image.source"
	LabelCreated   = "org.opencontainers.image.created"
	LabelVersion   = "org.opencontainers.image.version"
	LabelTitle     = "org.opencontainers.image.title"
	LabelRun       = "garrison.run"
	LabelCommitter = "garrison.committer"
)

// Product is a run's product image: a runtime base plus files the build
// left in its workspace.
type Product struct {
	// Name is the image's repository name (ktv/account); Version its tag.
	Name, Version string
	Base          string
	// Workspace is the host directory Files come from; no file is read
	// outside it, whatever links the build left.
	Workspace  string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        map[string]string
	// Metadata recorded in labels.
	Revision, Source, RunID, Committer string
	Created                            time.Time
}

// File copies From (a path in the workspace, a file or a directory) to
// To (an absolute path in the image).
type File struct {
	From, To string
}

// Result names the pushed image.
type Result struct {
	// Ref is what the Docker driver pulls: registry/name:version.
	Ref    string `json:"ref"`
	ID     string `json:"id"`
	Digest string `json:"digest,omitempty"`
}

// Builder builds product images and pushes them to a registry.
type Builder struct {
	cli      client.APIClient
	registry string
}

// NewBuilder returns a builder pushing to registry (host:port). The engine
// must trust it: loopback registries are insecure-allowed by default,
// others need the engine's insecure-registries or a certificate.
func NewBuilder(cli client.APIClient, registry string) *Builder {
	return &Builder{cli: cli, registry: strings.TrimSuffix(registry, "/")}
}

// Dockerfile is the recipe of p: the base, each file, env, labels,
// entrypoint and command. Env and labels are one instruction each: the
// classic builder commits a layer per instruction, a quarter second each.
func (p Product) Dockerfile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s\n", p.Base)
	for i, f := range p.Files {
		// JSON form: paths with spaces survive.
		fmt.Fprintf(&b, "COPY %s\n", jsonList([]string{fmt.Sprintf("files/%d", i), f.To}))
	}
	for _, c := range p.config() {
		b.WriteString(c + "\n")
	}
	return b.String()
}

// config is the Dockerfile's instructions after the files: env, labels,
// entrypoint and command.
func (p Product) config() []string {
	var out []string
	if len(p.Env) > 0 {
		out = append(out, "ENV "+pairs(p.Env))
	}
	out = append(out, "LABEL "+pairs(p.Labels()))
	if len(p.Entrypoint) > 0 {
		out = append(out, "ENTRYPOINT "+jsonList(p.Entrypoint))
	}
	if len(p.Cmd) > 0 {
		out = append(out, "CMD "+jsonList(p.Cmd))
	}
	return out
}

// fromScratch reports whether p's image is only its files and config, and
// the root file system's paths they go to (no leading slash). A file to /
// itself goes through the
// Dockerfile, whose COPY semantics there are not worth repeating.
func (p Product) fromScratch() ([]string, bool) {
	if p.Base != "" && p.Base != "scratch" {
		return nil, false
	}
	targets := make([]string, len(p.Files))
	for i, f := range p.Files {
		to := strings.TrimPrefix(path.Clean(f.To), "/")
		if to == "" || to == "." {
			return nil, false
		}
		targets[i] = to
	}
	return targets, true
}

// pairs writes k="v" pairs in key order, in the Dockerfile's double
// quotes: backslash, quote and $ (which it would substitute) escaped, line
// breaks made spaces (an instruction is one line).
func pairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + dockerfileQuote(m[k])
	}
	return strings.Join(parts, " ")
}

func jsonList(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var dockerfileEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "\r\n", " ", "\n", " ", "\r", " ")

func dockerfileQuote(s string) string {
	return `"` + dockerfileEscaper.Replace(s) + `"`
}

// Labels are the image's metadata.
func (p Product) Labels() map[string]string {
	created := p.Created
	if created.IsZero() {
		created = time.Now()
	}
	return map[string]string{
		LabelRevision: p.Revision, LabelSource: p.Source, LabelVersion: p.Version,
		LabelCreated: created.UTC().Format(time.RFC3339), LabelTitle: p.Name,
		LabelRun: p.RunID, LabelCommitter: p.Committer,
	}
}

// Build builds p, tags it <registry>/<name>:<version> (and <name>:<version>
// locally) and pushes it.
func (b *Builder) Build(ctx context.Context, p Product, log io.Writer) (Result, error) {
	root, err := os.OpenRoot(p.Workspace)
	if err != nil {
		return Result{}, fmt.Errorf("workspace: %w", err)
	}
	defer root.Close()
	// A file to a directory (a path ending in /) keeps its name there, as
	// COPY from a workspace would; the build context names it files/N.
	p.Files = slices.Clone(p.Files)
	for i, f := range p.Files {
		if info, err := root.Lstat(path.Clean(f.From)); err == nil && !info.IsDir() && strings.HasSuffix(f.To, "/") {
			p.Files[i].To = path.Join(f.To, path.Base(path.Clean(f.From)))
		}
	}
	c := NewContext()
	c.Add("Dockerfile", 0o644, []byte(p.Dockerfile()))
	for i, f := range p.Files {
		src := path.Clean(f.From)
		if _, err := root.Lstat(src); err != nil {
			return Result{}, fmt.Errorf("image file %s: not in the workspace after the build: %w", f.From, err)
		}
		if err := c.AddFS(fmt.Sprintf("files/%d", i), root.FS(), src); err != nil {
			return Result{}, err
		}
	}
	local := p.Name + ":" + p.Version
	ref := b.registry + "/" + local
	if targets, ok := p.fromScratch(); ok {
		// FROM scratch the image is one layer of the files and a config:
		// imported in one call, where the classic builder starts and
		// commits a container per instruction (about a second more for a
		// file, labels, entrypoint and command; BenchmarkWebhookToProduction).
		if err := b.importScratch(ctx, root, p, targets, local, ref, log); err != nil {
			return Result{}, err
		}
	} else if err := c.Build(ctx, b.cli, build.ImageBuildOptions{Tags: []string{local, ref}, NoCache: true}, log); err != nil {
		// No build cache: the classic builder's cache reuses a COPY layer whose
		// symbolic links pointed elsewhere (seen in TestProductFilesNeverLeaveTheWorkspace),
		// and a product image is a handful of COPYs anyway.
		return Result{}, fmt.Errorf("build %s: %w", local, err)
	}
	img, err := b.cli.ImageInspect(ctx, ref)
	if err != nil {
		return Result{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	res := Result{Ref: ref, ID: img.ID}
	// The registry needs no credentials here; the engine wants the header.
	auth := base64.URLEncoding.EncodeToString([]byte("{}"))
	rc, err := b.cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return Result{}, fmt.Errorf("push %s: %w", ref, err)
	}
	defer rc.Close()
	err = readStream(rc, log, func(aux json.RawMessage) {
		var pr struct {
			Digest string `json:"Digest"`
		}
		if json.Unmarshal(aux, &pr) == nil && pr.Digest != "" {
			res.Digest = pr.Digest
		}
	})
	if err != nil {
		return Result{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return res, nil
}

// importScratch imports p's files, at targets, as the image's root file
// system with p's config, tagged ref and local. The files are what COPY
// would have put there: the same modes, owner root, links kept as links,
// parent directories 0755.
func (b *Builder) importScratch(ctx context.Context, root *os.Root, p Product, targets []string, local, ref string, log io.Writer) error {
	c := NewContext()
	dirs := map[string]bool{}
	for i := range p.Files {
		for d := path.Dir(targets[i]); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	parents := make([]string, 0, len(dirs))
	for d := range dirs {
		parents = append(parents, d)
	}
	sort.Strings(parents) // a directory before what it holds
	for _, d := range parents {
		c.addDir(d, 0o755)
	}
	for i, f := range p.Files {
		if err := c.AddFS(targets[i], root.FS(), path.Clean(f.From)); err != nil {
			return err
		}
	}
	if c.err != nil {
		return c.err
	}
	fmt.Fprintf(log, "FROM scratch: importing %d file(s) as %s\n", len(p.Files), local)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(c.write(pw)) }()
	defer pr.Close()
	rc, err := b.cli.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{Changes: p.config()})
	if err != nil {
		return fmt.Errorf("import %s: %w", local, err)
	}
	defer rc.Close()
	if err := readStream(rc, io.Discard); err != nil {
		return fmt.Errorf("import %s: %w", local, err)
	}
	if err := b.cli.ImageTag(ctx, ref, local); err != nil {
		return fmt.Errorf("tag %s: %w", local, err)
	}
	return nil
}
