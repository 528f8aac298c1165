package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
)

// Baseline row names, which the ratios read.
const (
	rowRawPublish = "raw JetStream async publish, Nats-Msg-Id, 1 KiB, file store"
	rowRawFetch   = "raw JetStream fetch + ack of that backlog"
	rowEcho       = "bare echo handler with the HMAC check, c=64"
	rowSink       = "load generator against its own sink, c=64"
)

// baselineConc is the concurrency of the HTTP baselines: the ingress
// target's.
const baselineConc = 64

// baselines measures what ingress and delivery are made of, alone, in the
// same run: JetStream's publish and fetch+ack, HTTP with the HMAC check,
// and the load generator itself.
func baselines(ctx context.Context, e *env, o options, rep *report) error {
	ns, err := e.natsServer(ctx)
	if err != nil {
		return err
	}
	_, js, err := e.connect(ns)
	if err != nil {
		return err
	}
	cpu0 := cpuTime()
	n, rate, err := rawPublish(ctx, js, o.Duration)
	if err != nil {
		return fmt.Errorf("raw publish: %w", err)
	}
	cpu1 := cpuTime()
	rep.add(row{Section: "baselines", Name: rowRawPublish, Rate: rate, Unit: "msg/s", CPUMicros: perOp(cpu1-cpu0, n), Note: "one publisher, 4096 in flight"})
	fetch, err := rawFetchAck(ctx, js, n)
	if err != nil {
		return fmt.Errorf("raw fetch: %w", err)
	}
	rep.add(row{Section: "baselines", Name: rowRawFetch, Rate: fetch, Unit: "msg/s", CPUMicros: perOp(cpuTime()-cpu1, n), Note: fmt.Sprintf("%d messages, batches of 500", n)})

	sw, err := signing.NewStandardWebhooks([]string{webhookSecret}, time.Minute)
	if err != nil {
		return err
	}
	echo, err := e.serve(ctx, "echo", echoHandler(sw))
	if err != nil {
		return err
	}
	sink, err := e.serve(ctx, "sink", echoHandler(nil))
	if err != nil {
		return err
	}
	hooks, err := newWebhooks("baseline")
	if err != nil {
		return err
	}
	for _, b := range []struct{ name, addr string }{{rowEcho, echo}, {rowSink, sink}} {
		res, err := closedLoop(b.addr, baselineConc, o.Duration, func(c *loadConn, t time.Time) (bool, error) {
			return hooks.send(c, "/webhooks/shop", t)
		})
		if err != nil {
			return err
		}
		q := latencyQuantiles(res.Latencies)
		rep.add(row{Section: "baselines", Name: b.name, Rate: res.rate(), Unit: "req/s", Latency: &q, CPUMicros: res.cpuPerOp(), Note: loadNote(res)})
	}
	return nil
}

// echoHandler reads the body and, with a verifier, checks its signature as
// ingress does, then answers 202: HTTP and HMAC without JetStream.
func echoHandler(v signing.Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if v != nil {
			if _, err := v.Verify(signing.Request{Header: r.Header, Body: body, Now: time.Now()}); err != nil {
				http.Error(w, "signature", http.StatusUnauthorized)
				return
			}
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	})
}

// stallWait lets an asynchronous publish wait for room among the 4096
// PubAcks outstanding instead of failing after the client's 200 ms: on a
// loaded machine the server falls that far behind.
var stallWait = jetstream.WithStallWait(time.Minute)

// rawPublish publishes 1 KiB messages, each with its own Nats-Msg-Id, to
// EVENTS for d without waiting for each PubAck (4096 in flight), and
// returns how many and the rate including the wait for the last PubAck.
func rawPublish(ctx context.Context, js jetstream.JetStream, d time.Duration) (int, float64, error) {
	body := make([]byte, bodySize)
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		m := nats.NewMsg("events.bench.raw")
		m.Header.Set(nats.MsgIdHdr, "raw-"+strconv.Itoa(n))
		m.Data = body
		if _, err := js.PublishMsgAsync(m, stallWait); err != nil {
			return 0, 0, err
		}
		n++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, 0, fmt.Errorf("%d publishes not acknowledged", js.PublishAsyncPending())
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	return n, float64(n) / time.Since(start).Seconds(), nil
}

// rawFetchAck reads the n messages rawPublish stored through a pull
// consumer, acknowledging each, and returns messages per second: the
// ceiling of a destination's delivery.
func rawFetchAck(ctx context.Context, js jetstream.JetStream, n int) (float64, error) {
	cons, err := js.CreateConsumer(ctx, natsx.StreamEvents, jetstream.ConsumerConfig{
		FilterSubject: "events.bench.raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10_000,
	})
	if err != nil {
		return 0, err
	}
	var got atomic.Int64
	done := make(chan struct{})
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(500))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("fetched %d of %d", got.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// loadNote says what went wrong in a load run, if anything.
func loadNote(r loadResult) string {
	s := ""
	if r.Refused > 0 {
		s += fmt.Sprintf("%d refused ", r.Refused)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf("%d connections lost", r.Errors)
	}
	return s
}
