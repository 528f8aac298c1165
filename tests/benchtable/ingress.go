package main

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/ingress"
)

// rowIngressTarget is the row the ingress target applies to.
const rowIngressTarget = "closed loop, c=64"

// ingressSection measures ingress alone: signed 1 KiB webhooks verified,
// checked against the idempotency bucket, published to EVENTS (file
// store) and answered after the PubAck. Closed loop at increasing
// concurrency, then open loop at fixed rates.
func ingressSection(ctx context.Context, e *env, o options, rep *report) error {
	ns, err := e.natsServer(ctx)
	if err != nil {
		return err
	}
	_, js, err := e.connect(ns)
	if err != nil {
		return err
	}
	ing, err := ingress.New(js, auditlog.NewEmitter(js, "ingress"), ingress.Config{
		Sources: []config.Source{{
			Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{webhookSecret},
			// Measured flat out: no rate limit.
			RateLimit: config.SourceRateLimit{Unlimited: true},
		}},
		Logger: e.log,
	})
	if err != nil {
		return err
	}
	if err := ing.Provision(ctx); err != nil {
		return err
	}
	e.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ing.Close(cctx)
	})
	addr, err := e.serve(ctx, "ingress", ing.Handler())
	if err != nil {
		return err
	}
	hooks, err := newWebhooks("ingress")
	if err != nil {
		return err
	}
	send := func(c *loadConn, t time.Time) (bool, error) { return hooks.send(c, "/webhooks/shop", t) }
	for _, conc := range []int{1, 16, 64, 256} {
		res, err := closedLoop(addr, conc, o.Duration, send)
		if err != nil {
			return err
		}
		q := latencyQuantiles(res.Latencies)
		r := row{Section: "ingress", Name: fmt.Sprintf("closed loop, c=%d", conc), Rate: res.rate(), Unit: "accepted/s", Latency: &q, CPUMicros: res.cpuPerOp(), Note: loadNote(res)}
		if r.Name == rowIngressTarget {
			r.Target = "≥ 12,000/s, p99 < 20 ms"
			r.Met = met(r.Rate >= 12_000 && q.P99 < 20)
		}
		rep.add(r)
	}
	for _, rate := range o.OpenRates {
		res, err := openLoop(addr, o.Conns, rate, o.Duration, send)
		if err != nil {
			return err
		}
		q := latencyQuantiles(res.Latencies)
		rep.add(row{Section: "ingress", Name: fmt.Sprintf("open loop, %s/s offered", formatRate(float64(rate))),
			Rate: res.rate(), Unit: "accepted/s", Latency: &q, CPUMicros: res.cpuPerOp(),
			Note: "latency from the intended send time " + loadNote(res)})
	}
	return nil
}
