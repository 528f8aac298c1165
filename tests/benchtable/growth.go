package main

import (
	"context"
	"fmt"
	"time"
)

// growthSection measures what more destinations cost, for each of
// -growth-destinations (1, 10 and 100) subscribed to the same subject, in
// a fresh system (the four services in this process, audit log in
// Postgres): deliveries/s of a backlog of -growth-deliveries deliveries in
// all, then ingress closed loop at c=64 with every destination's consumer
// paused (ingress's own cost of the routing, not the dispatcher's
// competition for the cores).
func growthSection(ctx context.Context, e *env, o options, rep *report) error {
	for _, n := range o.GrowthDestinations {
		dir, err := sectionDir(e.dir, fmt.Sprintf("destinations-%d", n))
		if err != nil {
			return err
		}
		sub := &env{dir: dir, log: e.log}
		err = growthRun(ctx, sub, o, n, rep)
		sub.close()
		if err != nil {
			return fmt.Errorf("%d destinations: %w", n, err)
		}
	}
	return nil
}

func growthRun(ctx context.Context, e *env, o options, n int, rep *report) error {
	sys, err := startSystemWith(ctx, e, n)
	if err != nil {
		return err
	}
	events := max(1, o.GrowthDeliveries/n)
	rate, cpu, err := sys.drain(ctx, events)
	if err != nil {
		return err
	}
	rep.add(row{Section: "growth", Name: fmt.Sprintf("delivery, %s on the same subject", plural(n, "destination")),
		Rate: rate, Unit: "deliveries/s", CPUMicros: perOp(cpu, events*n),
		Note: fmt.Sprintf("%d events × %d, concurrency 32 each, audit on (Postgres); load average %s", events, n, loadAvg())})
	if err := sys.pause(ctx); err != nil {
		return err
	}
	if err := sys.settle(ctx); err != nil {
		return err
	}
	hooks, err := newWebhooks(fmt.Sprintf("growth-%d", n))
	if err != nil {
		return err
	}
	res, err := closedLoop(sys.ingress, 64, o.Duration, func(c *loadConn, t time.Time) (bool, error) {
		return hooks.send(c, "/webhooks/shop", t)
	})
	if err != nil {
		return err
	}
	q := latencyQuantiles(res.Latencies)
	rep.add(row{Section: "growth", Name: fmt.Sprintf("ingress c=64, %s on the same subject", plural(n, "destination")),
		Rate: res.rate(), Unit: "accepted/s", Latency: &q, CPUMicros: res.cpuPerOp(),
		Note: fmt.Sprintf("the destinations' consumers paused; load average %s %s", loadAvg(), loadNote(res))})
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
