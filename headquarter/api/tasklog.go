package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// Log tails: DefaultLogTail lines unless ?tail= asks, at most MaxLogTail.
const (
	DefaultLogTail = 200
	MaxLogTail     = 5000
)

// TaskLogs reads the end of a task's stdout and stderr from the driver that
// runs it.
type TaskLogs interface {
	// TaskLog returns the task's last n lines of output. Its error wraps
	// ErrUnknownTask for a task nobody knows, ErrLogUnsupported when the
	// task's driver keeps no log garrison can read.
	TaskLog(ctx context.Context, taskID string, n int) ([]byte, error)
}

var (
	ErrUnknownTask    = errors.New("unknown task")
	ErrLogUnsupported = errors.New("this driver's task logs cannot be read through garrison")
)

// logTimeout keeps a stuck engine from holding the request forever.
const logTimeout = 30 * time.Second

// RegisterTaskLogs adds GET /api/v1/tasks/:taskId/log, which answers the
// tail as text/plain.
func RegisterTaskLogs(r gin.IRoutes, logs TaskLogs) {
	r.GET("/api/v1/tasks/:taskId/log", func(c *gin.Context) {
		n := DefaultLogTail
		if s := c.Query("tail"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > MaxLogTail {
				c.JSON(http.StatusBadRequest, gin.H{"message": fmt.Sprintf("tail: want a number of lines from 1 to %d", MaxLogTail)})
				return
			}
			n = v
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), logTimeout)
		defer cancel()
		id := c.Param("taskId")
		b, err := logs.TaskLog(ctx, id, n)
		switch {
		case errors.Is(err, ErrUnknownTask):
			c.JSON(http.StatusNotFound, gin.H{"message": fmt.Sprintf("Task '%s' does not exist", id)})
		case errors.Is(err, ErrLogUnsupported):
			c.JSON(http.StatusNotImplemented, gin.H{"message": err.Error()})
		case err != nil:
			c.JSON(http.StatusServiceUnavailable, gin.H{"message": err.Error()})
		default:
			c.Data(http.StatusOK, "text/plain; charset=utf-8", b)
		}
	})
}
