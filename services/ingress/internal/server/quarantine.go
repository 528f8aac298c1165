package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Payload contracts: a payload of a source or publish API key with a
// contract that is not well-formed JSON or fails its schema is not stored
// in EVENTS, so no destination receives it. It is accepted (2xx: a refused
// webhook is retried or given up by the partner, and the data would be
// lost) and kept in QUARANTINE with its violations until an operator
// releases it after a fix, or, with on_invalid: reject, answered 422
// naming the violations (docs/decisions/0501-malformed-payloads-accepted-and-quarantined.md).

// Reply status and outcome label of a quarantined payload, and outcome of
// one refused for its contract.
const (
	statusQuarantined = "quarantined"
	outcomeInvalid    = "invalid_payload"
)

// invalidReply is the 422 answer to a payload that broke its contract
// (on_invalid: reject).
type invalidReply struct {
	ID         string                `json:"id,omitempty"`
	Error      string                `json:"error"`
	Message    string                `json:"message"`
	Violations []contracts.Violation `json:"violations"`
}

const codeContractViolation = "contract_violation"

func writeInvalid(c echo.Context, id string, vs []contracts.Violation) error {
	return c.JSON(http.StatusUnprocessableEntity, invalidReply{
		ID: id, Error: codeContractViolation, Message: violationsText(vs), Violations: vs,
	})
}

// violationsText is the violations in one line, for a message.
func violationsText(vs []contracts.Violation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return "the payload breaks its contract: " + strings.Join(parts, "; ")
}

// checkContract checks a payload against its owner's contract (none: no
// violations) and follows the owner's state: after a payload that broke
// the contract, the first valid one is recorded (PayloadsValid), which
// resolves the MalformedPayloads alert. Each replica follows what it
// sees.
func (s *Server) checkContract(owner contracts.Owner, eventID, eventType, contentType string, body []byte) []contracts.Violation {
	vs := s.cfg.Contracts.Validate(owner, eventType, contentType, body)
	broken := s.broken[owner]
	switch {
	case broken == nil:
	case len(vs) > 0:
		broken.Store(true)
	case broken.CompareAndSwap(true, false):
		rec := &switchyardv1.PayloadsValid{EventId: untrusted.Text(eventID, maxAuditEventID)}
		if owner.Kind == contracts.KindAPIKey {
			rec.ApiKey = owner.Name
		} else {
			rec.Source = owner.Name
		}
		s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PayloadsValid{PayloadsValid: rec}})
	}
	return vs
}

// quarantine stores m, the EVENTS message of owner's event eventID, in
// QUARANTINE with its violations, and returns an error only when it is
// not stored (the caller answers 503). An event whose id was stored in
// EVENTS before is a duplicate, whatever this copy holds; one quarantined
// before within the duplicate window is stored once. No idempotency record
// is written: a corrected copy sent later under the same id is stored in
// EVENTS, and a release then finds it there.
func (s *Server) quarantine(ctx context.Context, owner contracts.Owner, eventID string, m *nats.Msg, vs []contracts.Violation) (stored, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	subject, found, err := s.idem.Lookup(ctx, eventID)
	switch {
	case err != nil:
		s.metrics.idempotencyErrors.WithLabelValues("lookup").Inc()
		s.warn("idempotency lookup failed; quarantining without it", slog.String("event_id", eventID), slog.Any("error", err))
	case found:
		return stored{via: switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD, subject: subject}, nil
	}
	q := nats.NewMsg(contracts.QuarantineSubject(owner, m.Subject))
	for k, v := range m.Header {
		q.Header[k] = v
	}
	q.Header.Set(contracts.HeaderSubject, m.Subject)
	q.Header.Set(contracts.HeaderViolations, contracts.EncodeViolations(vs))
	q.Data = m.Data
	ack, err := publish.Msg(ctx, s.js, q)
	if err != nil {
		return stored{}, err
	}
	if ack.Duplicate {
		return stored{seq: ack.Sequence, via: switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW, subject: q.Subject}, nil
	}
	return stored{seq: ack.Sequence, subject: q.Subject}, nil
}

// auditInvalid records a payload that broke its contract: quarantined at
// seq, or refused (rejected). remote is the sender's address; "" for a
// polled item.
func (s *Server) auditInvalid(owner contracts.Owner, eventID, eventType, subject, remote string, vs []contracts.Violation, rejected bool, seq uint64, size int) {
	rec := &switchyardv1.PayloadQuarantined{
		EventId: untrusted.Text(eventID, maxAuditEventID), EventType: untrusted.Text(eventType, maxHeaderValue),
		Subject: subject, Rejected: rejected, QuarantineSeq: seq, BodySize: int64(size),
		RemoteAddr: untrusted.Text(remote, maxAuditRemote),
	}
	if owner.Kind == contracts.KindAPIKey {
		rec.ApiKey = owner.Name
	} else {
		rec.Source = owner.Name
	}
	for _, v := range vs {
		rec.Violations = append(rec.Violations, &switchyardv1.Violation{Path: v.Path, Message: v.Message})
	}
	s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PayloadQuarantined{PayloadQuarantined: rec}})
}
