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
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
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
}

func newDestination(d *Dispatcher, dc config.Destination) (*destination, error) {
	headers := map[string]string{}
	for k, v := range dc.Headers {
		headers[k] = v.Reveal()
	}
	target := delivery.Target{
		URL:                 dc.URL,
		Timeout:             dc.Timeout.D(),
		Headers:             headers,
		AllowPrivateNetwork: dc.AllowPrivateNetwork,
		MaxConns:            dc.Concurrency,
		Policy:              delivery.Policy{RetryOnStatus: dc.Retry.RetryOnStatus},
	}
	switch dc.Auth.Type {
	case config.AuthBearer:
		target.Auth = delivery.Bearer{Token: dc.Auth.Token.Reveal()}
	case config.AuthBasic:
		target.Auth = delivery.Basic{Username: dc.Auth.Username, Password: dc.Auth.Password.Reveal()}
	case config.AuthOAuth2ClientCredentials:
		params := map[string][]string{}
		for k, v := range dc.Auth.Params {
			params[k] = []string{v}
		}
		target.Auth = delivery.NewClientCredentials(delivery.ClientCredentialsConfig{
			TokenURL: dc.Auth.TokenURL, ClientID: dc.Auth.ClientID, ClientSecret: dc.Auth.ClientSecret.Reveal(),
			Scopes: dc.Auth.Scopes, Params: params, ClientAuth: dc.Auth.ClientAuth,
			HTTPClient: delivery.NewHTTPClient(target),
		})
	}
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
	dest := &destination{
		d:      d,
		cfg:    dc,
		policy: settle.PolicyFor(dc),
		client: delivery.NewClient(target),
		log:    d.cfg.Logger.With(slog.String("destination", dc.Name)),
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

// admit waits until the circuit breaker lets this replica send, and says
// how many events it may take: all its workers when closed, one when it
// holds the half-open probe (then probing is set). The fetch loop asks
// before each fetch, and a handler asks again before it sends, for an event
// fetched just before the breaker opened. It returns 0 when ctx ends.
func (dest *destination) admit(ctx context.Context) (n int, probe bool) {
	b := dest.breaker
	if b == nil {
		return dest.cfg.Concurrency, false
	}
	me := dest.d.cfg.Instance
	lease := dest.d.probeLease(dest.cfg.Timeout.D())
	for {
		c, changed := b.View()
		now := time.Now()
		var wakeAt time.Time
		switch c.State {
		case switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED:
			return dest.cfg.Concurrency, false
		case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
			if !now.Before(c.OpenUntil) {
				dest.takeProbe(ctx, me, lease)
				continue
			}
			wakeAt = c.OpenUntil
		case switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
			mine := c.Prober == me
			switch {
			case mine && c.ProbeUntil.Sub(now) < lease/2:
				dest.takeProbe(ctx, me, lease) // renew the lease
				continue
			case mine && dest.probing.CompareAndSwap(false, true):
				return 1, true
			case mine:
				wakeAt = c.ProbeUntil.Add(-lease / 2) // our probe is running
			case now.After(c.ProbeUntil):
				dest.takeProbe(ctx, me, lease) // its replica stopped renewing
				continue
			default:
				wakeAt = c.ProbeUntil.Add(time.Millisecond)
			}
		}
		t := time.NewTimer(max(time.Until(wakeAt), time.Millisecond))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, false
		}
		t.Stop()
	}
}

// probeLease is how long a replica holds the half-open probe without
// renewing it: a fetch plus an attempt, with room to spare.
func (d *Dispatcher) probeLease(timeout time.Duration) time.Duration {
	return d.cfg.FetchWait + timeout + 5*time.Second
}

// takeProbe moves an open circuit whose cooldown is over to half-open
// with this replica as the prober, takes over a probe whose replica stopped
// renewing it, or renews this replica's lease.
func (dest *destination) takeProbe(ctx context.Context, me string, lease time.Duration) {
	err := dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string { return c.HalfOpen(me, now, lease) })
	if err != nil && ctx.Err() == nil {
		dest.log.WarnContext(ctx, "circuit breaker probe not taken", slog.Any("error", err))
		// Do not spin on a NATS outage.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// probeFoundNothing: the half-open probe fetch found no event due. If the
// destination has nothing at all waiting there is nothing to protect and
// nothing to probe with: close the breaker, and the next events show
// whether the partner is up. Otherwise keep waiting for an event whose
// retry is due.
func (dest *destination) probeFoundNothing(ctx context.Context) {
	info, err := dest.cons().Info(ctx)
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
		return
	}
	me := dest.d.cfg.Instance
	err = dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string {
		if !c.MayProbe(me, now) {
			return ""
		}
		c.Close("no event left to probe with; the next event will show whether the partner is up")
		return c.Reason
	})
	if err != nil && ctx.Err() == nil {
		dest.log.WarnContext(ctx, "circuit breaker not closed", slog.Any("error", err))
	}
}

// cons is the destination's consumer handle.
func (dest *destination) cons() jetstream.Consumer {
	dest.consumerMu.RLock()
	defer dest.consumerMu.RUnlock()
	return dest.consumer
}

func (dest *destination) setConsumer(c jetstream.Consumer) {
	_, created := dest.d.inc.Get()
	dest.consumerMu.Lock()
	dest.consumer = c
	dest.streamCreated = created
	dest.consumerMu.Unlock()
	dest.noteAckFloor(c.CachedInfo())
}

// noteAckFloor remembers the consumer's ack floor from a fresh info.
func (dest *destination) noteAckFloor(info *jetstream.ConsumerInfo) {
	if info != nil {
		dest.ackFloor.Store(info.AckFloor.Stream)
	}
}

// recoverConsumer recreates the destination's consumer if it no longer
// exists (an operator or `switchyard destinations prune` removed it while
// this replica is configured with the destination), and reports whether
// the fetch loop can go on at once. The new consumer starts after the last
// ack floor this replica saw, so events handed out since are delivered
// again (duplicates the partner drops by Idempotency-Key) and none stored
// meanwhile is skipped. If EVENTS itself was recreated, it starts at the
// new stream's first event.
func (dest *destination) recoverConsumer(ctx context.Context, cause error) bool {
	dest.recoverMu.Lock()
	defer dest.recoverMu.Unlock()
	name := ConsumerName(dest.cfg.Name)
	_, err := dest.d.js.Consumer(ctx, natsx.StreamEvents, name)
	if err == nil || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false // it exists (a leader change, say): the usual retry
	}
	if _, err := dest.d.inc.Read(ctx, dest.d.js, dest.d.cfg.Logger); err != nil {
		dest.log.ErrorContext(ctx, "the destination's consumer is gone and EVENTS cannot be read", slog.Any("error", err))
		return false
	}
	// Not Read's answer: that says whether this call saw the
	// change first, and another destination's may have.
	_, streamCreated := dest.d.inc.Get()
	dest.consumerMu.RLock()
	recreatedStream := !streamCreated.Equal(dest.streamCreated)
	dest.consumerMu.RUnlock()
	cc := topology.DestinationConsumer(dest.cfg).Config
	from := dest.ackFloor.Load() + 1
	if recreatedStream {
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
		from = 1
	} else {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	if dest.breaker != nil {
		// Still paused while the breaker is open.
		if c, _ := dest.breaker.View(); c.State == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN && c.OpenUntil.After(time.Now()) {
			cc.PauseUntil = &c.OpenUntil
		}
	}
	created, err := destinations.CreateIfMissing(ctx, dest.d.js, cc)
	if err != nil {
		dest.log.ErrorContext(ctx, "the destination's consumer is gone and could not be recreated", slog.Any("error", err))
		return false
	}
	cons, err := dest.d.js.Consumer(ctx, natsx.StreamEvents, name)
	if err != nil {
		dest.log.ErrorContext(ctx, "the destination's recreated consumer cannot be opened", slog.Any("error", err))
		return false
	}
	dest.setConsumer(cons)
	if !created {
		return true // another replica (or this one's other loop) was first
	}
	dest.log.ErrorContext(ctx, "the destination's consumer was deleted while this replica delivers to it; recreated it. "+
		"Events handed out since its last known ack floor are delivered again; pending retries restart their schedule. "+
		"Remove a destination from every replica's configuration before pruning its consumer",
		slog.String("consumer", name), slog.Uint64("from_stream_seq", from), slog.Bool("events_recreated", recreatedStream),
		slog.Any("noticed_by", cause))
	dest.d.metrics.consumerRecreated.WithLabelValues(dest.cfg.Name).Inc()
	return true
}
