package ui

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

func serve(t *testing.T, c *Console, method, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	c.Register(r)
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func TestServesEmbeddedConsole(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if w := serve(t, c, "GET", "/", nil); w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != "/ui/" {
		t.Errorf("GET / = %d %q, want 307 to /ui/", w.Code, w.Header().Get("Location"))
	}
	w := serve(t, c, "GET", "/ui/", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<script type="module" src="/ui/app.js">`) {
		t.Fatalf("GET /ui/ = %d, body %.200s", w.Code, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("index content type %q", ct)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("index CSP %q: the console must load nothing from elsewhere", csp)
	}
	for _, asset := range []string{"/ui/app.js", "/ui/style.css"} {
		w := serve(t, c, "GET", asset, map[string]string{"Accept-Encoding": "gzip"})
		if w.Code != 200 || w.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("GET %s = %d, encoding %q", asset, w.Code, w.Header().Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if want := c.files[strings.TrimPrefix(asset, "/ui/")].body; string(plain) != string(want) {
			t.Errorf("%s: gzip body differs from the embedded file", asset)
		}
		etag := w.Header().Get("ETag")
		if etag == "" || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q Cache-Control %q", asset, etag, w.Header().Get("Cache-Control"))
		}
		if w := serve(t, c, "GET", asset, map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("%s revalidated: %d with %d bytes, want 304 and none", asset, w.Code, w.Body.Len())
		}
	}
	if w := serve(t, c, "GET", "/ui/nope.js", nil); w.Code != 404 {
		t.Errorf("missing asset = %d, want 404", w.Code)
	}
}

// No asset may load anything from another origin: the console runs on
// machines with no way out.
func TestAssetsNameNoOtherOrigin(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range c.files {
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			body := strings.ReplaceAll(string(f.body), "http://www.w3.org/2000/svg", "")
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
