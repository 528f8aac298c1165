package server

import (
	"errors"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/inflight"
)

// apiSource is the source name in audit records about the publish API: no
// configured source can have it, since source names start with a letter or
// a digit.
const apiSource = "_api"

// Bounds of the untrusted text in a rejection record.
const (
	maxAuditDetail    = 1024
	maxAuditUserAgent = 256
	maxAuditEventID   = 512
	maxAuditRemote    = 64
)

// reject audits a refused webhook of a configured source and returns the
// rejection for the error handler. The record carries the source, the
// reason, the remote address and the event id the request would have had;
// never the body, a signature or a secret.
func (s *Server) reject(c echo.Context, src *source, eventID string, size int64, rj *rejection) error {
	return s.rejectAs(c, src.gate, src.cfg.Name, "", eventID, size, rj)
}

// rejectAs audits a refusal through gate, which bounds how many are
// recorded one by one. Every text field is made safe for a protobuf string
// here: one invalid UTF-8 byte would make the record fail to marshal, and
// the refusal would go unrecorded.
func (s *Server) rejectAs(c echo.Context, gate *rejectionGate, sourceName, apiKey, eventID string, size int64, rj *rejection) error {
	rec := &switchyardv1.WebhookRejected{
		Source: subjects.Token(sourceName), Reason: rj.reason, Detail: untrusted.Text(rj.msg, maxAuditDetail),
		RemoteAddr: untrusted.Text(c.RealIP(), maxAuditRemote), StatusCode: int32(rj.status),
		EventId:   untrusted.Text(eventID, maxAuditEventID),
		UserAgent: untrusted.Text(c.Request().UserAgent(), maxAuditUserAgent), BodySize: size, ApiKey: apiKey,
	}
	if gate.admit(rec, time.Now()) {
		s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: rec}})
	}
	return rj
}

// emit publishes an audit record without holding up the answer: the record
// matters, but a request must not wait on it or fail because of it. The
// records in flight are bounded, so that during a NATS outage they are
// dropped and counted rather than piling up.
func (s *Server) emit(rec *switchyardv1.AuditRecord) {
	s.auditing.Go("audit record", func() (jetstream.PubAckFuture, error) { return s.audit.EmitAsync(rec) })
}

func (s *Server) auditFailed(_ string, err error) {
	reason := "failed"
	if errors.Is(err, inflight.ErrFull) {
		reason = "dropped"
	}
	s.metrics.auditErrors.WithLabelValues(reason).Inc()
	s.warn("audit record not stored", slog.String("reason", reason), slog.Any("error", err))
}
