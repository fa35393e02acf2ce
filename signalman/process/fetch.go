package process

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/garrisonhq/garrison/signalman/task"
)

// DefaultFetchLimit bounds one artifact, and what one archive unpacks to.
const DefaultFetchLimit = 1 << 30

// WithFetchLimit sets the most bytes one artifact may download or unpack
// to (default DefaultFetchLimit).
func WithFetchLimit(n int64) Option { return func(c *config) { c.fetchLimit = n } }

// WithFileFetch lets artifacts come from file:// URIs, which copy any file
// garrison can read into a sandbox; off by default.
func WithFileFetch(allow bool) Option { return func(c *config) { c.fileFetch = allow } }

// fetch downloads the task's artifacts into its sandbox, as Mesos' fetcher
// does: each to destPath (or the URI's base name), checked against its
// checksum, made executable or unpacked as asked, and owned by the task's
// user.
func (d *Driver) fetch(ctx context.Context, sandbox string, arts []task.Artifact, cred *syscall.Credential) error {
	for _, a := range arts {
		if err := d.fetchOne(ctx, sandbox, a, cred); err != nil {
			return fmt.Errorf("fetch %s: %w", a.URI, err)
		}
	}
	return nil
}

func (d *Driver) fetchOne(ctx context.Context, sandbox string, a task.Artifact, cred *syscall.Credential) error {
	u, err := url.Parse(a.URI)
	if err != nil {
		return err
	}
	name := a.DestPath
	if name == "" {
		name = path.Base(u.Path)
		if name == "." || name == "/" {
			name = "artifact"
		}
	}
	dst, err := inside(sandbox, name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	src, err := d.open(ctx, u)
	if err != nil {
		return err
	}
	defer src.Close()
	part := dst + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(part) // gone once renamed
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, d.cfg.fetchLimit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n > d.cfg.fetchLimit {
		return fmt.Errorf("larger than the fetch limit of %d bytes", d.cfg.fetchLimit)
	}
	if want, got := strings.TrimPrefix(a.Checksum, "sha256:"), hex.EncodeToString(h.Sum(nil)); a.Checksum != "" && want != got {
		return fmt.Errorf("checksum mismatch: got sha256:%s, want %s", got, a.Checksum)
	}
	mode := os.FileMode(0o644)
	if a.Executable {
		mode = 0o755
	}
	if err := os.Chmod(part, mode); err != nil {
		return err
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	if err := chownTo(dst, cred); err != nil {
		return err
	}
	if a.Extract {
		return extract(dst, filepath.Dir(dst), d.cfg.fetchLimit, cred)
	}
	return nil
}

// open starts reading an artifact: http(s), or file when allowed.
func (d *Driver) open(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
		return resp.Body, nil
	case "file":
		if !d.cfg.fileFetch {
			return nil, errors.New("file:// URIs are off (garrison --fetch-allow-file)")
		}
		return os.Open(u.Path)
	}
	return nil, fmt.Errorf("scheme %q is not supported", u.Scheme)
}

// inside joins rel to dir and refuses a result outside dir.
func inside(dir, rel string) (string, error) {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if p != dir && !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q leaves the sandbox", rel)
	}
	return p, nil
}

func chownTo(p string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Lchown(p, int(cred.Uid), int(cred.Gid))
}

// extract unpacks a .tar, .tar.gz, .tgz or .zip archive into dir; other
// files stay as they are (Mesos extracts only what it recognises).
func extract(archive, dir string, limit int64, cred *syscall.Credential) error {
	name := strings.ToLower(archive)
	switch {
	case strings.HasSuffix(name, ".zip"):
		return extractZip(archive, dir, limit, cred)
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"), strings.HasSuffix(name, ".tar"):
		f, err := os.Open(archive)
		if err != nil {
			return err
		}
		defer f.Close()
		var r io.Reader = f
		if !strings.HasSuffix(name, ".tar") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				return fmt.Errorf("extract: %w", err)
			}
			defer gz.Close()
			r = gz
		}
		return extractTar(tar.NewReader(r), dir, limit, cred)
	}
	return nil
}

// budget counts what an archive unpacks to against the limit.
type budget struct{ left int64 }

func (b *budget) write(dst string, mode os.FileMode, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, b.left+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if b.left -= n; err == nil && b.left < 0 {
		err = errors.New("unpacks to more than the fetch limit")
	}
	return err
}

func extractTar(tr *tar.Reader, dir string, limit int64, cred *syscall.Credential) error {
	b := &budget{left: limit}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		dst, err := inside(dir, hdr.Name)
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				err = b.write(dst, hdr.FileInfo().Mode(), tr)
			}
		default:
			return fmt.Errorf("extract: %s: only files and directories are unpacked, not type %q", hdr.Name, hdr.Typeflag)
		}
		if err == nil {
			err = chownTo(dst, cred)
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
}

func extractZip(archive, dir string, limit int64, cred *syscall.Credential) error {
	zr, err := zip.OpenReader(archive)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer zr.Close()
	b := &budget{left: limit}
	for _, f := range zr.File {
		dst, err := inside(dir, f.Name)
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		switch m := f.Mode(); {
		case m.IsDir():
			err = os.MkdirAll(dst, 0o755)
		case m.IsRegular():
			var rc io.ReadCloser
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				if rc, err = f.Open(); err == nil {
					err = b.write(dst, m, rc)
					rc.Close()
				}
			}
		default:
			return fmt.Errorf("extract: %s: only files and directories are unpacked", f.Name)
		}
		if err == nil {
			err = chownTo(dst, cred)
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	return nil
}
