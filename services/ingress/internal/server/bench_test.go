package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/loadconn"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// BenchmarkIngress is the ingress throughput figure: 1 KiB Standard
// Webhooks requests, each with a new delivery id and its own signature,
// sent over loopback HTTP/1.1 keep-alive connections by a load generator
// in this process (its cost is included) to the real server, which verifies, checks the idempotency
// record, publishes to an embedded NATS with file storage, waits for the
// PubAck and writes the record. Per concurrency it reports accepted
// webhooks/s with p50 and p99 latency, then the raw JetStream rate measured
// right after in the same run (1 KiB synchronous publishes from as many
// publishers to the same stream) and the ratio of the two.
func BenchmarkIngress(b *testing.B) {
	ns := natstest.Start(b)
	log := slog.New(slog.DiscardHandler)
	nc, err := natsx.ConnectEmbedded(ns.NS, natsx.ConnectOptions{Name: "bench", Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(js, auditlog.NewEmitter(js, "ingress"), Config{
		Sources: []config.Source{{
			Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vecSecret},
			Tolerance: config.DefaultTolerance, MaxBody: config.DefaultMaxBody,
			// Measured flat out: no rate limit.
			RateLimit: config.SourceRateLimit{Unlimited: true},
		}},
		Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Provision(context.Background()); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	natstest.Go(b, "ingress", func(ctx context.Context) error {
		return httpserve.Serve(ctx, "ingress", ln, srv.Handler(), log)
	})
	addr := ln.Addr().String()
	sw, err := signing.NewStandardWebhooks([]string{vecSecret}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"type":"order.created","data":{"order_id":1001,"padding":"` + strings.Repeat("x", 1024-62) + `"}}`)
	if len(body) != 1024 {
		b.Fatalf("body is %d bytes, want 1024", len(body))
	}
	var seq atomic.Int64
	for _, conc := range []int{1, 16, 64, 256} {
		b.Run("c="+strconv.Itoa(conc), func(b *testing.B) {
			conns := make(chan *loadConn, conc)
			for range conc {
				lc, err := dialLoad(addr)
				if err != nil {
					b.Fatal(err)
				}
				defer lc.Close()
				conns <- lc
			}
			send := func() error {
				lc := <-conns
				defer func() { conns <- lc }()
				id := "msg_" + strconv.FormatInt(seq.Add(1), 10)
				now := time.Now()
				status, err := lc.Post("/webhooks/shop", body,
					"Content-Type", "application/json",
					signing.HeaderWebhookID, id,
					signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10),
					signing.HeaderWebhookSignature, sw.Sign(id, now, body))
				if err != nil {
					return err
				}
				if status != http.StatusAccepted {
					return fmt.Errorf("status %d", status)
				}
				return nil
			}
			b.ResetTimer()
			cpu0 := cpuTime(b)
			elapsed, lat := load(b, conc, send)
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			// Let the idempotency records finish so that they do not
			// count against the raw rate.
			waitfor.True(b, "the idempotency records written", func() bool { return srv.records.InFlight() == 0 })
			rate := float64(b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "accepted/s")
			b.ReportMetric(percentile(lat, 50), "p50-ms")
			b.ReportMetric(percentile(lat, 99), "p99-ms")
			// CPU time of the whole process (load generator, ingress and
			// NATS server) per request: the figure to optimise on a shared
			// machine, where the rate depends on the neighbours.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")

			raw := rawPublishRate(b, js, conc, body)
			b.ReportMetric(raw, "raw-js-publish/s")
			b.ReportMetric(rate/raw, "ratio")
		})
	}
}

// loadConn is the load generator's client, shared with the benchmark
// table.
type loadConn = loadconn.Conn

var dialLoad = loadconn.Dial

// load runs b.N calls of send from conc goroutines and returns the time it
// took and every call's latency.
func load(b *testing.B, conc int, send func() error) (time.Duration, []time.Duration) {
	var next atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := send(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := firstErr.Load(); err != nil {
		b.Fatalf("request failed: %v", err)
	}
	return elapsed, slices.Concat(lats...)
}

// rawPublishRate publishes b.N 1 KiB messages to EVENTS from conc
// synchronous publishers and returns messages per second.
func rawPublishRate(b *testing.B, js jetstream.JetStream, conc int, body []byte) float64 {
	ctx := context.Background()
	elapsed, _ := load(b, conc, func() error {
		m := nats.NewMsg("events.bench.raw")
		m.Header.Set(nats.MsgIdHdr, "raw-"+nats.NewInbox())
		m.Data = body
		_, err := js.PublishMsg(ctx, m)
		return err
	})
	return float64(b.N) / elapsed.Seconds()
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile is the p-th percentile of ds, in milliseconds.
func percentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(len(ds)-1, len(ds)*p/100)
	return float64(ds[i]) / float64(time.Millisecond)
}
