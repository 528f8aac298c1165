// Package writer moves audit records (AUDIT) and stored events (EVENTS) into
// the audit store in batches, acknowledging them only after the batch is
// committed. While the store is down the records wait in JetStream and the
// writer retries with backoff; nothing is acknowledged that was not written.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Config configures the writer.
type Config struct {
	// BatchSize is the most items per transaction. Default 500.
	BatchSize int
	// Linger is how long a batch waits for more items once it has one.
	// Default 20ms.
	Linger time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Linger == 0 {
		c.Linger = 20 * time.Millisecond
	}
	return c
}

// Writer runs the two consume-and-write loops.
type Writer struct {
	js      jetstream.JetStream
	store   store.Store
	cfg     Config
	written *prometheus.CounterVec
	errors  prometheus.Counter
}

// New returns a writer into st.
func New(js jetstream.JetStream, st store.Store, cfg Config) (*Writer, error) {
	cfg = cfg.WithDefaults()
	if cfg.Logger == nil {
		return nil, errors.New("auditor writer: Config.Logger is required")
	}
	w := &Writer{
		js: js, store: st, cfg: cfg,
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_auditor_written_total",
			Help: "Items committed to the audit store, by stream (audit records, events).",
		}, []string{"stream"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_auditor_write_errors_total",
			Help: "Failed batch writes (each is retried).",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(w.written, w.errors)
	}
	return w, nil
}

// Run consumes until ctx is done.
func (w *Writer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return w.loop(gctx, natsx.StreamAudit, natsx.ConsumerAuditor, func(b *store.Batch, m jetstream.Msg) error {
			rec, err := auditlog.Decode(m.Data())
			if err != nil {
				return err
			}
			b.Records = append(b.Records, rec)
			return nil
		})
	})
	g.Go(func() error {
		return w.loop(gctx, natsx.StreamEvents, natsx.ConsumerAuditorEvents, func(b *store.Batch, m jetstream.Msg) error {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			ev := events.FromMsg(m.Subject(), m.Headers(), m.Data())
			if ev.ID == "" {
				return errors.New("event without an id header")
			}
			b.Events = append(b.Events, store.Event{
				ID:          ev.ID,
				Subject:     ev.Subject,
				Source:      ev.Source,
				Type:        ev.Type,
				StreamSeq:   meta.Sequence.Stream,
				ReceivedAt:  receivedAt(ev, meta),
				ContentType: ev.ContentType,
				Payload:     ev.Data,
				Headers:     keptHeaders(m.Headers()),
			})
			return nil
		})
	})
	return g.Wait()
}

func receivedAt(ev events.Stored, meta *jetstream.MsgMetadata) time.Time {
	if !ev.ReceivedAt.IsZero() {
		return ev.ReceivedAt
	}
	return meta.Timestamp
}

// keptHeaders copies the event headers into the audit log, minus the
// JetStream bookkeeping ones.
func keptHeaders(h nats.Header) map[string]string {
	out := map[string]string{}
	for k := range h {
		if k == nats.MsgIdHdr {
			continue
		}
		out[k] = h.Get(k)
	}
	return out
}

func (w *Writer) loop(ctx context.Context, stream, consumer string, add func(*store.Batch, jetstream.Msg) error) error {
	cons, err := w.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return fmt.Errorf("auditor: open consumer %s on %s: %w", consumer, stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.BatchSize * 2))
	if err != nil {
		return fmt.Errorf("auditor: consume %s: %w", stream, err)
	}
	defer it.Stop()
	log := w.cfg.Logger.With(slog.String("stream", stream))
	for {
		first, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("auditor: read %s: %w", stream, err)
		}
		msgs := []jetstream.Msg{first}
		for len(msgs) < w.cfg.BatchSize {
			m, err := it.Next(jetstream.NextMaxWait(w.cfg.Linger))
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		var batch store.Batch
		var good []jetstream.Msg
		for _, m := range msgs {
			if err := add(&batch, m); err != nil {
				// A message that cannot be decoded will never be; keep it
				// out of the way and say so loudly.
				log.ErrorContext(ctx, "undecodable message terminated", slog.String("subject", m.Subject()), slog.Any("error", err))
				_ = m.TermWithReason("undecodable: " + err.Error())
				continue
			}
			good = append(good, m)
		}
		if !w.write(ctx, log, batch, good) {
			return nil // shutting down; unacked messages are redelivered
		}
		for _, m := range good {
			_ = m.Ack()
		}
		w.written.WithLabelValues(stream).Add(float64(len(good)))
	}
}

// write commits the batch, retrying with backoff until it succeeds or ctx
// ends. While retrying it keeps the messages' ack deadlines moving.
func (w *Writer) write(ctx context.Context, log *slog.Logger, b store.Batch, msgs []jetstream.Msg) bool {
	wait := 100 * time.Millisecond
	lastProgress := time.Now()
	for failures := 0; ; failures++ {
		err := w.store.Write(ctx, b)
		if err == nil {
			if failures > 0 {
				log.InfoContext(ctx, "audit store writable again", slog.Int("failed_tries", failures))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.errors.Inc()
		log.WarnContext(ctx, "audit batch not written; will retry", slog.Int("items", b.Len()), slog.Duration("retry_in", wait), slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false
		}
		wait = min(wait*2, 5*time.Second)
		if time.Since(lastProgress) > 10*time.Second {
			for _, m := range msgs {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
	}
}
