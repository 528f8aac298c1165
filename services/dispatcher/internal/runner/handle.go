package runner

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/mapping"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/redelivery"
	"github.com/switchyard/switchyard/pkg/syncreply"
	"github.com/switchyard/switchyard/pkg/telemetry"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/settle"
)

// handle makes one attempt for one message and settles it: ack when
// delivered, leave it for JetStream to redeliver on schedule when retryable,
// dead-letter and terminate when permanent or out of attempts (the decision
// is settle.Decide's). probe marks the half-open circuit breaker's probe
// attempt. ctx is the deliveries' context (it ends when the shutdown grace
// is over); stopping ends when the dispatcher starts shutting down.
//
// It goes in four steps: admission (an owed dead letter, or an event held
// by an open breaker), sending, bookkeeping (breaker, metrics, audit
// record) and settling.
func (dest *destination) handle(ctx, stopping context.Context, msg jetstream.Msg, probe bool) {
	if probe {
		defer dest.probing.Store(false)
	}
	meta, err := msg.Metadata()
	if err != nil {
		dest.log.ErrorContext(ctx, "message without JetStream metadata; terminating it", slog.Any("error", err))
		_ = msg.TermWithReason("no metadata")
		return
	}
	ev := events.FromMsg(msg.Subject(), msg.Headers(), msg.Data())
	attempt := int(meta.NumDelivered)
	log := dest.log.With(slog.String("event_id", ev.ID), slog.Int("attempt", attempt), slog.Uint64("seq", meta.Sequence.Stream))
	if ev.Source != "" {
		log = log.With(slog.String("source", ev.Source))
	}
	// The trace the event carries (ingress wrote it): this attempt's span
	// continues it.
	tr := dest.d.cfg.Tracing
	traced := tr.Enabled()
	if traced {
		ctx = tr.Extract(ctx, msg.Headers())
		if id := telemetry.TraceID(ctx); id != "" {
			log = log.With(slog.String("trace_id", id))
		}
	}

	// While this replica holds the event, JetStream must not think it lost:
	// a slow audit write or a wait for the breaker is not a failed attempt.
	// The request itself fits in the ack wait (validated), so this fires
	// only when the work around it overruns. It stops before the message
	// is settled, so that no InProgress follows a nak.
	alive := keepAlive(msg, dest.keepAliveEvery(attempt))
	defer alive.stop()

	if dl := dest.owed.get(meta.Sequence.Stream); dl != nil {
		// This replica gave the event up on an earlier delivery but could
		// not store all of its dead letter: finish that, without sending
		// the event again.
		log.WarnContext(ctx, "finishing the dead letter of an earlier delivery; no new attempt", slog.String("dead_letter_id", dl.Id))
		dest.finishDeadLetter(ctx, msg, dl, attempt >= dest.policy.MaxAttempts, alive, log)
		return
	}

	// The filter and the transformation come before admission: neither
	// needs the partner, and a failure is no answer of the partner's.
	var mapped mapping.Output
	if dest.mapping != nil {
		out, keep, err := dest.mapEvent(ctx, ev)
		switch {
		case err != nil:
			dest.mappingFailed(ctx, msg, ev, meta, attempt, err, alive, log)
			return
		case !keep:
			dest.filteredOut(ctx, msg, ev, meta, alive, log)
			return
		}
		mapped = out
	}

	admitted, heldProbe := dest.admitHeld(stopping, probe, attempt, alive, log)
	if !admitted {
		alive.stop()
		_ = msg.Nak()
		return
	}
	if heldProbe {
		probe = true
		defer dest.probing.Store(false)
	}

	dest.d.metrics.inflight.WithLabelValues(dest.cfg.Name).Inc()
	req := delivery.Request{
		EventID:     ev.ID,
		EventType:   ev.Type,
		ContentType: ev.ContentType,
		Body:        ev.Data,
		Attempt:     attempt,
		ReplayOf:    ev.ReplayOf,
	}
	if dest.mapping != nil {
		req = withMapping(req, mapped)
	}
	var span trace.Span
	if traced {
		hadTrace := telemetry.TraceID(ctx) != ""
		ctx, span = dest.startAttempt(ctx, ev, attempt, probe)
		if !hadTrace {
			log = log.With(slog.String("trace_id", telemetry.TraceID(ctx)))
		}
		// The partner can join its own spans to this attempt.
		if req.Header == nil {
			req.Header = http.Header{}
		}
		tr.InjectHTTP(ctx, req.Header)
	}
	// A publisher waits for this event's answer (a synchronous publish):
	// keep what it needs of the response.
	replyTo, waited := syncreply.Due(ev.Header, time.Now())
	if waited {
		req.Capture = syncreply.MaxBody
	}
	res := dest.client.Send(ctx, req)
	dest.d.metrics.inflight.WithLabelValues(dest.cfg.Name).Dec()

	act := settle.Decide(res, settle.Attempt{Number: attempt, Interrupted: ctx.Err() != nil}, dest.policy)
	if span != nil {
		endAttempt(span, res, act)
	}
	if act.Kind == settle.HandBack {
		// Cut off by shutdown: hand the event back at once for another
		// replica. This counts as an attempt, as the server cannot know.
		log.Warn("delivery interrupted by shutdown; handing the event back")
		alive.stop()
		_ = msg.Nak()
		return
	}
	a := dest.bookkeep(ctx, ev, meta, attempt, res, act, probe)
	if waited {
		dest.reply(replyTo, a, res)
	}
	dest.carryOut(ctx, msg, ev, meta, attempt, res, act, alive, log)
}

// admitHeld holds an event fetched just before the circuit breaker opened,
// without burning its attempt, until the partner is back (or it is this
// replica's probe: then probe is true). It reports false when the event is
// to be handed back because the dispatcher is shutting down.
func (dest *destination) admitHeld(stopping context.Context, probing bool, attempt int, alive *pulse, log *slog.Logger) (admitted, probe bool) {
	if probing || dest.breaker == nil {
		return true, false
	}
	if c, _ := dest.breaker.View(); c.State == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
		return true, false
	}
	// The hold starts now, however long ago the event was fetched: restart
	// its ack wait at once rather than at the next beat, which may come
	// after the ack wait has run out.
	alive.beat()
	n, p := dest.admit(stopping)
	switch {
	case n == 0 && attempt < dest.policy.MaxAttempts:
		// JetStream counted this delivery when it handed the event out;
		// handing it back costs the event one attempt of its schedule,
		// but another one follows.
		log.Warn("shutdown while the circuit breaker held the event; handing it back")
		return false, false
	case n == 0:
		// The final delivery: handed back, it would become a
		// MAX_DELIVERIES dead letter the partner never saw. Make the final
		// attempt instead, within the shutdown grace.
		log.Warn("shutdown while the circuit breaker held the event on its final delivery; making the final attempt now")
	case p:
		return true, true
	}
	return true, false
}

// bookkeep records an attempt's outcome in the circuit breaker, the
// metrics and the audit log, and returns the attempt's record detail.
func (dest *destination) bookkeep(ctx context.Context, ev events.Stored, meta *jetstream.MsgMetadata, attempt int, res delivery.Result,
	act settle.Action, probe bool) *switchyardv1.DeliveryAttempt {
	if dest.breaker != nil {
		dest.breaker.Record(res.Retryable(), res.ErrorString(), probe)
		if probe || res.Retryable() {
			// Write it before this worker takes the next event, so that a
			// failure that opens the breaker stops this replica's next
			// attempt, and a probe is decided before another can start.
			dest.breaker.Flush(ctx)
		}
	}
	dest.d.metrics.observe(dest.cfg.Name, res)
	return dest.recordAttempt(ctx, ev, meta, attempt, res, act.Final, probe)
}

// carryOut carries out the decision about the message.
func (dest *destination) carryOut(ctx context.Context, msg jetstream.Msg, ev events.Stored, meta *jetstream.MsgMetadata, attempt int,
	res delivery.Result, act settle.Action, alive *pulse, log *slog.Logger) {
	switch act.Kind {
	case settle.Ack:
		alive.stop()
		// A plain ack, not a double ack: waiting for the server's
		// confirmation costs a round trip per event and changes nothing,
		// since a lost ack means a redelivery either way, a duplicate the
		// partner drops by Idempotency-Key.
		if err := msg.Ack(); err != nil {
			log.WarnContext(ctx, "ack of a delivered event failed", slog.Any("error", err))
		}
		dest.tally.delivered.Add(1)
		log.DebugContext(ctx, "delivered", slog.Int("status", res.StatusCode), slog.Duration("took", res.Duration))
	case settle.DeadLetter:
		dl := dest.newDeadLetter(ev, meta, attempt, res, act.Reason)
		dl.TraceId = telemetry.SampledTraceID(ctx)
		dest.finishDeadLetter(ctx, msg, dl, act.LastDelivery, alive, log)
	case settle.NakWithDelay, settle.Redeliver:
		alive.stop()
		dest.tally.retrying.Add(1)
		next := act.RetryIn
		if act.Kind == settle.NakWithDelay {
			if err := msg.NakWithDelay(act.NakDelay); err != nil {
				log.WarnContext(ctx, "nak with delay failed; the schedule applies", slog.Any("error", err))
			}
		}
		// Redeliver: leave the message unacked; JetStream redelivers it
		// when the ack wait for this delivery (its BackOff step) runs out.
		log.InfoContext(ctx, "attempt failed; will retry",
			slog.Int("status", res.StatusCode), slog.String("error", res.ErrorString()),
			slog.Duration("retry_in", next))
	}
}

// keepAliveEvery is how often InProgress is sent for delivery number
// attempt: shortly before its ack wait (the BackOff step) runs out.
func (dest *destination) keepAliveEvery(attempt int) time.Duration {
	step := dest.policy.Step(attempt)
	return step - max(redelivery.AckMargin(dest.cfg.Timeout.D())/2, step/10)
}

// pulse sends InProgress on a message every interval until stopped.
type pulse struct {
	msg     jetstream.Msg
	every   time.Duration
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func keepAlive(msg jetstream.Msg, every time.Duration) *pulse {
	p := &pulse{msg: msg, every: every}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t = time.AfterFunc(every, p.beat)
	return p
}

// beat sends InProgress now and the next one an interval later (nothing
// once stopped).
func (p *pulse) beat() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	_ = p.msg.InProgress()
	p.t.Reset(p.every)
}

func (p *pulse) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.t.Stop()
}

// auditTimeout bounds waiting for one audit record (or dead letter) to be
// stored; the callers whose records must not be lost try again.
const auditTimeout = 5 * time.Second

// attemptRecordTimeout bounds waiting for an attempt's record. Nothing
// emits it again once the event is acknowledged, so it outlasts a stream
// leader election in a cluster (a few seconds after a server dies, up to
// about 10): the record is sent again under its id meanwhile
// (EmitUntilStored), rather than lost with the leader. The worker waits
// with it. (Dead letters need no such wait: until both copies are stored
// the event stays unacknowledged and the same ids are sent again.)
const attemptRecordTimeout = 20 * time.Second

// recordAttempt emits the attempt's audit record and returns its detail.
func (dest *destination) recordAttempt(ctx context.Context, ev events.Stored, meta *jetstream.MsgMetadata, attempt int, res delivery.Result, final, probe bool) *switchyardv1.DeliveryAttempt {
	a := &switchyardv1.DeliveryAttempt{
		EventId:         ev.ID,
		Destination:     dest.cfg.Name,
		Subject:         ev.Subject,
		StreamSeq:       meta.Sequence.Stream,
		Attempt:         int32(attempt),
		MaxAttempts:     int32(dest.cfg.Retry.MaxAttempts),
		StartedAt:       timestamppb.New(res.Started),
		Duration:        durationpb.New(res.Duration),
		StatusCode:      int32(res.StatusCode),
		Outcome:         res.Outcome,
		Error:           res.ErrorString(),
		ResponseSnippet: res.Snippet,
		Final:           final,
		ReplayOf:        ev.ReplayOf,
		Source:          ev.Source,
		EventType:       ev.Type,
		Probe:           probe,
		AuthFailure:     res.AuthFailure(),
		TraceId:         telemetry.SampledTraceID(ctx),
		// The request was made with this destination's transformation
		// (mapEvent ran before the attempt), so the body is its output.
		TransformVersion: dest.transformVersion(),
	}
	if res.RetryAfter > 0 {
		a.RetryAfter = durationpb.New(res.RetryAfter)
	}
	inc, _ := dest.d.inc.Get()
	rec := &switchyardv1.AuditRecord{
		// The same delivery of the same stream message is the same attempt.
		Id:     ids.AttemptID(inc, meta.Sequence.Stream, dest.cfg.Name, attempt),
		Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: a},
	}
	if err := dest.storeRecord(ctx, rec); err != nil {
		dest.log.ErrorContext(ctx, "attempt not recorded in the audit log", slog.String("event_id", ev.ID), slog.Any("error", err))
	}
	return a
}

// storeRecord emits an audit record the event's acknowledgement waits for,
// and waits for its PubAck up to attemptRecordTimeout.
func (dest *destination) storeRecord(ctx context.Context, rec *switchyardv1.AuditRecord) error {
	ctx, cancel := context.WithTimeout(ctx, attemptRecordTimeout)
	defer cancel()
	return dest.d.audit.EmitUntilStored(ctx, rec)
}

// reply tells the publisher waiting for the event what this attempt got,
// with core NATS: fire and forget, since nothing about the delivery depends
// on it (pkg/syncreply).
func (dest *destination) reply(subject string, a *switchyardv1.DeliveryAttempt, res delivery.Result) {
	r := &switchyardv1.DeliveryReply{
		Attempt: a, Headers: syncreply.Filter(res.Header, dest.cfg.SyncHeaders),
		Body: res.Body, BodyTruncated: res.BodyTruncated,
	}
	if err := syncreply.Publish(dest.d.js.Conn(), subject, r); err != nil {
		dest.log.Debug("the waiting publisher was not told the attempt's outcome", slog.String("event_id", a.GetEventId()), slog.Any("error", err))
	}
}

// newDeadLetter describes giving the event up after attempt.
func (dest *destination) newDeadLetter(ev events.Stored, meta *jetstream.MsgMetadata, attempt int, res delivery.Result, reason switchyardv1.DeadLetterReason) *switchyardv1.DeadLetter {
	inc, _ := dest.d.inc.Get()
	return &switchyardv1.DeadLetter{
		Id:              ids.DeadLetterID(inc, meta.Sequence.Stream, dest.cfg.Name),
		EventId:         ev.ID,
		Destination:     dest.cfg.Name,
		Subject:         ev.Subject,
		Stream:          natsx.StreamEvents,
		StreamSeq:       meta.Sequence.Stream,
		Attempts:        int32(attempt),
		LastStatusCode:  int32(res.StatusCode),
		LastError:       res.ErrorString(),
		ResponseSnippet: res.Snippet,
		Reason:          reason,
		DeadLetteredAt:  timestamppb.Now(),
		Source:          ev.Source,
		EventType:       ev.Type,
		ReplayOf:        ev.ReplayOf,
		AuthFailure:     res.AuthFailure(),
		// Both callers come after mapEvent: the transformation of the
		// delivery (or the one that failed).
		TransformVersion: dest.transformVersion(),
	}
}

// startAttempt starts the span of one attempt: a client span in the
// event's trace (ctx carries it), with the destination and attempt number.
func (dest *destination) startAttempt(ctx context.Context, ev events.Stored, attempt int, probe bool) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String("switchyard.destination", dest.cfg.Name),
		attribute.String("switchyard.event_id", ev.ID),
		attribute.Int("switchyard.attempt", attempt),
		attribute.Int("switchyard.max_attempts", dest.cfg.Retry.MaxAttempts),
		attribute.String("http.request.method", http.MethodPost),
	}
	if ev.Source != "" {
		attrs = append(attrs, attribute.String("switchyard.source", ev.Source))
	}
	if ev.ReplayOf != "" {
		attrs = append(attrs, attribute.String("switchyard.replay_of", ev.ReplayOf))
	}
	if probe {
		attrs = append(attrs, attribute.Bool("switchyard.probe", true))
	}
	return dest.d.cfg.Tracing.Start(ctx, "deliver "+dest.cfg.Name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endAttempt ends an attempt's span with its status and outcome.
func endAttempt(span trace.Span, res delivery.Result, act settle.Action) {
	span.SetAttributes(
		attribute.Int("http.response.status_code", res.StatusCode),
		attribute.String("switchyard.outcome", outcomeOf(res)),
		attribute.String("switchyard.settle", act.Kind.String()),
	)
	if !res.Delivered() {
		span.SetStatus(codes.Error, res.ErrorString())
	}
	span.End()
}
