package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
)

// DeploymentHeader names the deployment a write started (Marathon's
// RestResource.DeploymentHeader); go-marathon reads it when a DELETE
// answers without a body.
const DeploymentHeader = "Marathon-Deployment-Id"

// handler is an endpoint: it returns what to answer, or an error wrap maps
// to Marathon's status and body.
type handler func(c *gin.Context) (any, error)

// reply is a successful answer other than a plain 200 with a JSON body.
type reply struct {
	status     int
	body       any // nil: no body
	raw        []byte
	deployment string
	location   string
}

// deployment is the 200 (or 201) answer of a deployment-creating call:
// {"deploymentId","version"} plus the Marathon-Deployment-Id header.
func deployment(status int, res *scheduler.DeployResult) *reply {
	return &reply{status: status, deployment: res.DeploymentID,
		body: deploymentResult{DeploymentID: res.DeploymentID, Version: res.Version}}
}

type deploymentResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

// httpError is an error with its own status and {"message"} body.
type httpError struct {
	status  int
	message string
	allow   string // the Allow header of a 405
}

func (e *httpError) Error() string { return e.message }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, message: fmt.Sprintf(format, args...)}
}

func appNotFound(id string) error { return notFound("App '%s' does not exist", id) }

type message struct {
	Message string `json:"message"`
}

type deploymentRef struct {
	ID string `json:"id"`
}

type lockedBody struct {
	Message     string          `json:"message"`
	Deployments []deploymentRef `json:"deployments"`
}

// wrap adapts a handler to gin: it writes the value as JSON, or maps the
// error to Marathon's status and body.
func (a *api) wrap(h handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := h(c)
		if err != nil {
			status, body := a.errorBody(c, err)
			c.Header("Content-Type", "application/json; charset=utf-8")
			c.AbortWithStatusJSON(status, body)
			return
		}
		r, ok := v.(*reply)
		if !ok {
			r = &reply{status: http.StatusOK, body: v}
		}
		if r.deployment != "" {
			c.Header(DeploymentHeader, r.deployment)
		}
		if r.location != "" {
			c.Header("Location", r.location)
		}
		switch {
		case r.raw != nil:
			c.Data(r.status, "application/json; charset=utf-8", r.raw)
		case r.body != nil:
			c.JSON(r.status, r.body)
		default:
			c.Status(r.status)
		}
	}
}

// errorBody maps an error to Marathon's answer (MarathonExceptionMapper).
func (a *api) errorBody(c *gin.Context, err error) (int, any) {
	var (
		decodeErr   *app.DecodeError
		validErr    *app.ValidationError
		lockedErr   *scheduler.LockedError
		existsErr   *scheduler.ExistsError
		notFoundErr *scheduler.NotFoundError
		httpErr     *httpError
		tooLarge    *http.MaxBytesError
		tooMany     *scheduler.TooManyChangesError
		txnTooLarge *tooLargeError
	)
	if status, body, ok := storeLimitError(err); ok {
		return status, body
	}
	switch {
	case errors.As(err, &decodeErr):
		return http.StatusBadRequest, decodeErr
	case errors.As(err, &validErr):
		return http.StatusUnprocessableEntity, validErr
	case errors.As(err, &lockedErr):
		refs := make([]deploymentRef, 0, len(lockedErr.Deployments))
		for _, id := range lockedErr.Deployments {
			refs = append(refs, deploymentRef{ID: id})
		}
		return http.StatusConflict, lockedBody{Message: lockedErr.Error(), Deployments: refs}
	case errors.As(err, &existsErr):
		return http.StatusConflict, message{existsErr.Error()}
	case errors.As(err, &notFoundErr):
		return http.StatusNotFound, message{notFoundErr.Message}
	case errors.Is(err, scheduler.ErrNoDocker):
		return http.StatusUnprocessableEntity, &app.ValidationError{Details: []app.FieldError{
			{Path: "/container/docker/image", Errors: []string{scheduler.ErrNoDocker.Error()}}}}
	case errors.As(err, &httpErr):
		if httpErr.allow != "" {
			c.Header("Allow", httpErr.allow)
		}
		return httpErr.status, message{httpErr.message}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, detailed(fmt.Sprintf("request body larger than %d bytes, garrison's limit (one app this large still fits etcd's transaction once stored with its version copy and its previous definition)", tooLarge.Limit))
	case errors.As(err, &txnTooLarge):
		return http.StatusRequestEntityTooLarge, detailed(txnTooLarge.msg)
	case errors.As(err, &tooMany):
		var ve *app.ValidationError
		errors.As(tooManyChanges(tooMany.Count), &ve)
		return http.StatusUnprocessableEntity, ve
	case errors.Is(err, store.ErrNotLeader):
		// A former leader's write, refused by its fence: the client retries
		// with the leader.
		return http.StatusServiceUnavailable, message{err.Error()}
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, message{err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, message{err.Error()}
	}
	a.log.Warn("marathon API request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "error", err)
	return http.StatusInternalServerError, message{err.Error()}
}

// body reads the request body, bounded by MaxBodyBytes.
func (a *api) body(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

// boolParam reads a boolean query parameter as JAX-RS does ("true" in any
// case is true); absent gives def, anything else is a 400.
func boolParam(c *gin.Context, name string, def bool) (bool, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, badRequest("query parameter %s: %q is not true or false", name, v)
}

// rawJSON marshals v, for bodies spliced together by hand.
func rawJSON(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return b, nil
}
