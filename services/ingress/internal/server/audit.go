package server

import (
	"errors"
	"log/slog"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/subjects"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/inflight"
)

// apiSource is the source name in audit records about the publish API: no
// configured source can have it, since source names start with a letter or
// a digit.
const apiSource = "_api"

// reject audits a refused webhook and returns the rejection for the error
// handler. The record carries the source, the reason, the remote address
// and the unverified delivery id; never the body, a signature or a secret.
func (s *Server) reject(c echo.Context, sourceName, eventID string, size int64, rj *rejection) error {
	return s.rejectAs(c, sourceName, "", eventID, size, rj)
}

func (s *Server) rejectAs(c echo.Context, sourceName, apiKey, eventID string, size int64, rj *rejection) error {
	s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{
		WebhookRejected: &switchyardv1.WebhookRejected{
			Source: subjects.Token(sourceName), Reason: rj.reason, Detail: rj.msg,
			RemoteAddr: c.RealIP(), StatusCode: int32(rj.status), EventId: eventID,
			UserAgent: truncate(c.Request().UserAgent(), 256), BodySize: size, ApiKey: apiKey,
		},
	}})
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
