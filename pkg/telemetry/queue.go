package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Batching of the export queue.
const (
	// maxBatch is the most spans one export request carries.
	maxBatch = 512
	// flushEvery is how long an ended span waits at most to be exported.
	flushEvery = time.Second
	// warnEvery bounds the export failure warnings in the log.
	warnEvery = time.Minute
)

// queue is a span processor that never blocks the span's caller: an ended
// span goes into a bounded channel or, when it is full, is dropped and
// counted. One goroutine exports batches, each bounded by the export
// timeout, and counts the spans of a failed batch as dropped too. An
// unreachable collector thus costs the hot path one channel send.
type queue struct {
	exp     sdktrace.SpanExporter
	spans   chan sdktrace.ReadOnlySpan
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	timeout time.Duration
	dropped prometheus.Counter
	log     *slog.Logger
}

func newQueue(exp sdktrace.SpanExporter, size int, timeout time.Duration, dropped prometheus.Counter, log *slog.Logger) *queue {
	if size <= 0 {
		size = 2048
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if dropped == nil {
		dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &queue{
		exp: exp, spans: make(chan sdktrace.ReadOnlySpan, size), flushes: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}), timeout: timeout, dropped: dropped, log: log,
	}
	go q.run()
	return q
}

// OnStart implements sdktrace.SpanProcessor.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: queue the span, or drop it.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-q.stop:
		q.dropped.Inc()
		return
	default:
	}
	select {
	case q.spans <- s:
	default:
		q.dropped.Inc()
	}
}

func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, maxBatch)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	var lastWarn time.Time
	export := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
		err := q.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			q.dropped.Add(float64(len(batch)))
			if time.Since(lastWarn) > warnEvery {
				lastWarn = time.Now()
				q.log.Warn("spans not exported; dropped (switchyard_trace_spans_dropped_total); delivery goes on",
					slog.Int("spans", len(batch)), slog.Any("error", err))
			}
		}
		clear(batch)
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case s := <-q.spans:
				batch = append(batch, s)
				if len(batch) == maxBatch {
					export()
				}
			default:
				export()
				return
			}
		}
	}
	for {
		select {
		case s := <-q.spans:
			batch = append(batch, s)
			if len(batch) == maxBatch {
				export()
			}
		case <-tick.C:
			export()
		case ack := <-q.flushes:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

// ForceFlush implements sdktrace.SpanProcessor: export what is queued.
func (q *queue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flushes <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown implements sdktrace.SpanProcessor: export what is queued and
// stop the exporter.
func (q *queue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exp.Shutdown(ctx)
}
