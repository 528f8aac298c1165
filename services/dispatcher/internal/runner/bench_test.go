package runner

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/otlptest"
)

// benchPartner is a fast local partner: 204 at once, counting requests and,
// when the body starts with a publish timestamp, the latency to it.
type benchPartner struct {
	*httptest.Server
	n         atomic.Int64
	target    int64
	done      chan struct{}
	mu        sync.Mutex
	latencies []time.Duration
}

func newBenchPartner(b *testing.B, target int) *benchPartner {
	p := &benchPartner{target: int64(target), done: make(chan struct{})}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) >= 8 {
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(body)))
			p.mu.Lock()
			p.latencies = append(p.latencies, time.Since(sent))
			p.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
		if p.n.Add(1) == p.target {
			close(p.done)
		}
	}))
	b.Cleanup(p.Close)
	return p
}

func benchDestination(url string) config.Destination {
	d := destinationFor("bench", url, 6)
	d.Timeout = config.Duration(5 * time.Second)
	d.Retry.Backoff = []config.Duration{config.Duration(10 * time.Second)}
	d.Concurrency = 32
	d.MaxAckPending = 10000
	return d
}

func startBenchDispatcher(b *testing.B, ns *natstest.Server, d config.Destination, tracing ...*telemetry.Tracing) {
	b.Helper()
	_, js := ns.Connect(b)
	cfg := Config{
		Destinations: []config.Destination{d},
		Logger:       slog.New(slog.DiscardHandler),
	}
	if len(tracing) > 0 {
		cfg.Tracing = tracing[0]
	}
	disp, err := New(js, auditlog.NewEmitter(js, "dispatcher"), cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := disp.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
}

// publishAsync publishes n events as fast as JetStream takes them; body
// makes each payload.
func publishAsync(b *testing.B, js jetstream.JetStream, n int, prefix string, pace time.Duration, traced bool) {
	b.Helper()
	start := time.Now()
	for i := range n {
		if pace > 0 {
			// Pacing is the point here: the offered rate.
			if wait := time.Until(start.Add(time.Duration(i) * pace)); wait > 0 {
				time.Sleep(wait)
			}
		}
		body := make([]byte, 8, 64)
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		body = append(body, `{"order":42}`...)
		m, err := events.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Type: "order.created", Data: body}.Msg(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if traced {
			// As ingress stores it: a sampled trace context per event.
			m.Header.Set(telemetry.HeaderTraceparent, fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
}

func newBenchNATS(b *testing.B) (*natstest.Server, jetstream.JetStream) {
	b.Helper()
	ns := natstest.Start(b)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	return ns, js
}

// BenchmarkDeliveryThroughput drains a backlog of b.N events to a fast
// local partner, with audit records on, and reports deliveries per second.
func BenchmarkDeliveryThroughput(b *testing.B) {
	benchThroughput(b, nil)
}

// BenchmarkDeliveryThroughputTracing is BenchmarkDeliveryThroughput with
// tracing off, on (every attempt sampled, each event carrying a trace,
// spans exported to an OTLP/HTTP receiver in this process), and on against
// an endpoint that accepts connections and never answers: side by side,
// the cost of tracing on the delivery path.
func BenchmarkDeliveryThroughputTracing(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchThroughput(b, nil) })
	b.Run("on", func(b *testing.B) {
		rcv := otlptest.New(b)
		benchThroughput(b, benchTracing(b, rcv.URL()))
	})
	b.Run("on-unreachable", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				b.Cleanup(func() { _ = c.Close() })
			}
		}()
		benchThroughput(b, benchTracing(b, "http://"+ln.Addr().String()+"/v1/traces"))
	})
}

func benchTracing(b *testing.B, endpoint string) *telemetry.Tracing {
	b.Helper()
	cfg := config.Defaults().Telemetry.Traces
	cfg.Endpoint = endpoint
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"})
	tr, err := telemetry.New(cfg, "dispatcher", dropped, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tr.Shutdown(ctx)
		b.ReportMetric(testutil.ToFloat64(dropped), "spans-dropped")
	})
	return tr
}

func benchThroughput(b *testing.B, tracing *telemetry.Tracing) {
	ns, js := newBenchNATS(b)
	p := newBenchPartner(b, b.N)
	d := benchDestination(p.URL)
	startBenchDispatcher(b, ns, d, tracing)
	b.StopTimer()
	// Pause the destination while the backlog is published, so that the
	// measure is of delivery only.
	ctx := context.Background()
	if _, err := js.PauseConsumer(ctx, "EVENTS", ConsumerName(d.Name), time.Now().Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	publishAsync(b, js, b.N, "tp", 0, tracing.Enabled())
	b.StartTimer()
	start := time.Now()
	if _, err := js.ResumeConsumer(ctx, "EVENTS", ConsumerName(d.Name)); err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("delivered %d of %d", p.n.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkEndToEndLatency offers 1,000 events/s and reports the latency
// from publish to the partner's receipt.
func BenchmarkEndToEndLatency(b *testing.B) {
	ns, js := newBenchNATS(b)
	p := newBenchPartner(b, b.N)
	startBenchDispatcher(b, ns, benchDestination(p.URL))
	b.ResetTimer()
	publishAsync(b, js, b.N, "lat", time.Millisecond, false)
	select {
	case <-p.done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("delivered %d of %d", p.n.Load(), b.N)
	}
	b.StopTimer()
	p.mu.Lock()
	lat := slices.Clone(p.latencies)
	p.mu.Unlock()
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
