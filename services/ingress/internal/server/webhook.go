package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
)

// maxHeaderValue bounds a provider header copied into a stored event.
const maxHeaderValue = 512

func (s *Server) handleWebhook(c echo.Context) error {
	start := time.Now()
	name := c.Param("source")
	req := c.Request()
	src, ok := s.sources[name]
	if !ok {
		msg := fmt.Sprintf("no source named %q is configured", subjects.Token(name))
		if s.polled[name] {
			msg = fmt.Sprintf("source %q is polled by Switchyard; it takes no webhooks", name)
		}
		s.metrics.observeUnknownSource(time.Since(start))
		// The name is the caller's; it goes into the audit record as a
		// subject token only.
		return s.rejectAs(c, s.unknownGate, subjects.Token(name), "", "", 0, &rejection{
			status: http.StatusNotFound, reason: switchyardv1.RejectReason_REJECT_REASON_UNKNOWN_SOURCE,
			code: "unknown_source", msg: msg,
		})
	}
	outcome := "accepted"
	defer func() { src.metrics.observe(outcome, time.Since(start)) }()

	// Before reading the body: a flood costs as little as possible.
	if wait, limited := src.limited(s.cfg.Now()); limited {
		outcome = "rate_limited"
		return s.reject(c, src, "", req.ContentLength, &rejection{
			status: http.StatusTooManyRequests, reason: switchyardv1.RejectReason_REJECT_REASON_RATE_LIMITED,
			code: "rate_limited", msg: fmt.Sprintf("this source is limited to %g requests per second", src.cfg.RateLimit.PerSecond),
			retryAfter: wait,
		})
	}

	buf := getBuffer()
	defer putBuffer(buf)
	_, err := buf.ReadFrom(http.MaxBytesReader(c.Response(), req.Body, int64(src.cfg.MaxBody)))
	// body is only read until the handler returns: the publish copies it.
	body := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			outcome = "body_too_large"
			return s.reject(c, src, "", req.ContentLength, &rejection{
				status: http.StatusRequestEntityTooLarge, reason: switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE,
				code: "body_too_large", msg: fmt.Sprintf("the body is larger than this source's limit of %d bytes", src.cfg.MaxBody),
			})
		}
		if errors.Is(err, errOverBudget) {
			outcome = outcomeOverloaded
			s.metrics.overloaded.WithLabelValues(routeWebhooks).Inc()
			closeUnread(c)
			return s.reject(c, src, "", req.ContentLength, s.overloaded())
		}
		outcome = "malformed"
		return s.reject(c, src, "", 0, &rejection{
			status: http.StatusBadRequest, reason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED,
			code: "unreadable_body", msg: "the request body could not be read completely",
		})
	}

	verified, err := src.verifier.Verify(signing.Request{Header: req.Header, Body: body, Now: s.cfg.Now()})
	if err != nil {
		rj := verifyRejection(err)
		outcome = rj.code
		// The id this event would have had, unverified: the same mapping as
		// for accepted events (a hash for a long or unprintable id), so a
		// refusal can be matched with the event stored when the partner
		// retried, and nothing the sender made up reaches the record raw.
		var id string
		if raw := req.Header.Get(src.auditIDHeader); src.auditIDHeader != "" && raw != "" {
			id = name + ":" + deliveryID(name, raw, nil)
		}
		return s.reject(c, src, id, int64(len(body)), rj)
	}
	if src.cfg.Scheme == "slack" && verified.EventType == "url_verification" {
		// Slack's handshake when the URL is configured: echo the
		// challenge; nothing to store.
		outcome = "handshake"
		return c.JSON(http.StatusOK, map[string]string{"challenge": signing.JSONString(body, "challenge")})
	}

	eventID := WebhookEventID(name, verified.DeliveryID, body)
	m := webhookMsg(name, eventID, verified.EventType, req.Header.Get(echo.HeaderContentType), start)
	for _, h := range src.keep {
		if v := req.Header.Get(h); v != "" {
			m.Header[h] = []string{untrusted.Text(v, maxHeaderValue)}
		}
	}
	m.Data = body

	owner := contracts.Source(name)
	if vs := s.checkContract(owner, eventID, verified.EventType, req.Header.Get(echo.HeaderContentType), body); len(vs) > 0 {
		if s.cfg.Contracts.Rejects(owner) {
			outcome = outcomeInvalid
			s.auditInvalid(owner, eventID, verified.EventType, m.Subject, c.RealIP(), vs, true, 0, len(body))
			return writeInvalid(c, eventID, vs)
		}
		res, err := s.quarantine(req.Context(), owner, eventID, m, vs)
		if err != nil {
			outcome = "unavailable"
			s.warn("event not quarantined, answering 503", slog.String("source", name), slog.String("event_id", eventID), slog.Any("error", err))
			return s.reject(c, src, eventID, int64(len(body)), s.unavailable())
		}
		if res.duplicate() {
			outcome = "duplicate"
			s.auditWebhookDuplicate(c, name, eventID, res)
			return writeReply(c, http.StatusOK, eventID, statusDuplicate)
		}
		outcome = statusQuarantined
		s.auditInvalid(owner, eventID, verified.EventType, m.Subject, c.RealIP(), vs, false, res.seq, len(body))
		return writeReply(c, http.StatusAccepted, eventID, statusQuarantined)
	}

	// Where the scheme does not sign the delivery id, anyone holding a
	// captured request can send it again under a fresh id (or none): the
	// body is remembered too, and a body seen before is a suspected replay.
	var bodyID string
	if !verified.DeliveryIDSigned {
		bodyID = idempotency.BodyID(name, body)
	}
	res, err := s.storeWithBody(req.Context(), eventID, bodyID, m)
	if err != nil {
		// Not stored: the partner must retry. Never 2xx here.
		outcome = "unavailable"
		s.warn("event not stored, answering 503", slog.String("source", name), slog.String("event_id", eventID), slog.Any("error", err))
		return s.reject(c, src, eventID, int64(len(body)), s.unavailable())
	}
	if res.duplicate() {
		outcome = "duplicate"
		if res.via == switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH {
			outcome = "suspected_replay"
		}
		s.auditWebhookDuplicate(c, name, eventID, res)
		return writeReply(c, http.StatusOK, eventID, statusDuplicate)
	}
	return writeReply(c, http.StatusAccepted, eventID, statusAccepted)
}

func (s *Server) auditWebhookDuplicate(c echo.Context, source, eventID string, res stored) {
	s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookDuplicate{
		WebhookDuplicate: &switchyardv1.WebhookDuplicate{
			Source: source, EventId: eventID, RemoteAddr: c.RealIP(), Subject: res.subject, Via: res.via,
		},
	}})
}

// WebhookEventID is the id of a source's event: <source>:<delivery id>,
// the provider's id as it is when short printable ASCII, hashed otherwise,
// or a hash of the source and the body when the provider sent none.
func WebhookEventID(source, providerID string, body []byte) string {
	return source + ":" + deliveryID(source, providerID, body)
}

// WebhookSubject is the EVENTS subject of a source's event of a type:
// webhooks.<source>.<type made a token>.
func WebhookSubject(source, eventType string) string {
	return "webhooks." + source + "." + subjects.Token(untrusted.Text(eventType, maxHeaderValue))
}

// webhookMsg is the EVENTS message of a source's event, without its body:
// on webhooks.<source>.<type>, with the event id as Nats-Msg-Id.
func webhookMsg(source, eventID, eventType, contentType string, received time.Time) *nats.Msg {
	// The type goes into a header that the dispatcher copies into
	// protobuf strings (dead letters): valid UTF-8, cut on a rune boundary.
	rawType := untrusted.Text(eventType, maxHeaderValue)
	m := nats.NewMsg(WebhookSubject(source, eventType))
	m.Header.Set(nats.MsgIdHdr, eventID)
	m.Header.Set(events.HeaderEventID, eventID)
	m.Header.Set(events.HeaderSource, source)
	m.Header.Set(events.HeaderEventType, rawType)
	m.Header.Set(events.HeaderReceivedAt, received.UTC().Format(time.RFC3339Nano))
	if contentType != "" {
		m.Header.Set(events.HeaderContentType, untrusted.Text(contentType, maxHeaderValue))
	}
	return m
}

// StorePolled stores an item a polled source found as its webhooks are
// stored: the same subject, id, headers, contract check and store path
// (idempotency record, PubAck). An item that breaks the source's contract
// is quarantined, as a webhook would be (a polled source has nobody to
// answer 422, so on_invalid: reject is refused for it at load). An error
// means the item is not stored.
func (s *Server) StorePolled(ctx context.Context, source, itemID, eventType string, body []byte, received time.Time) (eventID string, duplicate, quarantined bool, err error) {
	eventID = WebhookEventID(source, itemID, body)
	m := webhookMsg(source, eventID, eventType, "application/json", received)
	m.Data = body
	owner := contracts.Source(source)
	if vs := s.checkContract(owner, eventID, eventType, "application/json", body); len(vs) > 0 {
		res, err := s.quarantine(ctx, owner, eventID, m, vs)
		if err != nil {
			return eventID, false, false, err
		}
		if res.duplicate() {
			return eventID, true, false, nil
		}
		s.auditInvalid(owner, eventID, eventType, m.Subject, "", vs, false, res.seq, len(body))
		return eventID, false, true, nil
	}
	res, err := s.store(ctx, eventID, m)
	if err != nil {
		return eventID, false, false, err
	}
	return eventID, res.duplicate(), false, nil
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
	case errors.Is(err, signing.ErrMissingCredentials):
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, "missing_credentials"
	case errors.Is(err, signing.ErrBadCredentials):
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, "bad_credentials"
	default:
		rj.reason, rj.code = switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, "bad_signature"
	}
	return rj
}
