package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
)

// Autoscale is what the rules and decisions routes need.
type Autoscale interface {
	// Document is the rules document in force, as given.
	Document() []byte
	// Rules are the rules in force.
	Rules() []rulefmt.Rule
	// Put validates, stores and applies a rules document (YAML or JSON);
	// its error is rulefmt.Errors when the document is invalid.
	Put(ctx context.Context, data []byte, origin string) ([]rulefmt.Rule, error)
	// Check validates a rules document as Put does, and applies nothing.
	Check(data []byte, origin string) ([]rulefmt.Rule, error)
	// Decisions are the newest recorded decisions (all apps when app is
	// ""), newest first.
	Decisions(ctx context.Context, app string, limit int) ([]json.RawMessage, error)
	// Evaluations is the last evaluation of every rule (app's when app is
	// not ""), acting or not: each metric's value, per-instance value,
	// threshold, vote and data, and why nothing happened.
	Evaluations(app string) any
}

const maxRulesBytes = 4 << 20

// Bounds on GET /api/v1/schedules: a cron of every minute over a week
// would otherwise be ten thousand windows per rule.
const (
	maxScheduleLookahead  = 31 * 24 * time.Hour
	maxWindowsPerSchedule = 50
)

// scheduleView is one window of a cron floor.
type scheduleView struct {
	App      string    `json:"app"`
	Cron     string    `json:"cron"`
	Timezone string    `json:"timezone"`
	Min      int       `json:"min"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Active   bool      `json:"active"`
}

func autoscaleRoutes(r *gin.Engine, a Autoscale) {
	r.GET("/api/v1/rules", func(c *gin.Context) {
		if c.Query("format") == "yaml" || strings.Contains(c.GetHeader("Accept"), "yaml") {
			c.Data(http.StatusOK, "application/yaml", a.Document())
			return
		}
		c.JSON(http.StatusOK, gin.H{"rules": orEmptyRules(a.Rules())})
	})
	r.PUT("/api/v1/rules", func(c *gin.Context) {
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRulesBytes))
		if err != nil {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"message": "rules document: " + err.Error()})
			return
		}
		rules, err := a.Put(c.Request.Context(), body, "request")
		var invalid rulefmt.Errors
		switch {
		case errors.As(err, &invalid):
			c.JSON(http.StatusUnprocessableEntity, gin.H{"message": "Rules are not valid", "errors": invalid})
		case err != nil:
			c.JSON(http.StatusServiceUnavailable, gin.H{"message": err.Error()})
		default:
			c.JSON(http.StatusOK, gin.H{"rules": orEmptyRules(rules)})
		}
	})
	// Check is Put without the effect: 200 with the rules it would apply, or
	// 422 with every error's line, column and field.
	r.POST("/api/v1/rules/check", func(c *gin.Context) {
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRulesBytes))
		if err != nil {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"message": "rules document: " + err.Error()})
			return
		}
		rules, err := a.Check(body, "request")
		var invalid rulefmt.Errors
		switch {
		case errors.As(err, &invalid):
			c.JSON(http.StatusUnprocessableEntity, gin.H{"message": "Rules are not valid", "errors": invalid})
		case err != nil:
			c.JSON(http.StatusUnprocessableEntity, gin.H{"message": err.Error()})
		default:
			c.JSON(http.StatusOK, gin.H{"rules": orEmptyRules(rules)})
		}
	})
	// The cron floors coming up (and those open now), so a person sees the
	// lunch peak's floor before it arrives.
	r.GET("/api/v1/schedules", func(c *gin.Context) {
		within := 48 * time.Hour
		if q := c.Query("within"); q != "" {
			d, err := time.ParseDuration(q)
			if err != nil || d <= 0 || d > maxScheduleLookahead {
				c.JSON(http.StatusBadRequest, gin.H{"message": fmt.Sprintf("within: want a duration up to %s, like 48h", maxScheduleLookahead)})
				return
			}
			within = d
		}
		now := time.Now()
		out := []scheduleView{}
		for _, rule := range a.Rules() {
			for _, sc := range rule.Schedules {
				for _, w := range sc.Upcoming(now, within, maxWindowsPerSchedule) {
					out = append(out, scheduleView{App: rule.App, Cron: sc.Cron, Timezone: rule.Location().String(), Min: sc.Min,
						Start: w.Start, End: w.End, Active: !w.Start.After(now)})
				}
			}
		}
		slices.SortStableFunc(out, func(x, y scheduleView) int { return x.Start.Compare(y.Start) })
		c.JSON(http.StatusOK, gin.H{"schedules": out})
	})
	r.GET("/api/v1/evaluations", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"evaluations": a.Evaluations(c.Query("app"))})
	})
	r.GET("/api/v1/decisions", func(c *gin.Context) {
		limit := 100
		if s := c.Query("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				c.JSON(http.StatusBadRequest, gin.H{"message": "limit: want a positive number"})
				return
			}
			limit = n
		}
		decisions, err := a.Decisions(c.Request.Context(), c.Query("app"), limit)
		if err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"message": err.Error()})
			return
		}
		if decisions == nil {
			decisions = []json.RawMessage{}
		}
		c.JSON(http.StatusOK, gin.H{"decisions": decisions})
	})
}

func orEmptyRules(rules []rulefmt.Rule) []rulefmt.Rule {
	if rules == nil {
		return []rulefmt.Rule{}
	}
	return rules
}
