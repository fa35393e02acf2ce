// Package ui serves garrison's web console at /ui/: a few static files
// embedded in the binary (no CDN, no build step), which drive the same
// /v2 and /api/v1 APIs as every other client and follow /v2/events for
// live updates.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:embed assets
var assets embed.FS

// file is one asset, ready to serve: its bytes, a gzip copy when that is
// smaller, and a content hash for ETag revalidation.
type file struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

// Console holds the prepared assets.
type Console struct {
	files map[string]*file
}

// New reads and compresses the embedded assets once, so serving costs no
// CPU per request.
func New() (*Console, error) {
	c := &Console{files: map[string]*file{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		f.contentType = mime.TypeByExtension(path.Ext(p))
		if f.contentType == "" {
			f.contentType = "application/octet-stream"
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if buf.Len() < len(body) {
			f.gzipped = buf.Bytes()
		}
		c.files[strings.TrimPrefix(p, "assets/")] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ui: read embedded assets: %w", err)
	}
	if c.files["index.html"] == nil {
		return nil, fmt.Errorf("ui: embedded assets lack index.html")
	}
	return c, nil
}

// Routes are the route patterns Register adds; they need no credentials.
var Routes = []string{"/", "/ui", "/ui/*filepath"}

// Register mounts the console at /ui/ and sends / there. The assets carry
// no data, so they are served without authentication; every API call the
// console makes is authenticated like any other client's.
func (c *Console) Register(r gin.IRoutes) {
	r.GET("/", func(ctx *gin.Context) { ctx.Redirect(http.StatusTemporaryRedirect, "/ui/") })
	r.GET("/ui", func(ctx *gin.Context) { ctx.Redirect(http.StatusMovedPermanently, "/ui/") })
	r.GET("/ui/*filepath", c.serve)
	r.HEAD("/ui/*filepath", c.serve)
}

func (c *Console) serve(ctx *gin.Context) {
	name := strings.TrimPrefix(ctx.Param("filepath"), "/")
	f := c.files[name]
	if name == "" {
		f = c.files["index.html"]
	}
	if f == nil {
		ctx.JSON(http.StatusNotFound, gin.H{"message": "no such file in the console: " + name})
		return
	}
	h := ctx.Writer.Header()
	// Revalidate every time: the files change with garrison's version, and
	// a 304 costs one round trip on loopback.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "" || name == "index.html" {
		// The console talks to its own origin only.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	}
	if match := ctx.GetHeader("If-None-Match"); match != "" && match == f.etag {
		ctx.Status(http.StatusNotModified)
		return
	}
	body := f.body
	if f.gzipped != nil && strings.Contains(ctx.GetHeader("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = f.gzipped
	}
	ctx.Data(http.StatusOK, f.contentType, body)
}
