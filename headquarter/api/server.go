// Package api is garrison's HTTP front door: health (/ping, /health),
// garrison's own Prometheus metrics (/metrics) and the registry view
// (/api/v1/services). Other packages add their routes (the Marathon API
// under /v2) to the same gin engine, after the engine's middleware: auth
// and the write gate cover every route, whoever adds it.
package api

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/auth"
)

// Config is what the router needs.
type Config struct {
	// Registry reads /service/... from etcd.
	Registry clientv3.KV
	// Registerer and Gatherer hold garrison's own metrics; the request
	// metrics of this server are registered here too.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	Logger     *slog.Logger
	// Autoscale serves /api/v1/rules and /api/v1/decisions; nil leaves
	// them out.
	Autoscale Autoscale
	// Auth, when enabled, is required on every route but OpenRoutes and
	// the routes of cfg.OpenRoutes: writes and everything that shows apps,
	// tasks, services or metrics.
	Auth auth.Credentials
	// OpenRoutes are more route patterns (gin's) that need no credentials,
	// such as the console's static assets.
	OpenRoutes []string
	// Writes, when set, can refuse every write (any method but GET, HEAD
	// and OPTIONS) with 507, e.g. while the disk or etcd's quota is nearly
	// full; reads go on.
	Writes WriteGate
}

// OpenRoutes answer without credentials: they show nothing about what runs.
var OpenRoutes = []string{"/ping", "/health"}

// WriteGate says whether writes are refused now, and why.
type WriteGate interface {
	// Refusal is nil when writes are accepted.
	Refusal() error
}

// NewRouter builds the gin engine with garrison's base routes.
func NewRouter(cfg Config) *gin.Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := gin.New()
	// A known path with a wrong method answers 405, as Marathon (Jersey)
	// does, not 404.
	r.HandleMethodNotAllowed = true
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"message": "HTTP 405 Method Not Allowed"})
	})
	r.Use(gin.Recovery(), instrument(cfg.Registerer, cfg.Logger), auth.Middleware(cfg.Auth, slices.Concat(OpenRoutes, cfg.OpenRoutes)...))
	if cfg.Writes != nil {
		r.Use(refuseWrites(cfg.Writes))
	}
	r.GET("/ping", func(c *gin.Context) { c.String(http.StatusOK, "pong") })
	r.HEAD("/ping", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.GET("/health", func(c *gin.Context) {
		writes := "ok"
		if cfg.Writes != nil {
			if err := cfg.Writes.Refusal(); err != nil {
				writes = err.Error()
			}
		}
		c.JSON(http.StatusOK, gin.H{"status": "ok", "writes": writes})
	})
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{Registry: cfg.Registerer})))
	services := servicesHandler{kv: cfg.Registry}
	r.GET("/api/v1/services", services.list)
	r.GET("/api/v1/services/:name", services.get)
	if cfg.Autoscale != nil {
		autoscaleRoutes(r, cfg.Autoscale)
	}
	return r
}

// refuseWrites answers 507 Insufficient Storage, in Marathon's error shape,
// to every write while the gate refuses them.
func refuseWrites(gate WriteGate) gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if err := gate.Refusal(); err != nil {
				c.AbortWithStatusJSON(http.StatusInsufficientStorage, gin.H{"message": err.Error()})
				return
			}
		}
		c.Next()
	}
}

// instrument counts requests by route (not raw path, to bound cardinality)
// and logs failures and slow requests.
func instrument(reg prometheus.Registerer, logger *slog.Logger) gin.HandlerFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "garrison_http_requests_total",
		Help: "HTTP requests served by garrison, by route, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "garrison_http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
	}, []string{"route"})
	if reg != nil {
		reg.MustRegister(requests, duration)
	}
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
		duration.WithLabelValues(route).Observe(elapsed.Seconds())
		if c.Writer.Status() >= 500 {
			logger.Warn("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "errors", c.Errors.String())
		}
	}
}
