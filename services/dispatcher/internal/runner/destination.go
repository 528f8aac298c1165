package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/mapping"
	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/services/dispatcher/internal/backlog"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
	"github.com/switchyard/switchyard/services/dispatcher/internal/settle"
)

// destination is one destination's delivery loop.
type destination struct {
	d   *Dispatcher
	cfg config.Destination
	// policy is what settling an attempt depends on (retry schedule,
	// attempts).
	policy settle.Policy
	client *delivery.Client
	// consumer is the destination's consumer; replaced when it had to be
	// recreated (consumerMu).
	consumerMu sync.RWMutex
	consumer   jetstream.Consumer
	// recoverMu serialises recoverConsumer: the fetch loop and the backlog
	// monitor may both find the consumer gone, and the server answers two
	// creations with the same configuration alike, so both would report
	// (and count) the one recreation.
	recoverMu sync.Mutex
	// streamCreated is the creation time of the EVENTS stream the consumer
	// was made on (consumerMu): a consumer found gone on a stream created
	// since went with the old stream. Per destination, since the
	// dispatcher's incarnation is shared: the first destination to notice
	// a recreated EVENTS updates it for all.
	streamCreated time.Time
	// ackFloor is the last known ack floor (stream sequence) of the
	// consumer: where a recreated consumer starts again.
	ackFloor atomic.Uint64
	// limiter is the rate limit; nil for none.
	limiter *rate.Limiter
	// breaker is nil when the breaker is disabled.
	breaker *breaker.Breaker
	// probing is set while this replica's half-open probe is in flight.
	probing atomic.Bool
	log     *slog.Logger

	// owed are dead letters not finished storing (see finishDeadLetter).
	owed owedDeadLetters
	// tally counts outcomes for the periodic summary in the log.
	tally outcomeTally

	// backlog reports the consumer's backlog.
	backlog *backlog.Reporter

	// mapping is the destination's filter and transformation; nil for
	// none.
	mapping *mapping.Mapping
}

func newDestination(d *Dispatcher, dc config.Destination) (*destination, error) {
	target := delivery.Target{
		URL:                 dc.URL,
		Timeout:             dc.Timeout.D(),
		Headers:             outbound.RevealHeaders(dc.Headers),
		AllowPrivateNetwork: dc.AllowPrivateNetwork,
		MaxConns:            dc.Concurrency,
		Policy:              delivery.Policy{RetryOnStatus: dc.Retry.RetryOnStatus},
	}
	// One pool for the deliveries and the token requests, behind the same
	// address guard.
	hc := outbound.NewHTTPClient(target.HTTPConfig())
	target.Auth = outbound.FromConfig(dc.Auth, hc)
	if len(dc.Signing.StandardWebhooksSecrets) > 0 {
		secrets := make([]string, len(dc.Signing.StandardWebhooksSecrets))
		for i, s := range dc.Signing.StandardWebhooksSecrets {
			secrets[i] = s.Reveal()
		}
		signer, err := signing.NewStandardWebhooks(secrets, 0)
		if err != nil {
			return nil, fmt.Errorf("destination %q signing: %w", dc.Name, err)
		}
		target.Signer = signer
	}
	m, err := compileMapping(dc.Name, dc.MappingSpec())
	if err != nil {
		return nil, err
	}
	version := "none"
	if m != nil && m.Version() != "" {
		version = m.Version()
	}
	d.metrics.transformInfo.WithLabelValues(dc.Name, version).Set(1)
	dest := &destination{
		mapping: m,
		d:       d,
		cfg:     dc,
		policy:  settle.PolicyFor(dc),
		client:  delivery.NewClient(target, hc),
		log:     d.cfg.Logger.With(slog.String("destination", dc.Name)),
	}
	dest.backlog = backlog.NewReporter(backlog.Config{JS: d.js, Audit: d.audit, Interval: d.cfg.BacklogInterval,
		Metrics: d.metrics.backlogMetrics()}, dc.Name, dest.log)
	if len(dest.policy.Backoff) == 0 {
		return nil, fmt.Errorf("destination %q has no retry backoff (apply config defaults and validation first)", dc.Name)
	}
	if dc.RateLimit.PerSecond > 0 {
		dest.limiter = rate.NewLimiter(rate.Limit(dc.RateLimit.PerSecond), max(1, dc.RateLimit.Burst))
	}
	if !dc.Breaker.Disabled {
		dest.breaker = d.breakers.Add(dc.Name, breaker.Policy{Breaker: dc.Breaker}, dest.log)
	}
	return dest, nil
}

// run pulls only as many events as there are free workers and rate tokens,
// so that no event waits in a client-side buffer while its ack wait runs
// down, and none is fetched while the circuit breaker is open.
func (dest *destination) run(ctx context.Context) error {
	slots := make(chan struct{}, dest.cfg.Concurrency)
	// Deliveries run on their own context: the run context ending stops
	// fetching, not the requests in flight; those get ShutdownGrace.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	var wg sync.WaitGroup
	release := func() { <-slots }

	failures := 0
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		limit, probe := dest.admit(ctx)
		if limit == 0 {
			release()
			continue
		}
		n := 1
	fill:
		for n < limit {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		tokens, ok := dest.reserve(ctx, n)
		if !ok {
			for range n {
				release()
			}
			if probe {
				dest.probing.Store(false)
			}
			continue
		}
		for range n - len(tokens) {
			release()
		}
		n = len(tokens)
		batch, err := dest.cons().Fetch(n, jetstream.FetchMaxWait(dest.d.cfg.FetchWait))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				isProbe := probe && got == 0
				got++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer release()
					dest.handle(hctx, ctx, msg, isProbe)
				}()
			}
			err = batch.Error()
		}
		for i := got; i < n; i++ {
			release()
			if tokens[i] != nil {
				tokens[i].Cancel() // not used: give the token back
			}
		}
		if probe && got == 0 {
			dest.probing.Store(false)
			dest.probeFoundNothing(ctx)
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			// A fetch fails in several ways when the consumer was deleted
			// (consumer deleted, no responders): look it up.
			if dest.recoverConsumer(ctx, err) {
				failures = 0
				continue
			}
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			dest.log.WarnContext(ctx, "fetch failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(dest.d.cfg.ShutdownGrace):
		dest.log.Warn("shutdown grace over; handing in-flight deliveries back to JetStream")
		hcancel()
		<-done
	}
	return nil
}

// reserve takes up to n rate tokens, waiting for the first one only. The
// tokens are taken before the fetch, so an event never waits for a token
// while its ack wait runs. Without a limit it returns n nil reservations.
func (dest *destination) reserve(ctx context.Context, n int) ([]*rate.Reservation, bool) {
	if dest.limiter == nil {
		return make([]*rate.Reservation, n), true
	}
	first := dest.limiter.Reserve()
	if wait := first.Delay(); wait > 0 {
		dest.d.metrics.rateLimited.WithLabelValues(dest.cfg.Name).Add(wait.Seconds())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			first.Cancel()
			return nil, false
		}
	}
	tokens := []*rate.Reservation{first}
	for len(tokens) < n {
		r := dest.limiter.Reserve()
		if r.Delay() > 0 {
			r.Cancel()
			break
		}
		tokens = append(tokens, r)
	}
	return tokens, true
}
