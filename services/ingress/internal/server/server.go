// Package server is the ingress HTTP server: it verifies partner webhooks
// and takes events from our own services (the publish API), stores them in
// EVENTS and answers 2xx only once JetStream has them. A redelivery is
// answered 2xx and stored once, within the stream's duplicate window and,
// through idempotency records, long after it.
package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/mapping"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/netaddr"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
	"github.com/switchyard/switchyard/services/ingress/internal/inflight"
	"github.com/switchyard/switchyard/services/ingress/internal/syncwait"
)

// Config configures the ingress server.
type Config struct {
	// Listen is the address Run listens on (ingress.listen).
	Listen string
	// Sources are the webhook sources; each must be valid (config.Validate).
	Sources []config.Source
	// ReadTimeout bounds reading a request (ingress.read_timeout).
	ReadTimeout time.Duration
	// PublishTimeout bounds storing an event (the idempotency lookup and
	// the PubAck); past it the sender gets 503 and retries
	// (ingress.publish_timeout).
	PublishTimeout time.Duration
	// IdempotencyHorizon is how long an event id is remembered
	// (ingress.idempotency_horizon).
	IdempotencyHorizon time.Duration
	// Topology sizes the idempotency bucket (nats.replicas); zero fields
	// take the configuration's defaults.
	Topology topology.Topology
	// APIKeys may use the publish API (POST /v1/events).
	APIKeys []config.IngressAPIKey
	// MaxBody bounds a publish API request body, and a source's body when
	// the source sets no MaxBody (ingress.max_body). With
	// events.EnvelopeAllowance, every body limit must fit in the NATS
	// server's max_payload: New and Provision refuse one that does not.
	MaxBody int64
	// MaxBytesInFlight bounds the request body bytes held at once, webhooks
	// and the publish API together (ingress.max_bytes_in_flight); past it
	// requests are answered 503 with Retry-After. At least every body
	// limit.
	MaxBytesInFlight int64
	// MaxBatch bounds the events of one batch request (ingress.max_batch).
	MaxBatch int
	// RetryAfter is what 503 answers ask the sender to wait. Default 5s.
	RetryAfter time.Duration
	// MaxAuditInFlight bounds the audit records being published at once;
	// beyond it (a NATS outage, a flood of bad requests) records are
	// dropped and counted. Zero: inflight's default.
	MaxAuditInFlight int
	// MaxRecordsInFlight bounds the idempotency records being written at
	// once. Default 2048.
	MaxRecordsInFlight int
	// AsyncTimeout bounds the wait for an audit or idempotency record's
	// PubAck. Zero: inflight's default.
	AsyncTimeout time.Duration
	// TrustedProxies (ingress.trusted_proxies: CIDRs or addresses) may name
	// the client in X-Forwarded-For or X-Real-IP. Empty: the peer is the
	// client and those headers are ignored.
	TrustedProxies []string
	// RejectionAudit bounds the audit records of refused requests per
	// source (ingress.rejection_audit).
	RejectionAudit config.RejectionAudit
	// Destinations route events: a synchronous publish waits for those its
	// event's subject matches.
	Destinations []config.Destination
	// Contracts check the payloads of the sources and API keys that have
	// one (contracts.Compile); nil checks nothing.
	Contracts *contracts.Set
	// Sync bounds synchronous publishes. Default: config's defaults.
	Sync config.IngressSync
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock, for signature timestamp tolerance and the sources'
	// rate limits. Default time.Now.
	Now func() time.Time
	// Tracing makes the spans of requests and stored events; nil is off.
	Tracing *telemetry.Tracing
}

// WithDefaults fills unset fields. The settings of the configuration file
// take its defaults (config.Defaults), for a Config built by hand; the
// others are the server's own.
func (c Config) WithDefaults() Config {
	d := config.Defaults().Ingress
	c.Listen = cmp.Or(c.Listen, d.Listen)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, d.ReadTimeout.D())
	c.PublishTimeout = cmp.Or(c.PublishTimeout, d.PublishTimeout.D())
	c.IdempotencyHorizon = cmp.Or(c.IdempotencyHorizon, d.IdempotencyHorizon.D())
	c.MaxBody = cmp.Or(c.MaxBody, int64(d.MaxBody))
	c.MaxBytesInFlight = cmp.Or(c.MaxBytesInFlight, int64(d.MaxBytesInFlight))
	c.MaxBatch = cmp.Or(c.MaxBatch, d.MaxBatch)
	c.RejectionAudit.PerSecond = cmp.Or(c.RejectionAudit.PerSecond, d.RejectionAudit.PerSecond)
	c.RejectionAudit.Burst = cmp.Or(c.RejectionAudit.Burst, d.RejectionAudit.Burst)
	c.RejectionAudit.SummaryInterval = cmp.Or(c.RejectionAudit.SummaryInterval, d.RejectionAudit.SummaryInterval)
	c.Sync.MaxWait = cmp.Or(c.Sync.MaxWait, d.Sync.MaxWait)
	c.Sync.DefaultWait = cmp.Or(c.Sync.DefaultWait, min(d.Sync.DefaultWait, c.Sync.MaxWait))
	c.Sources = append([]config.Source(nil), c.Sources...)
	for i := range c.Sources {
		// As in the file: a source without max_body has ingress.max_body,
		// and a webhook source without rate_limit the default limit.
		c.Sources[i].MaxBody = cmp.Or(c.Sources[i].MaxBody, config.ByteSize(c.MaxBody))
		if !c.Sources[i].IsPolled() {
			c.Sources[i].RateLimit = c.Sources[i].RateLimit.WithDefaults()
		}
	}

	c.RetryAfter = cmp.Or(c.RetryAfter, 5*time.Second)
	c.MaxRecordsInFlight = cmp.Or(c.MaxRecordsInFlight, 2048)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("ingress: Config.Logger is required")
	}
	for _, src := range c.Sources {
		if !src.IsPolled() && int64(src.MaxBody) > c.MaxBytesInFlight {
			return fmt.Errorf("ingress: Config.MaxBytesInFlight (%d) is below source %q's MaxBody (%d): such a body could never be taken", c.MaxBytesInFlight, src.Name, src.MaxBody)
		}
	}
	if c.MaxBody > c.MaxBytesInFlight {
		return fmt.Errorf("ingress: Config.MaxBytesInFlight (%d) is below MaxBody (%d): such a body could never be taken", c.MaxBytesInFlight, c.MaxBody)
	}
	return nil
}

// Server is the ingress HTTP server.
type Server struct {
	cfg Config
	// filters are the destinations' filters, by destination: a
	// synchronous publish waits only for those that will get the event.
	filters map[string]*mapping.Mapping
	js      jetstream.JetStream
	audit   *auditlog.Emitter
	sources map[string]*source
	// polled are the polled sources: they take no webhooks.
	polled map[string]bool
	// required are each source's headers checked before its body is read.
	required map[string][]string
	// budget bounds the request body bytes held at once.
	budget  *byteBudget
	keys    *apiKeys
	idem    *idempotency.Store
	echo    *echo.Echo
	metrics *metrics
	// waiter receives the replies of synchronous publishes; nil without
	// a NATS connection.
	waiter *syncwait.Waiter
	// auditing and records carry the asynchronous publishes that no
	// request waits for, each with a bound.
	auditing *inflight.Tracker
	records  *inflight.Tracker
	warnings sampledLog
	// gates bound the rejection records: one per source, apiGate for the
	// publish API and unknownGate for every unknown source.
	gates       []*rejectionGate
	apiGate     *rejectionGate
	unknownGate *rejectionGate
	// broken says, per source and API key with a contract, whether its
	// last payload broke it (checkContract).
	broken map[contracts.Owner]*atomic.Bool
	// stop ends the summaries of rejections; closeOnce guards it.
	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// New builds the server; Run serves it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	extractIP, err := ipExtractor(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		js:       js,
		audit:    audit,
		sources:  map[string]*source{},
		polled:   map[string]bool{},
		required: map[string][]string{},
		keys:     newAPIKeys(cfg.APIKeys),
		metrics:  newMetrics(cfg.Registerer, cfg.Sources, cfg.APIKeys),
		warnings: sampledLog{every: 10 * time.Second},
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	now := time.Now()
	for _, sc := range cfg.Sources {
		if sc.IsPolled() {
			// Polled, not posting: its items come through StorePolled.
			s.polled[sc.Name] = true
			continue
		}
		src, err := newSource(sc, s.metrics)
		if err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
		src.gate = newRejectionGate(sc.Name, cfg.RejectionAudit, s.metrics, now)
		s.gates = append(s.gates, src.gate)
		s.sources[sc.Name] = src
		s.required[sc.Name] = requiredHeaders(sc)
	}
	if s.filters, err = compileFilters(cfg.Destinations); err != nil {
		return nil, err
	}
	s.broken = map[contracts.Owner]*atomic.Bool{}
	for _, sc := range cfg.Sources {
		if sc.Contract != nil {
			s.broken[contracts.Source(sc.Name)] = new(atomic.Bool)
		}
	}
	for _, k := range cfg.APIKeys {
		if k.Contract != nil {
			s.broken[contracts.APIKey(k.Name)] = new(atomic.Bool)
		}
	}
	s.budget = newByteBudget(cfg.MaxBytesInFlight, s.metrics.bytesInFlight)
	s.metrics.bytesInFlightLimit.Set(float64(cfg.MaxBytesInFlight))
	s.apiGate = newRejectionGate(apiSource, cfg.RejectionAudit, s.metrics, now)
	s.unknownGate = newRejectionGate(unknownSource, cfg.RejectionAudit, s.metrics, now)
	s.gates = append(s.gates, s.apiGate, s.unknownGate)
	if err := s.checkMaxPayload(); err != nil {
		return nil, err
	}
	idem, err := idempotency.New(js, cfg.Topology.Idempotency(cfg.IdempotencyHorizon).Config)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	s.idem = idem
	if js != nil && js.Conn() != nil {
		if s.waiter, err = syncwait.New(js.Conn(), cfg.Logger); err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Partners connect directly unless proxies are configured: never trust
	// X-Forwarded-For by default, it is the sender's to forge.
	e.IPExtractor = extractIP
	e.HTTPErrorHandler = errorHandler
	// Each admission check runs before its handler reads the body; the
	// route's span (tracing on) wraps both.
	e.POST("/webhooks/:source", s.handleWebhook, s.traceRoute("POST /webhooks/{source}"), s.admitWebhook)
	e.POST("/v1/events", s.handlePublish, s.traceRoute("POST /v1/events"), s.admitAPI)
	e.POST("/v1/events/batch", s.handlePublishBatch, s.traceRoute("POST /v1/events/batch"), s.admitAPI)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	s.echo = e

	s.auditing = inflight.New(inflight.Config{Max: cfg.MaxAuditInFlight, Timeout: cfg.AsyncTimeout, OnError: s.auditFailed})
	s.records = inflight.New(inflight.Config{Max: cfg.MaxRecordsInFlight, Timeout: cfg.AsyncTimeout, OnError: s.recordFailed})
	go func() {
		defer close(s.stopped)
		s.summarizeRejections(s.stop)
	}()
	return s, nil
}

// PayloadLimitError is a body limit that the NATS server could not store
// with its envelope: a body near the limit would be answered 503 on every
// retry, forever.
type PayloadLimitError struct {
	// Field is the configuration field: ingress.max_body or
	// sources[i].max_body; Source names the source of the latter.
	Field, Source string
	// Limit is the field's value, MaxPayload the server's max_payload and
	// AtMost the largest limit that fits, in bytes.
	Limit, MaxPayload, AtMost int64
}

func (e *PayloadLimitError) Error() string {
	field := e.Field
	if e.Source != "" {
		field += fmt.Sprintf(" (source %q)", e.Source)
	}
	return fmt.Sprintf("%s is %d bytes: with up to %d bytes of event headers that exceeds the NATS server's max_payload of %d bytes, so an event near the limit could never be stored; set %s to at most %d bytes, or raise max_payload in the NATS server's configuration",
		field, e.Limit, events.EnvelopeAllowance, e.MaxPayload, field, e.AtMost)
}

// checkMaxPayload refuses body limits that the NATS server could not store
// with their envelope: such a body would be answered 503 on every retry,
// forever. Without a connection yet (MaxPayload 0) Provision checks.
func (s *Server) checkMaxPayload() error {
	if s.js == nil || s.js.Conn() == nil {
		return nil
	}
	maxPayload := s.js.Conn().MaxPayload()
	if maxPayload <= 0 {
		return nil
	}
	var errs []error
	check := func(field, source string, limit int64) {
		if limit+events.EnvelopeAllowance > maxPayload {
			errs = append(errs, &PayloadLimitError{Field: field, Source: source, Limit: limit, MaxPayload: maxPayload,
				AtMost: maxPayload - events.EnvelopeAllowance})
		}
	}
	check("ingress.max_body", "", s.cfg.MaxBody)
	for i, src := range s.cfg.Sources {
		// A source without its own limit has ingress.max_body's, reported
		// once above.
		if int64(src.MaxBody) != s.cfg.MaxBody {
			check(fmt.Sprintf("sources[%d].max_body", i), src.Name, int64(src.MaxBody))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	return nil
}

// ipExtractor returns how the client's address is found: the peer's,
// unless the peer is one of the trusted proxies, which may name the client
// in X-Forwarded-For (the rightmost address that is not a trusted proxy)
// or, without it, X-Real-IP.
func ipExtractor(trusted []string) (echo.IPExtractor, error) {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect(), nil
	}
	// Echo trusts loopback, link-local and private addresses by default:
	// only the configured ranges are trusted here.
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for i, p := range trusted {
		pfx, err := netaddr.ParseTrustedProxy(p)
		if err != nil {
			return nil, config.FieldError{Field: fmt.Sprintf("ingress.trusted_proxies[%d]", i), Problem: err.Error()}
		}
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}))
	}
	xff, realIP := echo.ExtractIPFromXFFHeader(opts...), echo.ExtractIPFromRealIPHeader(opts...)
	return func(r *http.Request) string {
		if len(r.Header[echo.HeaderXForwardedFor]) > 0 {
			return xff(r)
		}
		return realIP(r)
	}, nil
}

// Handler returns the HTTP handler, for tests and embedding. Provision
// must have run first.
func (s *Server) Handler() http.Handler { return s.echo }

// Provision declares what the server stores into besides the streams: the
// idempotency bucket and QUARANTINE. Run calls it.
func (s *Server) Provision(ctx context.Context) error {
	if err := s.checkMaxPayload(); err != nil {
		return err
	}
	if err := s.idem.Ensure(ctx); err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	q := s.cfg.Topology.Quarantine().Config
	if _, err := s.js.CreateOrUpdateStream(ctx, q); err != nil {
		return fmt.Errorf("ingress: create or update stream %s: %w", q.Name, natsx.ReplicasError(err, q.Replicas))
	}
	return nil
}

// Run provisions, then serves until ctx is done, then lets the audit and
// idempotency records in flight finish (for a few seconds at most).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Provision(ctx); err != nil {
		return err
	}
	err := httpserve.Run(ctx, "ingress", s.cfg.Listen, s.echo, s.cfg.Logger, httpserve.WithReadTimeout(s.cfg.ReadTimeout))
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cerr := s.Close(cctx); cerr != nil {
		s.cfg.Logger.Warn("ingress stopped with records in flight", slog.Any("error", cerr))
	}
	return err
}

// Close emits the last rejection summaries and stops the asynchronous
// publishers, waiting until ctx is done for those in flight. Run calls it;
// a server used through Handler alone must. Only the first call does
// anything.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.stopped
		s.flushSummaries(time.Now())
		err = errors.Join(s.auditing.Close(ctx), s.records.Close(ctx))
		if s.waiter != nil {
			err = errors.Join(err, s.waiter.Close())
		}
	})
	return err
}

// reply is the JSON body of every ingress answer.
type reply struct {
	ID      string `json:"id,omitempty"`
	Status  string `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// writeReply answers {"id": id, "status": status} without reflection: it is
// every accepted request's answer.
func writeReply(c echo.Context, code int, id, status string) error {
	if !jsonSafe(id) {
		return c.JSON(code, reply{ID: id, Status: status})
	}
	b := make([]byte, 0, 26+len(id)+len(status))
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","status":"`...)
	b = append(b, status...)
	b = append(b, "\"}\n"...)
	return c.Blob(code, echo.MIMEApplicationJSON, b)
}

// jsonSafe reports whether s can stand between JSON quotes as it is.
func jsonSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// Bodies are read into pooled buffers; large ones are not kept.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	b := bodies.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bodies.Put(b)
	}
}

// Reply statuses.
const (
	statusAccepted  = "accepted"
	statusDuplicate = "duplicate"
)

// rejection is an error answer that is also audited.
type rejection struct {
	status int
	reason switchyardv1.RejectReason
	code   string
	msg    string
	// retryAfter, when set, becomes a Retry-After header.
	retryAfter time.Duration
}

func (r *rejection) Error() string { return r.code + ": " + r.msg }

// retryAfterSeconds is a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var rj *rejection
	if errors.As(err, &rj) {
		if rj.retryAfter > 0 {
			c.Response().Header().Set("Retry-After", retryAfterSeconds(rj.retryAfter))
		}
		_ = c.JSON(rj.status, reply{Error: rj.code, Message: rj.msg})
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		_ = c.JSON(he.Code, reply{Error: http.StatusText(he.Code), Message: fmt.Sprint(he.Message)})
		return
	}
	_ = c.JSON(http.StatusInternalServerError, reply{Error: "internal", Message: "internal error"})
}

// unavailable is the answer for an event that could not be stored: the
// sender must retry, and is never told 2xx.
func (s *Server) unavailable() *rejection {
	return &rejection{
		status: http.StatusServiceUnavailable, reason: switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE,
		code: "unavailable", msg: "the event could not be stored; retry later", retryAfter: s.cfg.RetryAfter,
	}
}
