package events

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBuffer is how many frames a subscriber may have outstanding before
// the bus drops it. Marathon's --event_stream_max_outstanding_messages
// plays the same role (default 50); garrison allows more so that a burst of
// status updates during a large deployment does not force marathon-lb into
// a reconnect and full re-sync.
const DefaultBuffer = 1024

// DefaultBufferBytes bounds the bytes of the frames an event stream (SSE
// client) may have outstanding, beside DefaultBuffer's count: deployment
// events carry whole group trees, and a lagging stream pins what it has
// not read.
const DefaultBufferBytes = 8 << 20

// DefaultMaxSubscribers caps concurrent subscribers (SSE clients). A gzip
// stream costs about 0.8 MB (the deflate state), so the cap bounds what
// event clients can take.
const DefaultMaxSubscribers = 256

// ErrTooManySubscribers is returned to a subscriber over the cap.
var ErrTooManySubscribers = errors.New("too many event subscribers")

// errClosed is returned to a subscriber of a closed bus.
var errClosed = errors.New("event bus is closed")

// size is what a frame pins in memory.
func (f Frame) size() int64 { return int64(len(f.Type) + len(f.Data) + len(f.Light)) }

// Frame is one encoded event as subscribers receive it. The byte slices are
// shared by every subscriber: read them, never modify them.
type Frame struct {
	// Type is the event's eventType, the SSE "event:" field.
	Type string
	// Data is the event as one line of JSON, the SSE "data:" field.
	Data []byte
	// Light is Data with plan-format=light applied: deployment plans
	// without their "original" and "target" group trees. It is nil when
	// that changes nothing; use Data then.
	Light []byte
}

// Option configures a Bus.
type Option func(*busConfig)

type busConfig struct {
	buffer      int
	bufferBytes int64
	maxSubs     int
	reg         prometheus.Registerer
	now         func() time.Time
	logger      *slog.Logger
}

// WithBuffer sets the per-subscriber buffer (DefaultBuffer by default).
// Values below 1 are taken as 1.
func WithBuffer(n int) Option {
	return func(c *busConfig) { c.buffer = max(n, 1) }
}

// WithBufferBytes bounds the frame bytes an event stream may have
// outstanding (DefaultBufferBytes by default); a stream over it is dropped
// as one over its buffer count is. A single frame larger than n still
// reaches a stream that has nothing else outstanding.
func WithBufferBytes(n int64) Option {
	return func(c *busConfig) { c.bufferBytes = max(n, 1) }
}

// WithMaxSubscribers caps concurrent event streams (SSE clients;
// DefaultMaxSubscribers by default); a stream over it is refused.
// garrison's own subscribers (Subscribe) do not count. Values below 1 are
// taken as 1.
func WithMaxSubscribers(n int) Option {
	return func(c *busConfig) { c.maxSubs = max(n, 1) }
}

// WithRegisterer registers the bus's metrics: garrison_events_published_total
// (by event type), garrison_events_subscribers and
// garrison_events_subscribers_dropped_total.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *busConfig) { c.reg = reg }
}

// WithClock sets the clock that stamps events (time.Now by default).
func WithClock(now func() time.Time) Option {
	return func(c *busConfig) { c.now = now }
}

// WithLogger sets where dropped subscribers are reported (slog.Default()
// by default).
func WithLogger(l *slog.Logger) Option {
	return func(c *busConfig) { c.logger = l }
}

// Bus fans events out to subscribers. Publish never waits for a
// subscriber: each has a bounded buffer, and one whose buffer is full is
// dropped (its channel closes; an SSE client then reconnects, as it would
// after a Marathon leader change). The zero Bus is not usable; call NewBus.
type Bus struct {
	cfg busConfig

	// mu guards subs and closed. Publishers send under the read lock;
	// channels are closed only under the write lock after removal from
	// subs, so no send can hit a closed channel.
	mu      sync.RWMutex
	subs    []*subscription
	streams int // subscriptions in subs that are event streams
	closed  bool

	published *prometheus.CounterVec
	dropped   prometheus.Counter
	refused   prometheus.Counter
}

type subscription struct {
	ch    chan Frame
	types []string // nil: every type
	// stream marks an event stream (SSE client): capped and byte-bounded.
	stream bool
	// maxBytes bounds queued, the bytes of frames sent and not yet taken;
	// 0 bounds only the count (the consumer does not report what it takes).
	maxBytes int64
	queued   atomic.Int64
}

// offer sends f without blocking; false when the subscriber lags. Safe
// for concurrent publishers.
func (s *subscription) offer(f Frame) bool {
	size := f.size()
	if s.maxBytes > 0 {
		if q := s.queued.Add(size); q > s.maxBytes && q != size {
			s.queued.Add(-size)
			return false
		}
	}
	select {
	case s.ch <- f:
		return true
	default:
		if s.maxBytes > 0 {
			s.queued.Add(-size)
		}
		return false
	}
}

// took reports that the consumer took f off the channel.
func (s *subscription) took(f Frame) {
	if s.maxBytes > 0 {
		s.queued.Add(-f.size())
	}
}

func (s *subscription) wants(typ string) bool {
	return s.types == nil || slices.Contains(s.types, typ)
}

// NewBus returns an open bus.
func NewBus(opts ...Option) *Bus {
	cfg := busConfig{buffer: DefaultBuffer, bufferBytes: DefaultBufferBytes, maxSubs: DefaultMaxSubscribers, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	b := &Bus{
		cfg: cfg,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_events_published_total",
			Help: "Events published on the event bus, by event type.",
		}, []string{"event_type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_events_subscribers_dropped_total",
			Help: "Event subscribers (SSE clients) dropped because they fell behind by more than their buffer.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_events_subscribers_refused_total",
			Help: "Event subscriptions (SSE clients) refused because the bus had its maximum of subscribers.",
		}),
	}
	if cfg.reg != nil {
		cfg.reg.MustRegister(b.published, b.dropped, b.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "garrison_events_subscribers",
			Help: "Current event subscribers (SSE clients).",
		}, func() float64 { return float64(b.Subscribers()) }))
	}
	return b
}

// Publish stamps ev with the bus clock, encodes it once and offers it to
// every subscriber that wants its type. It never blocks on subscribers;
// laggards are dropped. The error is non-nil only when ev cannot be
// encoded (say, invalid raw JSON in a plan). Publishing on a closed bus
// does nothing.
func (b *Bus) Publish(ev Event) error {
	f, err := b.encode(ev)
	if err != nil {
		return err
	}
	b.published.WithLabelValues(f.Type).Inc()

	b.mu.RLock()
	lagging := b.deliver(f, nil)
	b.mu.RUnlock()
	if len(lagging) > 0 {
		b.mu.Lock()
		for _, s := range lagging {
			b.drop(s, f.Type)
		}
		b.mu.Unlock()
	}
	return nil
}

// Subscribe returns a channel of frames whose type is in types (all types
// when types is empty) and a cancel func. The channel closes when cancel
// is called, when ctx ends, when the subscriber falls more than its buffer
// behind, or when the bus closes; on a closed bus it is closed already.
// Such in-process subscribers are not capped (WithMaxSubscribers caps event
// streams). Always call cancel: it releases the ctx watch.
func (b *Bus) Subscribe(ctx context.Context, types []string) (<-chan Frame, func()) {
	s, cancel, _ := b.subscribe(ctx, types, nil, false)
	return s.ch, cancel
}

// subscribe adds a subscriber and, under the same lock, publishes first (if
// not nil) to everyone, so that when the new subscriber wants it, it is the
// first frame it receives. A stream (an SSE client) counts against
// WithMaxSubscribers, is also bounded by WithBufferBytes and must call took
// for every frame it receives. The error is errClosed on a closed bus and
// ErrTooManySubscribers when the bus has its maximum of streams; the
// subscription's channel is closed then.
func (b *Bus) subscribe(ctx context.Context, types []string, first *Frame, stream bool) (*subscription, func(), error) {
	s := &subscription{ch: make(chan Frame, b.cfg.buffer), stream: stream}
	if stream {
		s.maxBytes = b.cfg.bufferBytes
	}
	for _, t := range types {
		if t != "" && !slices.Contains(s.types, t) {
			s.types = append(s.types, t)
		}
	}

	b.mu.Lock()
	if b.closed || (stream && b.streams >= b.cfg.maxSubs) {
		err := errClosed
		if !b.closed {
			err = ErrTooManySubscribers
			b.refused.Inc()
		}
		b.mu.Unlock()
		close(s.ch)
		return s, func() {}, err
	}
	b.subs = append(b.subs, s)
	if stream {
		b.streams++
	}
	if first != nil {
		b.published.WithLabelValues(first.Type).Inc()
		for _, l := range b.deliver(*first, nil) {
			b.drop(l, first.Type)
		}
	}
	b.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { b.unsubscribe(s) })
	return s, func() {
		stop()
		b.unsubscribe(s)
	}, nil
}

// deliver offers f to each interested subscriber without blocking and
// appends those whose buffer is full to lagging. Call it with b.mu held
// (either mode).
func (b *Bus) deliver(f Frame, lagging []*subscription) []*subscription {
	for _, s := range b.subs {
		if !s.wants(f.Type) {
			continue
		}
		if !s.offer(f) {
			lagging = append(lagging, s)
		}
	}
	return lagging
}

// drop removes a laggard. Call it with b.mu held for writing.
func (b *Bus) drop(s *subscription, typ string) {
	if !b.remove(s) {
		return // dropped by a concurrent Publish, or unsubscribed
	}
	b.dropped.Inc()
	b.cfg.logger.Warn("event subscriber dropped: buffer full", "buffer", cap(s.ch), "event_type", typ, "types", s.types)
}

func (b *Bus) unsubscribe(s *subscription) {
	b.mu.Lock()
	b.remove(s)
	b.mu.Unlock()
}

// remove takes s out of subs and closes its channel; false if it was not
// there. Call it with b.mu held for writing.
func (b *Bus) remove(s *subscription) bool {
	i := slices.Index(b.subs, s)
	if i < 0 {
		return false
	}
	b.subs = slices.Delete(b.subs, i, i+1)
	if s.stream {
		b.streams--
	}
	close(s.ch)
	return true
}

// Subscribers is the number of current subscribers.
func (b *Bus) Subscribers() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs)
}

// Close closes every subscriber's channel, which ends every SSE stream, and
// makes later Publish calls no-ops and later subscriptions closed at once.
// Wire it to the HTTP server's shutdown (http.Server.RegisterOnShutdown):
// Shutdown waits for handlers, and an SSE handler only returns when its
// client leaves or its stream closes. Close is idempotent.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for _, s := range b.subs {
		close(s.ch)
	}
	b.subs, b.streams = nil, 0
}

// encode builds the frame for ev, stamped now.
func (b *Bus) encode(ev Event) (Frame, error) {
	at := b.cfg.now()
	data, err := Marshal(ev, at)
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Type: ev.EventType(), Data: data}
	if pe, ok := ev.(planEvent); ok {
		if light, changed := pe.lightPlan(); changed {
			if f.Light, err = Marshal(light, at); err != nil {
				return Frame{}, err
			}
		}
	}
	return f, nil
}
