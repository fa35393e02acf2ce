// Package client is a small Go client of garrison's HTTP API: the
// Marathon-style /v2 routes and garrison's own /api/v1 (registry, rules,
// decisions). `garrison apps|tasks|...` is built on it; it needs nothing
// but the standard library.
//
// Every call takes a context; a non-2xx answer is an *APIError carrying the
// status and Marathon's error body (message, field paths), so callers can
// show which field was refused.
package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// DefaultAddr is where a garrison on this machine answers.
const DefaultAddr = "http://127.0.0.1:8080"

// Config says where garrison is and who asks. Token wins over Username
// and Password when both are set.
type Config struct {
	// Addr is a URL (http://host:port) or a bare host:port.
	Addr     string
	Token    string
	Username string
	Password string
	// HTTPClient defaults to a client without an overall timeout: event
	// streams last; bound calls with their context.
	HTTPClient *http.Client
}

// ConfigFromEnv reads GARRISON_ADDR, GARRISON_TOKEN, GARRISON_USER and
// GARRISON_PASSWORD; Addr falls back to DefaultAddr.
func ConfigFromEnv() Config {
	c := Config{
		Addr:     os.Getenv("GARRISON_ADDR"),
		Token:    os.Getenv("GARRISON_TOKEN"),
		Username: os.Getenv("GARRISON_USER"),
		Password: os.Getenv("GARRISON_PASSWORD"),
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	return c
}

// Client calls one garrison.
type Client struct {
	base *url.URL
	cfg  Config
	hc   *http.Client
}

// New checks the address and returns a client.
func New(cfg Config) (*Client, error) {
	base, err := ParseAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: base, cfg: cfg, hc: hc}, nil
}

// ParseAddr turns "host:port", ":port" or a URL into the API's base URL.
func ParseAddr(addr string) (*url.URL, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		a = DefaultAddr
	}
	if strings.HasPrefix(a, ":") {
		a = "127.0.0.1" + a
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("address %q: want http:// or https://", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("address %q: no host", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// Addr is the base URL the client calls.
func (c *Client) Addr() string { return c.base.String() }

// Response is a successful answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// DeploymentID is the deployment the call started ("" when none).
func (r *Response) DeploymentID() string { return r.Header.Get("Marathon-Deployment-Id") }

// FieldError is one entry of Marathon's error details: a path such as
// "/healthChecks(0)/path" and its messages.
type FieldError struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

// RuleError is one problem in a rules document as PUT /api/v1/rules
// reports it.
type RuleError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// APIError is a non-2xx answer.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
	// Details are Marathon's field errors (400, 422).
	Details []FieldError
	// RuleErrors are a rules document's errors (422 of /api/v1/rules).
	RuleErrors []RuleError
	// Deployments lock the app (409).
	Deployments []string
	Body        []byte
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, msg)
}

func newAPIError(method, path string, status int, body []byte) *APIError {
	e := &APIError{Method: method, Path: path, Status: status, Body: body}
	var b struct {
		Message     string          `json:"message"`
		Details     json.RawMessage `json:"details"`
		Errors      []RuleError     `json:"errors"`
		Deployments []struct {
			ID string `json:"id"`
		} `json:"deployments"`
	}
	if json.Unmarshal(body, &b) != nil {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
		// net/http's answer to plain HTTP on its TLS port: garrison runs
		// with --tls-cert, and the address still says http.
		if status == http.StatusBadRequest && strings.Contains(e.Message, "HTTP request to an HTTPS server") {
			e.Message += " (garrison serves HTTPS: set --addr https://HOST:PORT)"
		}
		return e
	}
	e.Message, e.RuleErrors = b.Message, b.Errors
	// details is a list of field errors, or Jackson's plain string when
	// the body did not parse at all.
	var syntax string
	if json.Unmarshal(b.Details, &e.Details) != nil && json.Unmarshal(b.Details, &syntax) == nil && syntax != "" {
		e.Message += ": " + syntax
	}
	for _, d := range b.Deployments {
		e.Deployments = append(e.Deployments, d.ID)
	}
	return e
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func (c *Client) url(path string, query url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

func (c *Client) authorize(req *http.Request) {
	switch {
	case c.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	case c.cfg.Username != "" || c.cfg.Password != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
}

// Do sends one request and reads the whole answer; body may be nil. A
// non-2xx answer is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte) (*Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, query), r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newAPIError(method, path, resp.StatusCode, data)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// transportError says what failed to reach garrison, without url.Error's
// repetition of the method and URL.
func (c *Client) transportError(method, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	hint := ""
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = " (is garrison running there? set --addr or GARRISON_ADDR)"
	case errors.As(err, &unknownCA):
		hint = " (set SSL_CERT_FILE to the PEM file of the CA that signed garrison's --tls-cert)"
	}
	return fmt.Errorf("%s %s: %w%s", method, c.url(path, nil), err, hint)
}

// getJSON GETs path and decodes the answer into v.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// appPath is /v2/apps + the app id (url.URL.String escapes what needs it).
func appPath(id string, suffix ...string) string {
	p := "/v2/apps/" + strings.Trim(id, "/")
	for _, s := range suffix {
		p += "/" + s
	}
	return p
}
