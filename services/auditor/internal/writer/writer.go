// Package writer moves audit records (AUDIT), stored events (EVENTS) and dead
// letters (DEAD_LETTERS) into the audit store in batches, acknowledging them
// only after the batch is
// committed. While the store is down the records wait in JetStream, the
// writer retries with backoff, and it reports how far behind it is (metrics
// and AuditLag records for the notifier). A batch the database refuses for
// the data's sake is bisected: the good items are written, the bad ones
// parked whole in the store, and nothing is acknowledged that was not kept.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/switchyard/switchyard/pkg/config"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Config configures the writer.
type Config struct {
	// BatchSize is the most items per transaction (auditor.batch_size).
	BatchSize int
	// Linger is how long a batch waits for more items once it has one.
	// Default 20ms.
	Linger time.Duration
	// MaxBatchBytes bounds the message bytes of one batch (events and dead
	// letters carry payloads); a single larger message is a batch of its
	// own. Default 16 MiB.
	MaxBatchBytes int
	// ReadBufferBytes bounds what the readers of EVENTS and DEAD_LETTERS
	// hold in the client besides the batch in hand (PullMaxBytes); it is
	// raised to twice the server's max_payload if lower, so that the
	// largest message always fits. Default 64 MiB.
	ReadBufferBytes int
	// WriteTimeout bounds one write (and one park), so that a hung database
	// counts as a failure and is retried. Default 30s.
	WriteTimeout time.Duration
	// Route names the destinations an event subject is routed to; each
	// gets a pending delivery when the event is recorded. Nil: none.
	Route func(subject string) []string
	// LagInterval is how often the lag is measured (and AuditLag sent while
	// behind). Default 10s.
	LagInterval time.Duration
	// LagThreshold: the writer counts as behind when writes have failed
	// for this long, or the oldest unwritten item has waited this long
	// (auditor.lag_threshold).
	LagThreshold time.Duration
	// Audit emits the AuditLag records; nil sends none.
	Audit *auditlog.Emitter
	// StoreState, when set, says whether the store can be used at all: the
	// time since when it could not (zero when it can) and why. While it
	// cannot, the writer counts as failing even with nothing to write, so
	// the lag reports (AuditLag with last_error) go out from the start.
	StoreState func() (failingSince time.Time, err error)
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	// The settings of the configuration file take its defaults
	// (config.Defaults), for a Config built by hand; the others are the
	// writer's own.
	d := config.Defaults().Auditor
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.Linger == 0 {
		c.Linger = 20 * time.Millisecond
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 16 << 20
	}
	if c.ReadBufferBytes == 0 {
		c.ReadBufferBytes = 64 << 20
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 10 * time.Second
	}
	if c.LagThreshold == 0 {
		c.LagThreshold = d.LagThreshold.D()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Writer runs the three consume-and-write loops and the lag monitor.
type Writer struct {
	js    jetstream.JetStream
	store store.Store
	cfg   Config
	m     metrics

	mu sync.Mutex
	// failingSince is when writes started failing; zero while they work.
	failingSince time.Time
	lastError    string
	// oldest is, per stream, the timestamp of the oldest message in the
	// batch being written (zero when idle).
	oldest map[string]time.Time
	// behind is true between an AuditLag and its caught_up.
	behind bool

	// inc is EVENTS' incarnation as last read; incSeq the highest event
	// sequence seen since. A lower one (the stream was recreated and
	// numbers from 1 again, or a redelivery) reads it again.
	incMu  sync.Mutex
	inc    string
	incSeq uint64
}

// eventsIncarnation is the incarnation of EVENTS that the event at seq
// was read from: the stream's creation time as attempt and dead-letter
// ids name it (store.Incarnation).
func (w *Writer) eventsIncarnation(seq uint64) string {
	w.incMu.Lock()
	defer w.incMu.Unlock()
	if w.inc == "" || seq < w.incSeq {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if st, err := w.js.Stream(ctx, natsx.StreamEvents); err != nil {
			w.cfg.Logger.Warn("read EVENTS' incarnation for the events table", slog.Any("error", err))
		} else if inc := store.Incarnation(st.CachedInfo().Created); inc != w.inc {
			if w.inc != "" {
				w.cfg.Logger.Warn("stream EVENTS was recreated: events are recorded under its new incarnation", slog.String("incarnation", inc))
			}
			w.inc = inc
		}
		w.incSeq = 0
	}
	w.incSeq = max(w.incSeq, seq)
	return w.inc
}

type metrics struct {
	written  *prometheus.CounterVec
	errors   prometheus.Counter
	parked   *prometheus.CounterVec
	pending  *prometheus.GaugeVec
	oldest   prometheus.Gauge
	behind   prometheus.Gauge
	failing  prometheus.Gauge
	lagEmits prometheus.Counter
}

// New returns a writer into st.
func New(js jetstream.JetStream, st store.Store, cfg Config) (*Writer, error) {
	cfg = cfg.WithDefaults()
	if cfg.Logger == nil {
		return nil, errors.New("auditor writer: Config.Logger is required")
	}
	w := &Writer{js: js, store: st, cfg: cfg, oldest: map[string]time.Time{}, m: metrics{
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_auditor_written_total",
			Help: "Items committed to the audit store, by stream (audit records, events).",
		}, []string{"stream"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_auditor_write_errors_total",
			Help: "Failed batch writes (each is retried, or bisected when the database refused the data).",
		}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_auditor_parked_total",
			Help: "Items the database refused, kept whole in the parked table (GET /v1/parked).",
		}, []string{"stream"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_auditor_pending",
			Help: "Items waiting in JetStream to be written, by stream.",
		}, []string{"stream"}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_auditor_lag_seconds",
			Help: "How long the oldest item being written has waited since it was stored in JetStream.",
		}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_auditor_behind",
			Help: "1 while the writer is behind (failing writes or old items), as reported by AuditLag.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_auditor_write_failing_seconds",
			Help: "How long writes have been failing (0 while they succeed).",
		}),
		lagEmits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_auditor_lag_reports_total",
			Help: "AuditLag records sent.",
		}),
	}}
	// Every stream's series exist from the start, at 0: a rate() or an
	// alert on them works before the first item.
	for _, s := range streams {
		w.m.written.WithLabelValues(s.stream)
		w.m.parked.WithLabelValues(s.stream)
		w.m.pending.WithLabelValues(s.stream)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(w.m.written, w.m.errors, w.m.parked, w.m.pending, w.m.oldest, w.m.behind, w.m.failing, w.m.lagEmits)
	}
	return w, nil
}

// streams are what the writer reads: each stream through its durable
// consumer (declared by the topology); payloads says whether its messages
// carry event bodies (and so are read bounded by bytes).
var streams = []struct {
	stream, consumer string
	payloads         bool
}{
	{natsx.StreamAudit, natsx.ConsumerAuditor, false},
	{natsx.StreamEvents, natsx.ConsumerAuditorEvents, true},
	{natsx.StreamDeadLetters, natsx.ConsumerAuditorDeadLetters, true},
}

// item is one message and what it decodes to.
type item struct {
	msg    jetstream.Msg
	meta   *jetstream.MsgMetadata
	event  *store.Routed
	record *switchyardv1.AuditRecord
}

// Run consumes until ctx is done.
func (w *Writer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	decoders := map[string]func(*item) error{
		natsx.StreamAudit:       decodeRecord,
		natsx.StreamEvents:      w.decodeEvent,
		natsx.StreamDeadLetters: decodeDeadLetter,
	}
	for _, s := range streams {
		g.Go(func() error { return w.loop(gctx, s.stream, s.consumer, s.payloads, decoders[s.stream]) })
	}
	g.Go(func() error { w.monitor(gctx); return nil })
	return g.Wait()
}

func decodeRecord(it *item) error {
	rec, err := auditlog.Decode(it.msg.Data())
	it.record = rec
	return err
}

func (w *Writer) decodeEvent(it *item) error {
	m := it.msg
	ev := events.FromMsg(m.Subject(), m.Headers(), m.Data())
	if ev.ID == "" {
		return errors.New("event without an id header")
	}
	r := &store.Routed{Event: store.Event{
		ID:          ev.ID,
		Subject:     ev.Subject,
		Source:      ev.Source,
		Type:        ev.Type,
		StreamSeq:   it.meta.Sequence.Stream,
		Incarnation: w.eventsIncarnation(it.meta.Sequence.Stream),
		ReceivedAt:  receivedAt(ev, it.meta),
		ContentType: ev.ContentType,
		Payload:     ev.Data,
		Headers:     keptHeaders(m.Headers()),
	}}
	if w.cfg.Route != nil {
		r.Destinations = w.cfg.Route(ev.Subject)
	}
	it.event = r
	return nil
}

// decodeDeadLetter turns a DEAD_LETTERS message (the dispatcher's dead
// letter, payload included) into the record the dispatcher also sends to
// AUDIT: same id, so whichever copy is written first, the other changes
// nothing, and a lost AUDIT copy leaves no gap.
func decodeDeadLetter(it *item) error {
	var dl switchyardv1.DeadLetter
	if err := proto.Unmarshal(it.msg.Data(), &dl); err != nil {
		return fmt.Errorf("decode dead letter: %w", err)
	}
	if dl.Id == "" {
		dl.Id = it.msg.Headers().Get(nats.MsgIdHdr)
	}
	if dl.Id == "" {
		return errors.New("dead letter without an id")
	}
	// The audit log keeps no payload: it stays in DEAD_LETTERS (or EVENTS).
	dl.Payload, dl.Headers = nil, nil
	at := dl.GetDeadLetteredAt()
	if at == nil {
		at = timestamppb.New(it.meta.Timestamp)
	}
	it.record = &switchyardv1.AuditRecord{
		Id:      "dead_letter:" + dl.Id,
		Time:    at,
		Service: "dispatcher",
		Detail:  &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &dl},
	}
	return nil
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

func (w *Writer) loop(ctx context.Context, stream, consumer string, payloads bool, decode func(*item) error) error {
	cons, err := w.js.Consumer(ctx, stream, consumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("auditor: open consumer %s on %s: %w", consumer, stream, err)
	}
	// Records are small: a count bounds them. Events and dead letters carry
	// payloads up to the server's max_payload: bytes bound them.
	opt := jetstream.PullMessagesOpt(jetstream.PullMaxMessages(w.cfg.BatchSize * 2))
	if payloads {
		opt = jetstream.PullMaxBytes(w.readBufferBytes())
	}
	// it is nil after a slow batch handed back what it had buffered; the
	// next batch reads through a new one.
	var it jetstream.MessagesContext
	defer func() {
		if it != nil {
			it.Stop()
		}
	}()
	log := w.cfg.Logger.With(slog.String("stream", stream))
	every := keepAliveEvery(cons.CachedInfo().Config.AckWait)
	var held jetstream.Msg // read, but over the last batch's byte bound
	for {
		if it == nil {
			if it, err = cons.Messages(opt); err != nil {
				return fmt.Errorf("auditor: consume %s: %w", stream, err)
			}
		}
		first := held
		held = nil
		if first == nil {
			if first, err = it.Next(jetstream.NextContext(ctx)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					// The server's heartbeats stopped for a while (its
					// consumer leader changed, or the connection moved to
					// another server): the iterator pulls again by itself.
					log.WarnContext(ctx, "missed heartbeats; reading on", slog.Any("error", err))
					continue
				}
				return fmt.Errorf("auditor: read %s: %w", stream, err)
			}
		}
		msgs := []jetstream.Msg{first}
		size := msgSize(first)
		for len(msgs) < w.cfg.BatchSize && size < w.cfg.MaxBatchBytes {
			m, err := it.Next(jetstream.NextMaxWait(w.cfg.Linger))
			if err != nil {
				break
			}
			if size+msgSize(m) > w.cfg.MaxBatchBytes {
				held = m
				break
			}
			msgs = append(msgs, m)
			size += msgSize(m)
		}
		var items, bad []item
		var badErrs []error
		var oldest time.Time
		for _, m := range msgs {
			x := item{msg: m}
			meta, err := m.Metadata()
			if err == nil {
				x.meta = meta
				if oldest.IsZero() || meta.Timestamp.Before(oldest) {
					oldest = meta.Timestamp
				}
				err = decode(&x)
			}
			if err != nil {
				// It will never decode: keep it whole, out of the way.
				bad, badErrs = append(bad, x), append(badErrs, fmt.Errorf("undecodable: %w", err))
				continue
			}
			items = append(items, x)
		}
		w.setOldest(stream, oldest)
		ok := true
		kept := msgs
		if held != nil {
			kept = append(kept[:len(kept):len(kept)], held)
		}
		stopKeepAlive := keepAlive(kept, it, every)
		for i, x := range bad {
			ok = ok && w.park(ctx, log, stream, x, badErrs[i])
		}
		ok = ok && w.commit(ctx, log, stream, items)
		if stopKeepAlive() {
			it = nil
		}
		w.setOldest(stream, time.Time{})
		if !ok {
			return nil // shutting down; unacked messages are redelivered
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
	}
}

// keepAliveEvery is how often the messages of a batch still being written
// are marked in progress: a sixth of the consumer's ack wait (10s for the
// topology's minute), so that neither a write hung up to WriteTimeout nor
// a backoff between retries lets the ack wait run out and JetStream hand
// the batch to another writer while this one still holds it.
func keepAliveEvery(ackWait time.Duration) time.Duration {
	if ackWait <= 0 {
		ackWait = 30 * time.Second // JetStream's default
	}
	return ackWait / 6
}

// keepAlive marks msgs in progress every interval until the returned func
// is called. A batch that takes that long (the store is slow or down)
// also hands back, at the first mark, what the iterator it read them from
// has buffered: those messages are delivered to this writer too, and
// nothing keeps them alive, so the ack wait would run out on them and
// JetStream give them to another writer while this one still has them,
// and both would write them. Handed back (naked), another writer can take
// them at once. stop returns once msgs are no longer being marked, and
// reports whether it was stopped (the next batch needs a new iterator).
// The caller must not use it until stop returned.
func keepAlive(msgs []jetstream.Msg, it jetstream.MessagesContext, every time.Duration) (stop func() (handedBack bool)) {
	done, stopped := make(chan struct{}), make(chan struct{})
	var handed bool
	go func() {
		defer close(stopped)
		// Handing back takes as long as messages keep arriving: it must
		// not hold up the marks.
		var handing sync.WaitGroup
		defer handing.Wait()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
				if !handed {
					handed = true
					handing.Go(func() { handBack(it) })
				}
			}
		}
	}()
	return func() bool {
		close(done)
		<-stopped
		return handed
	}
}

// handBack stops it and naks the messages it had buffered.
func handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			it.Stop()
			return
		}
		_ = m.Nak()
	}
}

// readBufferBytes is the client buffer of a payload stream's reader: the
// configured bytes, but never less than two of the largest messages the
// server takes (a smaller buffer would stall the reader on such a message).
func (w *Writer) readBufferBytes() int {
	n := w.cfg.ReadBufferBytes
	if nc := w.js.Conn(); nc != nil {
		n = max(n, 2*int(nc.MaxPayload()))
	}
	return n
}

// msgSize is what a message weighs in a batch: its body and headers.
func msgSize(m jetstream.Msg) int {
	n := len(m.Data()) + len(m.Subject())
	for k, vs := range m.Headers() {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}

func (w *Writer) setOldest(stream string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.IsZero() {
		delete(w.oldest, stream)
	} else {
		w.oldest[stream] = t
	}
}

// commit writes items, bisecting when the database refuses the data, and
// parking what it refuses on its own. It returns false when ctx ended.
func (w *Writer) commit(ctx context.Context, log *slog.Logger, stream string, items []item) bool {
	if len(items) == 0 {
		return true
	}
	err := w.write(ctx, log, items)
	switch {
	case err == nil:
		w.m.written.WithLabelValues(stream).Add(float64(len(items)))
		return true
	case ctx.Err() != nil:
		return false
	case len(items) == 1:
		return w.park(ctx, log, stream, items[0], err)
	}
	log.WarnContext(ctx, "the audit store refused a batch; bisecting it to set the bad items aside",
		slog.Int("items", len(items)), slog.Any("error", err))
	half := len(items) / 2
	return w.commit(ctx, log, stream, items[:half]) && w.commit(ctx, log, stream, items[half:])
}

// unknownErrorTries is how often an error that is neither "unavailable"
// nor "refused" is retried before the batch is treated as refused.
const unknownErrorTries = 3

// write stores items, retrying with backoff while the store is unavailable
// (the loop keeps the messages' ack deadlines moving meanwhile). It returns nil, ctx's
// error, or the error of a batch the store refused.
func (w *Writer) write(ctx context.Context, log *slog.Logger, items []item) error {
	var b store.Batch
	for _, x := range items {
		if x.event != nil {
			b.Events = append(b.Events, *x.event)
		} else {
			b.Records = append(b.Records, x.record)
		}
	}
	wait := 100 * time.Millisecond
	unknown := 0
	for failures := 0; ; failures++ {
		wctx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
		err := w.store.Write(wctx, b)
		cancel()
		if err == nil {
			w.succeeded(ctx, log, failures)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.m.errors.Inc()
		if errors.Is(err, store.ErrRejected) {
			return err
		}
		if !errors.Is(err, store.ErrUnavailable) {
			if unknown++; unknown >= unknownErrorTries {
				return err
			}
		}
		w.failed(err)
		log.WarnContext(ctx, "audit batch not written; will retry", slog.Int("items", b.Len()), slog.Duration("retry_in", wait), slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (w *Writer) failed(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failingSince.IsZero() {
		w.failingSince = w.cfg.Now()
	}
	w.lastError = err.Error()
}

func (w *Writer) succeeded(ctx context.Context, log *slog.Logger, failures int) {
	w.mu.Lock()
	since := w.failingSince
	w.failingSince = time.Time{}
	w.mu.Unlock()
	if failures > 0 {
		attrs := []any{slog.Int("failed_tries", failures)}
		if !since.IsZero() { // another loop's write may have cleared it already
			attrs = append(attrs, slog.Duration("failing_for", w.cfg.Now().Sub(since)))
		}
		log.InfoContext(ctx, "audit store writable again", attrs...)
	}
}

// park keeps an item the store refused (or that cannot be decoded) in the
// parked table, whole. Each try is bounded by WriteTimeout, and while the
// store is unavailable it is retried like a write (counted, reported as
// lag, the message kept alive). If the store refuses even that, the message
// is terminated with the reason, and the log keeps what identifies it. It
// returns false when ctx ended.
func (w *Writer) park(ctx context.Context, log *slog.Logger, stream string, x item, cause error) bool {
	p := store.Parked{
		Stream:   stream,
		Subject:  x.msg.Subject(),
		Error:    cause.Error(),
		ParkedAt: w.cfg.Now(),
		Data:     x.msg.Data(),
		Headers:  keptHeaders(x.msg.Headers()),
	}
	if x.meta != nil {
		p.StreamSeq = x.meta.Sequence.Stream
	}
	p.ID = stream + ":" + strconv.FormatUint(p.StreamSeq, 10)
	attrs := []any{slog.String("subject", p.Subject), slog.Uint64("stream_seq", p.StreamSeq), slog.Any("error", cause)}
	if x.record != nil {
		attrs = append(attrs, slog.String("record_id", x.record.GetId()))
	}
	if x.event != nil {
		attrs = append(attrs, slog.String("event_id", x.event.ID))
	}
	wait := 100 * time.Millisecond
	for failures := 0; ; failures++ {
		pctx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
		err := w.store.Park(pctx, []store.Parked{p})
		cancel()
		if err == nil {
			w.succeeded(ctx, log, failures)
			w.m.parked.WithLabelValues(stream).Inc()
			log.ErrorContext(ctx, "audit item refused by the store; parked whole (see GET /v1/parked)", attrs...)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			log.ErrorContext(ctx, "audit item refused by the store and could not be parked; terminating its message",
				append(attrs, slog.Any("park_error", err))...)
			_ = x.msg.TermWithReason("refused by the audit store: " + cause.Error())
			return true
		}
		w.m.errors.Inc()
		w.failed(err)
		log.WarnContext(ctx, "audit item not parked; will retry", append(attrs, slog.Any("park_error", err), slog.Duration("retry_in", wait))...)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false
		}
		wait = min(wait*2, 5*time.Second)
	}
}
