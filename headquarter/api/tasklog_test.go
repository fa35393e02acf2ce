package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// unreadableLogs stands for a driver that keeps no log garrison can read.
type unreadableLogs struct{}

func (unreadableLogs) TaskLog(_ context.Context, id string, _ int) ([]byte, error) {
	if id != "known" {
		return nil, fmt.Errorf("task %s: %w", id, ErrUnknownTask)
	}
	return nil, fmt.Errorf("task %s: %w", id, ErrLogUnsupported)
}

func TestTaskLogUnsupportedIs501(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	RegisterTaskLogs(r, unreadableLogs{})
	for path, want := range map[string]int{"/api/v1/tasks/known/log": http.StatusNotImplemented, "/api/v1/tasks/other/log": http.StatusNotFound} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want || !strings.Contains(w.Body.String(), `"message"`) {
			t.Errorf("%s = %d %s, want %d with a message", path, w.Code, w.Body, want)
		}
	}
}
