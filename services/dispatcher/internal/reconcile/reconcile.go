// Package reconcile turns deliveries given up without a dead letter into
// dead letters. JetStream publishes an advisory when a message runs out of
// deliveries (MAX_DELIVERIES: the dispatcher stopped, or lost NATS, during
// the final attempt) or is terminated (MSG_TERMINATED: by the dispatcher,
// after its dead letter is stored, or by someone else); the ADVISORIES
// stream keeps them, and every dispatcher replica reads them through one
// durable consumer.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/deadletter"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
)

// ConsumerName is the durable consumer on ADVISORIES through which the
// dispatcher replicas turn deliveries given up without a dead letter into
// dead letters (declared by pkg/topology: Topology.ReconcilerConsumer).
const ConsumerName = topology.ReconcilerConsumer

// auditTimeout bounds storing one dead letter or its audit record.
const auditTimeout = 5 * time.Second

// Metrics are the reconciler's metrics, registered by the dispatcher.
type Metrics struct {
	// Reconciled counts advisories by kind (max_deliveries, terminated)
	// and result (dead_lettered, already_dead_lettered).
	Reconciled *prometheus.CounterVec
	// DeadLetters counts dead letters by destination (shared with the
	// dispatcher's workers).
	DeadLetters *prometheus.CounterVec
}

// Config is what the reconciler needs; every field is required.
type Config struct {
	JS jetstream.JetStream
	// DeadLetters stores the dead letters.
	DeadLetters *deadletter.Writer
	// Incarnation is the EVENTS stream the dead letters' ids name.
	Incarnation *ids.Incarnation
	Logger      *slog.Logger
	// FetchWait is how long one pull request waits for advisories.
	FetchWait time.Duration
	Metrics   Metrics
}

// Reconciler reads the advisories.
type Reconciler struct {
	cfg Config
}

// New returns a Reconciler; its consumer (pkg/topology's
// Topology.ReconcilerConsumer) must exist before it runs.
func New(cfg Config) *Reconciler { return &Reconciler{cfg: cfg} }

// Advisory subjects (nats-server jetstream_events.go) for EVENTS
// consumers, less the consumer's name at the end.
const (
	// AdvisoryMaxDeliveries: a message ran out of deliveries.
	AdvisoryMaxDeliveries = topology.AdvisoryMaxDeliveries
	// AdvisoryTerminated: a message was terminated.
	AdvisoryTerminated = topology.AdvisoryTerminated
)

// advisory is the part of a JetStream consumer advisory the reconciler reads
// (io.nats.jetstream.advisory.v1.max_deliver and .terminated).
type advisory struct {
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"timestamp"`
}

// Run reads the advisories until ctx ends. Every replica runs it on
// the one durable consumer, so each advisory is handled once (and handling
// it twice is harmless: the dead letter id is its Nats-Msg-Id).
func (r *Reconciler) Run(ctx context.Context) error {
	cons := r.consumer(ctx)
	if cons == nil {
		return nil // stopped
	}
	failures := 0
	for ctx.Err() == nil {
		batch, err := cons.Fetch(16, jetstream.FetchMaxWait(r.cfg.FetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				// Finish an advisory begun, even at shutdown: the dead
				// letter and its audit record belong together.
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*auditTimeout)
				r.one(wctx, msg)
				cancel()
			}
			err = batch.Error()
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			r.cfg.Logger.WarnContext(ctx, "advisory fetch failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
	}
	return nil
}

// consumer opens the reconciler's consumer, creating it again if it is
// missing, and tries again until ctx ends (nil then). In a cluster a
// lookup can fail for a while, or find nothing on a server that has not
// caught up yet, while leaders change: the reconciler waits rather than
// stopping the dispatcher.
func (r *Reconciler) consumer(ctx context.Context) jetstream.Consumer {
	for failures := 1; ctx.Err() == nil; failures++ {
		cons, err := r.cfg.JS.Consumer(ctx, natsx.StreamAdvisories, ConsumerName)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			rc := topology.Topology{}.ReconcilerConsumer()
			cons, err = r.cfg.JS.CreateOrUpdateConsumer(ctx, rc.Stream, rc.Config)
		}
		if err == nil {
			return cons
		}
		wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
		r.cfg.Logger.WarnContext(ctx, "open consumer "+ConsumerName+" failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	return nil
}

func (r *Reconciler) one(ctx context.Context, msg jetstream.Msg) {
	var a advisory
	if err := json.Unmarshal(msg.Data(), &a); err != nil || a.StreamSeq == 0 {
		r.cfg.Logger.WarnContext(ctx, "unreadable advisory skipped", slog.String("subject", msg.Subject()), slog.Any("error", err))
		_ = msg.Ack()
		return
	}
	if !strings.HasPrefix(a.Consumer, destinations.ConsumerPrefix) {
		_ = msg.Ack() // another service's consumer
		return
	}
	dest := strings.TrimPrefix(a.Consumer, destinations.ConsumerPrefix)
	log := r.cfg.Logger.With(slog.String("destination", dest), slog.Uint64("seq", a.StreamSeq))
	var reason switchyardv1.DeadLetterReason
	var lastError string
	switch {
	case strings.HasPrefix(msg.Subject(), AdvisoryMaxDeliveries):
		// The last allowed delivery ran out of ack wait without being
		// settled: the dispatcher stopped during the final attempt (or its
		// dead letter could not be stored). Its outcome is unknown.
		reason = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY
		lastError = fmt.Sprintf("the final attempt (delivery %d) was not settled: the dispatcher stopped or lost NATS during it; its outcome is unknown", a.Deliveries)
	case isDispatcherTermReason(a.Reason):
		// The dispatcher terminates only after the dead letter and its
		// audit record are stored.
		r.cfg.Metrics.Reconciled.WithLabelValues("terminated", "already_dead_lettered").Inc()
		_ = msg.Ack()
		return
	default:
		reason = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE
		lastError = fmt.Sprintf("terminated outside the dispatcher (reason %q)", a.Reason)
	}
	kind := "max_deliveries"
	if reason == switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE {
		kind = "terminated"
	}

	inc, created := r.cfg.Incarnation.Get()
	dl := &switchyardv1.DeadLetter{
		Id:          ids.DeadLetterID(inc, a.StreamSeq, dest),
		Destination: dest,
		Stream:      natsx.StreamEvents,
		StreamSeq:   a.StreamSeq,
		// Known only from the event itself; a stable placeholder otherwise.
		EventId:        ids.UnknownEventID(a.StreamSeq),
		Attempts:       int32(a.Deliveries),
		LastError:      lastError,
		Reason:         reason,
		DeadLetteredAt: timestamppb.Now(),
	}
	var raw *jetstream.RawStreamMsg
	var err error
	if !a.Time.IsZero() && a.Time.Before(created) {
		// The advisory is about an EVENTS that was deleted since: the
		// message at this sequence now is another event.
		err = jetstream.ErrMsgNotFound
	} else {
		var stream jetstream.Stream
		if stream, err = r.cfg.JS.Stream(ctx, natsx.StreamEvents); err == nil {
			raw, err = stream.GetMsg(ctx, a.StreamSeq)
		}
	}
	switch {
	case err == nil:
		ev := events.FromMsg(raw.Subject, raw.Header, raw.Data)
		dl.Subject, dl.Source, dl.EventType, dl.ReplayOf = ev.Subject, ev.Source, ev.Type, ev.ReplayOf
		if ev.ID != "" {
			dl.EventId = ev.ID
		}
	case errors.Is(err, jetstream.ErrMsgNotFound):
		dl.LastError += "; the event is no longer in EVENTS (aged out), so this dead letter has no payload and no event id"
	default:
		log.WarnContext(ctx, "event for a dead letter not read; will try again", slog.Any("error", err))
		_ = msg.NakWithDelay(retryDelay(msg))
		return
	}
	var dup bool
	if raw != nil {
		dup, err = r.cfg.DeadLetters.Write(ctx, dl, raw.Header, raw.Data)
	} else {
		dup, err = r.cfg.DeadLetters.Write(ctx, dl, nil, nil)
	}
	if err != nil {
		// Not acked: the advisory comes back until both copies are stored.
		log.WarnContext(ctx, "reconciled dead letter not stored; will try again", slog.Any("error", err))
		_ = msg.NakWithDelay(retryDelay(msg))
		return
	}
	result := "dead_lettered"
	if dup {
		result = "already_dead_lettered"
	} else {
		r.cfg.Metrics.DeadLetters.WithLabelValues(dest).Inc()
		log.WarnContext(ctx, "dead-lettered from an advisory", slog.String("reason", reason.String()), slog.String("event_id", dl.EventId),
			slog.Bool("payload_omitted", dl.PayloadOmitted))
	}
	r.cfg.Metrics.Reconciled.WithLabelValues(kind, result).Inc()
	_ = msg.Ack()
}

// retryDelay is how long an advisory waits before it is handled again:
// 2s more with each try, at most a minute.
func retryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		n = meta.NumDelivered
	}
	return min(time.Duration(n)*2*time.Second, time.Minute)
}

// isDispatcherTermReason reports whether a termination reason is one the
// dispatcher gives (it terminates only after storing the dead letter).
func isDispatcherTermReason(r string) bool {
	_, ok := switchyardv1.DeadLetterReason_value[r]
	return ok
}
