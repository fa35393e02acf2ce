package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

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
