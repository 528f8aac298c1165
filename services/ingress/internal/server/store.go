package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/publish"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// stored says what storing an event did.
type stored struct {
	// seq is the stream sequence of the new event (or of the first copy
	// for a duplicate within the stream window); 0 for a duplicate found
	// by its idempotency record.
	seq uint64
	// via is how a duplicate was recognised; unspecified for a new event.
	via switchyardv1.DuplicateVia
	// subject is where the (first copy of the) event is stored.
	subject string
}

func (r stored) duplicate() bool { return r.via != switchyardv1.DuplicateVia_DUPLICATE_VIA_UNSPECIFIED }

// store puts an event in EVENTS unless it was stored before, and returns
// an error only when it is not stored (the caller answers 503).
//
// The order is what makes a crash safe: look up the idempotency record,
// publish and wait for the PubAck, and only then write the record. A crash
// before the PubAck leaves no record, so the sender's retry is stored; a
// crash between the PubAck and the record leaves the event stored without a
// record: a retry within the duplicate window is still recognised (and
// writes the missing record), a much later one would be stored again. A
// duplicate, never a loss.
func (s *Server) store(ctx context.Context, eventID string, m *nats.Msg) (stored, error) {
	return s.storeWithBody(ctx, eventID, "", m)
}

// storeWithBody is store for an event whose delivery id its sender could
// change without breaking the signature: bodyID (idempotency.BodyID), when
// set, is looked up after the event id and remembered with it, so that the
// same body sent again under a fresh id within the horizon is a duplicate
// (DUPLICATE_VIA_BODY_HASH, a suspected replay) and is not stored again.
func (s *Server) storeWithBody(ctx context.Context, eventID, bodyID string, m *nats.Msg) (res stored, err error) {
	ctx, span := s.startStore(ctx, eventID, m)
	if s.cfg.Tracing.Enabled() {
		defer func() { endStore(span, res, err) }()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	subject, found, err := s.idem.Lookup(ctx, eventID)
	switch {
	case err != nil:
		// Without the record the event may be stored twice, not lost: go
		// on. If JetStream itself is down the publish fails just below.
		s.metrics.idempotencyErrors.WithLabelValues("lookup").Inc()
		s.warn("idempotency lookup failed; storing without it", slog.String("event_id", eventID), slog.Any("error", err))
	case found:
		return stored{via: switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD, subject: subject}, nil
	case bodyID != "":
		subject, found, err := s.idem.Lookup(ctx, bodyID)
		switch {
		case err != nil:
			s.metrics.idempotencyErrors.WithLabelValues("lookup").Inc()
			s.warn("idempotency lookup of the body failed; storing without it", slog.String("event_id", eventID), slog.Any("error", err))
		case found:
			return stored{via: switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH, subject: subject}, nil
		}
	}
	// Sent again under the same Nats-Msg-Id while no PubAck comes (a stream
	// leader election, a reconnect), within the publish timeout.
	ack, err := publish.Msg(ctx, s.js, m)
	if err != nil {
		return stored{}, err
	}
	// Also after a duplicate within the window: the first delivery may
	// have crashed before writing its record.
	s.remember(eventID, m.Subject)
	if bodyID != "" {
		s.records.Go("the body of "+eventID, func() (jetstream.PubAckFuture, error) {
			return s.js.PublishMsgAsync(s.idem.Msg(bodyID, m.Subject))
		})
	}
	if ack.Duplicate {
		return stored{seq: ack.Sequence, via: switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW, subject: m.Subject}, nil
	}
	return stored{seq: ack.Sequence, subject: m.Subject}, nil
}

// remember writes the idempotency record without holding up the answer;
// the in-flight bound keeps an outage from piling up publishes.
func (s *Server) remember(eventID, subject string) {
	s.records.Go(eventID, func() (jetstream.PubAckFuture, error) {
		return s.js.PublishMsgAsync(s.idem.Msg(eventID, subject))
	})
}

func (s *Server) recordFailed(eventID string, err error) {
	s.metrics.idempotencyErrors.WithLabelValues("record").Inc()
	s.warn("idempotency record not written; a redelivery after the duplicate window would be stored again",
		slog.String("event_id", eventID), slog.Any("error", err))
}

// warn logs at most one warning per interval (with the count of those
// left out), so that an outage does not flood the log.
func (s *Server) warn(msg string, attrs ...any) {
	if n, ok := s.warnings.allow(); ok {
		if n > 0 {
			attrs = append(attrs, slog.Int64("similar_warnings_left_out", n))
		}
		s.cfg.Logger.Warn(msg, attrs...)
	}
}

// sampledLog lets one message through per interval.
type sampledLog struct {
	every   time.Duration
	next    atomic.Int64 // unix nanoseconds
	skipped atomic.Int64
}

// allow reports whether to log now, and how many were skipped since the
// last time.
func (l *sampledLog) allow() (int64, bool) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(l.every)) {
		l.skipped.Add(1)
		return 0, false
	}
	return l.skipped.Swap(0), true
}

// endStore ends the span of storing an event with what happened.
func endStore(span trace.Span, res stored, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "not stored")
		span.RecordError(err)
	} else {
		span.SetAttributes(attribute.Bool("switchyard.duplicate", res.duplicate()))
	}
	span.End()
}
