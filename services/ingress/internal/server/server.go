// Package server is the ingress HTTP server: it verifies partner webhooks,
// stores them in EVENTS and answers 2xx only once JetStream has them.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/subjects"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Config configures the ingress server.
type Config struct {
	// Listen is the address Run listens on. Default :8080.
	Listen string
	// Sources are the webhook sources; each must be valid (config.Validate).
	Sources []config.Source
	// ReadTimeout bounds reading a request. Default 10s.
	ReadTimeout time.Duration
	// PublishTimeout bounds waiting for the PubAck; past it the partner gets
	// 503 and retries. Default 5s.
	PublishTimeout time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock, for signature timestamp tolerance. Default time.Now.
	Now func() time.Time
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = config.DefaultIngressListen
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
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
	return nil
}

// Server is the ingress HTTP server.
type Server struct {
	cfg     Config
	js      jetstream.JetStream
	audit   *auditlog.Emitter
	sources map[string]*source
	echo    *echo.Echo
	metrics *metrics
}

// New builds the server; Run serves it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		js:      js,
		audit:   audit,
		sources: map[string]*source{},
		metrics: newMetrics(cfg.Registerer),
	}
	for _, sc := range cfg.Sources {
		src, err := newSource(sc)
		if err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
		s.sources[sc.Name] = src
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Partners connect directly unless a proxy is configured: never trust
	// X-Forwarded-For by default, it is the sender's to forge.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = errorHandler
	e.POST("/webhooks/:source", s.handleWebhook)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	s.echo = e
	return s, nil
}

// Handler returns the HTTP handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.echo }

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	return httpserve.Run(ctx, "ingress", s.cfg.Listen, s.echo, s.cfg.Logger, httpserve.WithReadTimeout(s.cfg.ReadTimeout))
}

// reply is the JSON body of every ingress answer.
type reply struct {
	ID      string `json:"id,omitempty"`
	Status  string `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

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

func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var rj *rejection
	if errors.As(err, &rj) {
		if rj.retryAfter > 0 {
			c.Response().Header().Set("Retry-After", fmt.Sprint(int(rj.retryAfter.Seconds())))
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

func (s *Server) handleWebhook(c echo.Context) error {
	start := time.Now()
	name := c.Param("source")
	outcome := "accepted"
	defer func() { s.metrics.observe(name, outcome, time.Since(start)) }()

	src, ok := s.sources[name]
	if !ok {
		outcome = "unknown_source"
		// The name is the caller's; it goes into the audit record as a
		// subject token only.
		return s.reject(c, name, "", 0, &rejection{
			status: http.StatusNotFound, reason: switchyardv1.RejectReason_REJECT_REASON_UNKNOWN_SOURCE,
			code: "unknown_source", msg: fmt.Sprintf("no source named %q is configured", subjects.Token(name)),
		})
	}

	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, int64(src.cfg.MaxBody)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			outcome = "body_too_large"
			return s.reject(c, name, "", c.Request().ContentLength, &rejection{
				status: http.StatusRequestEntityTooLarge, reason: switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE,
				code: "body_too_large", msg: fmt.Sprintf("the body is larger than this source's limit of %d bytes", src.cfg.MaxBody),
			})
		}
		outcome = "malformed"
		return s.reject(c, name, "", 0, &rejection{
			status: http.StatusBadRequest, reason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED,
			code: "unreadable_body", msg: "the request body could not be read completely",
		})
	}

	verified, err := src.verifier.Verify(signing.Request{Header: c.Request().Header, Body: body, Now: s.cfg.Now()})
	if err != nil {
		rj := verifyRejection(err)
		outcome = rj.code
		return s.reject(c, name, deliveryIDForAudit(c.Request().Header), int64(len(body)), rj)
	}

	eventID := name + ":" + verified.DeliveryID
	rawType := src.eventType(verified, body)
	subject := "webhooks." + name + "." + subjects.Token(rawType)

	m := nats.NewMsg(subject)
	m.Header.Set(nats.MsgIdHdr, eventID)
	m.Header.Set(events.HeaderEventID, eventID)
	m.Header.Set(events.HeaderSource, name)
	m.Header.Set(events.HeaderEventType, rawType)
	m.Header.Set(events.HeaderReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		m.Header.Set(events.HeaderContentType, ct)
	}
	m.Data = body

	pctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.PublishTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(pctx, m)
	if err != nil {
		// Not stored: the partner must retry. Never 2xx here.
		outcome = "unavailable"
		s.cfg.Logger.WarnContext(c.Request().Context(), "event not stored, answering 503",
			slog.String("source", name), slog.String("event_id", eventID), slog.Any("error", err))
		return s.reject(c, name, verified.DeliveryID, int64(len(body)), &rejection{
			status: http.StatusServiceUnavailable, reason: switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE,
			code: "unavailable", msg: "the event could not be stored; retry later", retryAfter: 5 * time.Second,
		})
	}
	if ack.Duplicate {
		outcome = "duplicate"
		s.emit(c.Request().Context(), &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookDuplicate{
			WebhookDuplicate: &switchyardv1.WebhookDuplicate{
				Source: name, EventId: eventID, RemoteAddr: c.RealIP(), Subject: subject,
				Via: switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW,
			},
		}})
		return c.JSON(http.StatusOK, reply{ID: eventID, Status: "duplicate"})
	}
	s.cfg.Logger.DebugContext(c.Request().Context(), "webhook accepted",
		slog.String("source", name), slog.String("event_id", eventID), slog.String("subject", subject), slog.Uint64("seq", ack.Sequence))
	return c.JSON(http.StatusAccepted, reply{ID: eventID, Status: "accepted"})
}

// verifyRejection maps a verification error to the answer.
func verifyRejection(err error) *rejection {
	rj := &rejection{status: http.StatusUnauthorized, msg: err.Error()}
	switch {
	case errors.Is(err, signing.ErrMissingSignature):
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE, "missing_signature"
	case errors.Is(err, signing.ErrStaleTimestamp):
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP, "stale_timestamp"
	case errors.Is(err, signing.ErrMalformed):
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "malformed_signature"
	default:
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, "bad_signature"
	}
	return rj
}

// deliveryIDForAudit picks a delivery id from an unverified request, for the
// audit record only (it helps find the partner's retries of it).
func deliveryIDForAudit(h http.Header) string {
	id := h.Get(signing.HeaderWebhookID)
	if len(id) > 128 {
		id = id[:128]
	}
	return id
}

// reject audits the rejection and returns it for the error handler.
func (s *Server) reject(c echo.Context, sourceName, eventID string, size int64, rj *rejection) error {
	s.emit(c.Request().Context(), &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{
		WebhookRejected: &switchyardv1.WebhookRejected{
			Source: subjects.Token(sourceName), Reason: rj.reason, Detail: rj.msg,
			RemoteAddr: c.RealIP(), StatusCode: int32(rj.status), EventId: eventID,
			UserAgent: truncate(c.Request().UserAgent(), 256), BodySize: size,
		},
	}})
	return rj
}

// emit records an audit record without holding up the answer: the record
// matters, but a partner's request must not wait on it or fail because of
// it.
func (s *Server) emit(ctx context.Context, rec *switchyardv1.AuditRecord) {
	f, err := s.audit.EmitAsync(rec)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "audit record not published", slog.Any("error", err))
		return
	}
	go func() {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			s.cfg.Logger.Warn("audit record not stored", slog.String("record_id", rec.Id), slog.Any("error", err))
		}
	}()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
