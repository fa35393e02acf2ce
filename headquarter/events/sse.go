package events

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// DefaultHeartbeat is how often an idle stream gets a keep-alive, as Jetty's
// EventSourceServlet (Marathon's) does. marathon-lb reconnects after 300 s
// under 1 byte/s.
const DefaultHeartbeat = 10 * time.Second

// DefaultWriteTimeout bounds each write to an SSE client; a client that
// stops reading without closing is disconnected after it.
const DefaultWriteTimeout = 30 * time.Second

// Heartbeat is what Jetty's EventSourceServlet writes as its keep-alive: a
// bare line break. SSE parsers (browsers, donovanhide/eventsource under
// go-marathon, marathon-lb's line reader) skip an empty line outside an
// event.
const Heartbeat = "\r\n"

// maxBatch is how many queued frames the handler writes before a flush.
const maxBatch = 64

// HandlerOption configures Handler.
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	heartbeat    time.Duration
	writeTimeout time.Duration
	gzip         bool
}

// WithHeartbeat sets the keep-alive interval (DefaultHeartbeat by default).
func WithHeartbeat(d time.Duration) HandlerOption {
	return func(c *handlerConfig) {
		if d > 0 {
			c.heartbeat = d
		}
	}
}

// WithWriteTimeout sets the per-write deadline (DefaultWriteTimeout by
// default). It also overrides the http.Server's WriteTimeout, which would
// otherwise cut every stream.
func WithWriteTimeout(d time.Duration) HandlerOption {
	return func(c *handlerConfig) {
		if d > 0 {
			c.writeTimeout = d
		}
	}
}

// WithGzip turns gzip for clients that send Accept-Encoding: gzip (as
// marathon-lb does) on or off; it is on by default.
func WithGzip(on bool) HandlerOption {
	return func(c *handlerConfig) { c.gzip = on }
}

// Handler serves Marathon's GET /v2/events:
//
//   - The request must accept text/event-stream, else 405 (Jetty's
//     EventSourceServlet falls through to HttpServlet's 405).
//   - event_type= may repeat to choose types; none means all.
//   - plan-format=light trims deployment plans (see Frame.Light).
//   - Frames are "event: <type>\ndata: <one-line JSON>\n\n", flushed as
//     written. The stream starts with event_stream_attached (if the filter
//     lets it through), which the other subscribers see too, and
//     event_stream_detached is published when it ends.
//   - An idle stream gets a heartbeat every WithHeartbeat interval.
//
// The handler returns when the client disconnects (the request context
// ends), when the bus drops the subscriber or closes, or when a write
// fails. To end streams on server shutdown, call bus.Close from
// http.Server.RegisterOnShutdown, or give the server a BaseContext that
// ends then.
func Handler(bus *Bus, opts ...HandlerOption) gin.HandlerFunc {
	cfg := handlerConfig{heartbeat: DefaultHeartbeat, writeTimeout: DefaultWriteTimeout, gzip: true}
	for _, o := range opts {
		o(&cfg)
	}
	return func(c *gin.Context) {
		if !acceptsEventStream(c.Request.Header.Values("Accept")) {
			c.AbortWithStatusJSON(http.StatusMethodNotAllowed, gin.H{
				"message": "HTTP method GET is not supported by this URL without Accept: text/event-stream",
			})
			return
		}
		serveStream(c, bus, cfg)
	}
}

func serveStream(c *gin.Context, bus *Bus, cfg handlerConfig) {
	remote := remoteIP(c.Request.RemoteAddr)
	light := c.Query("plan-format") == "light"
	attached, err := bus.encode(EventStreamAttached{RemoteAddress: remote})
	if err != nil {
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"message": err.Error()})
		return
	}
	sub, cancel, err := bus.subscribe(c.Request.Context(), c.QueryArray("event_type"), &attached, true)
	switch {
	case errors.Is(err, ErrTooManySubscribers):
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"message": fmt.Sprintf(
			"the event stream has its maximum of %d subscribers (--max-event-subscribers); retry later", bus.cfg.maxSubs)})
		return
	case err != nil:
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"message": "event stream is shutting down"})
		return
	}
	defer func() {
		cancel()
		if err := bus.Publish(EventStreamDetached{RemoteAddress: remote}); err != nil {
			bus.cfg.logger.Error("publish event_stream_detached", "remote", remote, "err", err)
		}
	}()

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream;charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx in front: do not buffer
	var out io.Writer = c.Writer
	var gz *gzip.Writer
	if cfg.gzip {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(c.Request.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz = gzip.NewWriter(c.Writer)
			out = gz
		}
	}
	c.Status(http.StatusOK)
	s := &stream{rc: http.NewResponseController(c.Writer), out: out, gz: gz, timeout: cfg.writeTimeout}
	defer s.close()
	// The server's WriteTimeout is replaced by a deadline per write; its
	// ReadTimeout ends once the request is read (net/http lifts it).
	if s.deadline() != nil || s.flush() != nil { // send the headers (and gzip header) now
		return
	}

	frames := sub.ch
	ctx := c.Request.Context()
	tick := time.NewTicker(cfg.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if s.write([]byte(Heartbeat)) != nil || s.flush() != nil {
				return
			}
		case f, ok := <-frames:
			if !ok {
				return
			}
			// Write what is queued, then flush once.
			for n := 0; ; n++ {
				sub.took(f)
				if s.frame(f, light) != nil {
					return
				}
				if n == maxBatch {
					break
				}
				var more bool
				select {
				case f, more = <-frames:
				default:
				}
				if !more {
					break
				}
			}
			if s.flush() != nil {
				return
			}
		}
	}
}

// stream writes SSE to one client, each write under a deadline.
type stream struct {
	rc      *http.ResponseController
	out     io.Writer
	gz      *gzip.Writer
	timeout time.Duration
	buf     []byte
}

func (s *stream) frame(f Frame, light bool) error {
	data := f.Data
	if light && f.Light != nil {
		data = f.Light
	}
	s.buf = append(s.buf[:0], "event: "...)
	s.buf = append(s.buf, f.Type...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	return s.write(s.buf)
}

func (s *stream) write(p []byte) error {
	if err := s.deadline(); err != nil {
		return err
	}
	_, err := s.out.Write(p)
	return err
}

func (s *stream) deadline() error {
	err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}

func (s *stream) flush() error {
	if s.gz != nil {
		if err := s.gz.Flush(); err != nil {
			return err
		}
	}
	return s.flushHTTP()
}

func (s *stream) flushHTTP() error { return s.rc.Flush() }

// close ends the gzip stream, best effort: the stream ends because the
// client left or must reconnect, so a trailer that cannot be written has
// nobody to miss it.
func (s *stream) close() {
	if s.gz != nil && s.deadline() == nil && s.gz.Close() == nil {
		s.flushHTTP()
	}
}

// acceptsEventStream reports whether an Accept header names
// text/event-stream. Like Jetty, a wildcard is not enough.
func acceptsEventStream(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/event-stream" && qualityAllows(params) {
				return true
			}
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, rest, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			params := map[string]string{}
			for p := range strings.SplitSeq(rest, ";") {
				if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok {
					params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
				}
			}
			if qualityAllows(params) {
				return true
			}
		}
	}
	return false
}

func qualityAllows(params map[string]string) bool {
	q, ok := params["q"]
	if !ok {
		return true
	}
	f, err := strconv.ParseFloat(q, 64)
	return err == nil && f > 0
}

// remoteIP is the client address without the port, as Marathon's
// request.getRemoteAddr.
func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
