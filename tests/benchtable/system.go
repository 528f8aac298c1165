package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// destinationName is the one destination of the delivery and end-to-end
// sections.
const destinationName = "partner"

// benchDestination delivers every event to the fast local partner.
func benchDestination(url string) config.Destination {
	return benchDestinationNamed(destinationName, url)
}

// benchDestinationNamed is benchDestination under another name.
func benchDestinationNamed(name, url string) config.Destination {
	return config.Destination{
		Name:     name,
		URL:      url,
		Subjects: []string{"webhooks.shop.>", "events.>"},
		Timeout:  config.Duration(5 * time.Second),
		Retry: config.Retry{
			Backoff:     []config.Duration{config.Duration(10 * time.Second)},
			MaxAttempts: 6,
		},
		Concurrency:         32,
		AllowPrivateNetwork: true,
	}
}

// system is the four services in this process, as the all-in-one runs
// them (each on its own in-process NATS connection), with the audit log in
// a fresh Postgres schema and one destination, the fast local partner.
type system struct {
	js      jetstream.JetStream
	ingress string
	partner *partner
	// destinations are the configured destinations' names.
	destinations []string
}

func startSystem(ctx context.Context, e *env) (*system, error) {
	return startSystemWith(ctx, e, 1)
}

// startSystemWith is startSystem with n destinations subscribed to the
// same subjects, all delivering to the one fast local partner (each on
// its own path): the first is named partner, the others partner-2 to
// partner-<n>.
func startSystemWith(ctx context.Context, e *env, n int) (*system, error) {
	ns, dbURL, err := e.natsAndPostgres(ctx)
	if err != nil {
		return nil, err
	}
	p := &partner{}
	partnerAddr, err := e.serve(ctx, "partner", p)
	if err != nil {
		return nil, err
	}
	var dests []config.Destination
	var names []string
	for i := range n {
		name := destinationName
		if i > 0 {
			name = destinationName + "-" + strconv.Itoa(i+1)
		}
		dests = append(dests, benchDestinationNamed(name, "http://"+partnerAddr+"/"+name))
		names = append(names, name)
	}
	cfg := config.Config{
		Sources: []config.Source{{
			Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{webhookSecret},
			RateLimit: config.SourceRateLimit{Unlimited: true},
		}},
		Destinations: dests,
		DatabaseURL:  config.Secret(dbURL),
		DataDir:      e.dir,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	_, js, err := e.connect(ns)
	if err != nil {
		return nil, err
	}
	conn := func() (jetstream.JetStream, error) {
		_, js, err := e.connect(ns)
		return js, err
	}

	acfg := auditor.FromConfig(cfg, e.log.With("service", "auditor"), nil)
	if err := auditor.Migrate(ctx, acfg); err != nil {
		return nil, fmt.Errorf("migrate the audit log: %w", err)
	}
	aud, err := e.auditor(ns, acfg)
	if err != nil {
		return nil, err
	}
	e.goRun(ctx, "auditor", aud.RunWriter)

	djs, err := conn()
	if err != nil {
		return nil, err
	}
	disp, err := dispatcher.New(djs, auditlog.NewEmitter(djs, "dispatcher"), dispatcher.FromConfig(cfg, e.log.With("service", "dispatcher"), nil))
	if err != nil {
		return nil, err
	}
	if err := disp.Provision(ctx); err != nil {
		return nil, err
	}
	e.goRun(ctx, "dispatcher", disp.Run)

	njs, err := conn()
	if err != nil {
		return nil, err
	}
	notif, err := notifier.New(njs, auditlog.NewEmitter(njs, "notifier"), notifier.FromConfig(cfg, e.log.With("service", "notifier"), nil))
	if err != nil {
		return nil, err
	}
	e.goRun(ctx, "notifier", notif.Run)

	ijs, err := conn()
	if err != nil {
		return nil, err
	}
	ing, err := ingress.New(ijs, auditlog.NewEmitter(ijs, "ingress"), ingress.FromConfig(cfg, e.log.With("service", "ingress"), nil))
	if err != nil {
		return nil, err
	}
	if err := ing.Provision(ctx); err != nil {
		return nil, err
	}
	e.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ing.Close(cctx)
	})
	addr, err := e.serve(ctx, "ingress", ing.Handler())
	if err != nil {
		return nil, err
	}
	return &system{js: js, ingress: addr, partner: p, destinations: names}, nil
}

// deliverySection drains a backlog to the fast local partner, then offers
// webhooks at fixed rates through ingress and measures, at the partner,
// the latency from each one's intended send time.
func deliverySection(ctx context.Context, e *env, o options, rep *report) error {
	sys, err := startSystem(ctx, e)
	if err != nil {
		return err
	}
	rate, cpu, err := sys.drain(ctx, o.DeliveryEvents)
	if err != nil {
		return err
	}
	rep.add(row{Section: "delivery", Name: "backlog drained to a fast local partner", Rate: rate, Unit: "deliveries/s",
		CPUMicros: perOp(cpu, o.DeliveryEvents),
		Target:    "≥ 8,000/s", Met: met(rate >= 8000),
		Note: fmt.Sprintf("%d events, concurrency 32, audit on (Postgres)", o.DeliveryEvents)})
	if !o.runs("e2e") {
		return nil
	}
	// The auditor and the notifier still have the backlog's events and
	// attempts to read: the end-to-end rows start when they are done.
	if err := sys.settle(ctx); err != nil {
		return err
	}
	hooks, err := newWebhooks("e2e")
	if err != nil {
		return err
	}
	for _, offered := range o.E2ERates {
		before := sys.partner.reset()
		cpu0 := cpuTime()
		res, err := openLoop(sys.ingress, o.Conns, offered, o.Duration, func(c *loadConn, t time.Time) (bool, error) {
			return hooks.send(c, "/webhooks/shop", t)
		})
		if err != nil {
			return err
		}
		want := before + int64(res.Accepted)
		if err := waitUntil(ctx, time.Minute, "the accepted webhooks delivered", func() (bool, error) {
			return sys.partner.n.Load() >= want, nil
		}); err != nil {
			return err
		}
		q := latencyQuantiles(sys.partner.takeLatencies())
		r := row{Section: "e2e", Name: fmt.Sprintf("webhook to partner, %s/s offered", formatRate(float64(offered))),
			Rate: res.rate(), Unit: "accepted/s", Latency: &q, CPUMicros: perOp(cpuTime()-cpu0, res.Accepted),
			Note: "from the intended send time; audit on (Postgres) " + loadNote(res)}
		switch offered {
		case 1000:
			r.Target, r.Met = "p99 < 20 ms", met(q.P99 < 20)
		case 5000:
			r.Target, r.Met = "p99 < 50 ms", met(q.P99 < 50)
		}
		rep.add(r)
	}
	return nil
}

// settle waits until the auditor's and the notifier's consumers have
// nothing pending or unacknowledged.
func (s *system) settle(ctx context.Context) error {
	for _, c := range []struct{ stream, consumer string }{
		{natsx.StreamEvents, natsx.ConsumerAuditorEvents},
		{natsx.StreamAudit, natsx.ConsumerAuditor},
		{natsx.StreamAudit, natsx.ConsumerNotifier},
	} {
		cons, err := s.js.Consumer(ctx, c.stream, c.consumer)
		if err != nil {
			return err
		}
		if err := waitUntil(ctx, 10*time.Minute, "consumer "+c.consumer+" caught up", func() (bool, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return false, err
			}
			return info.NumPending == 0 && info.NumAckPending == 0, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// drain publishes n events while the destinations' consumers are paused,
// resumes them and returns deliveries per second until the partner has
// all of them (n per destination), and the CPU time this process spent
// meanwhile (dispatcher, auditor, notifier, NATS server and partner).
func (s *system) drain(ctx context.Context, n int) (float64, time.Duration, error) {
	if err := s.pause(ctx); err != nil {
		return 0, 0, err
	}
	for i := range n {
		body := webhookBody(nil, time.Now())
		m, err := events.Event{ID: "drain-" + strconv.Itoa(i), Type: "order.created", Data: body}.Msg(time.Now())
		if err != nil {
			return 0, 0, err
		}
		if _, err := s.js.PublishMsgAsync(m, stallWait); err != nil {
			return 0, 0, err
		}
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, 0, fmt.Errorf("%d publishes not acknowledged", s.js.PublishAsyncPending())
	}
	before := s.partner.n.Load()
	cpu0 := cpuTime()
	start := time.Now()
	for _, d := range s.destinations {
		if _, err := s.js.ResumeConsumer(ctx, natsx.StreamEvents, dispatcher.ConsumerName(d)); err != nil {
			return 0, 0, err
		}
	}
	want := int64(n * len(s.destinations))
	if err := waitUntil(ctx, 10*time.Minute, "the backlog delivered", func() (bool, error) {
		return s.partner.n.Load() >= before+want, nil
	}); err != nil {
		return 0, 0, err
	}
	return float64(want) / time.Since(start).Seconds(), cpuTime() - cpu0, nil
}

// pause pauses every destination's consumer for an hour.
func (s *system) pause(ctx context.Context) error {
	for _, d := range s.destinations {
		if _, err := s.js.PauseConsumer(ctx, natsx.StreamEvents, dispatcher.ConsumerName(d), time.Now().Add(time.Hour)); err != nil {
			return err
		}
	}
	return nil
}
