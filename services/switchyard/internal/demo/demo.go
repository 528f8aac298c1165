// Package demo is the all-in-one's demonstration: a small partner API that
// fails some requests, and a generator that publishes sample order events,
// so that within a minute of `make run` the log shows a delivery, a retry
// and a dead letter.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/httpserve"
)

// Config configures the demo.
type Config struct {
	// PartnerListen is where the demo partner listens.
	PartnerListen string
	// GenerateEvery publishes a sample event this often; 0 disables it.
	GenerateEvery time.Duration
	Logger        *slog.Logger
}

// Demo runs the partner and the generator.
type Demo struct {
	js  jetstream.JetStream
	cfg Config
}

// New returns a demo.
func New(js jetstream.JetStream, cfg Config) *Demo { return &Demo{js: js, cfg: cfg} }

// Behaviour is what the demo partner does with an event, chosen by the
// payload's "demo" field.
const (
	// Healthy events are accepted at once.
	Healthy = "ok"
	// Flaky events fail their first attempt with 503, then succeed.
	Flaky = "flaky"
	// Broken events always fail with 500 and end as dead letters.
	Broken = "broken"
)

// Partner is the demo partner's handler.
func Partner(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var p struct {
			Demo string `json:"demo"`
		}
		_ = json.Unmarshal(body, &p)
		attempt, _ := strconv.Atoi(r.Header.Get("Switchyard-Attempt"))
		id := r.Header.Get("Idempotency-Key")
		switch {
		case p.Demo == Broken:
			log.Info("demo partner: failing (this event always fails)", slog.String("event_id", id), slog.Int("attempt", attempt))
			http.Error(w, "demo partner: internal error", http.StatusInternalServerError)
		case p.Demo == Flaky && attempt <= 1:
			log.Info("demo partner: failing the first attempt", slog.String("event_id", id), slog.Int("attempt", attempt))
			http.Error(w, "demo partner: try again", http.StatusServiceUnavailable)
		default:
			log.Info("demo partner: received", slog.String("event_id", id), slog.Int("attempt", attempt), slog.Int("bytes", len(body)))
			w.WriteHeader(http.StatusOK)
		}
	})
}

// Run serves the partner and runs the generator until ctx is done.
func (d *Demo) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return httpserve.Run(gctx, "demo-partner", d.cfg.PartnerListen, Partner(d.cfg.Logger), d.cfg.Logger)
	})
	if d.cfg.GenerateEvery > 0 {
		g.Go(func() error { return d.generate(gctx) })
	}
	return g.Wait()
}

// generate publishes order events cycling through healthy, flaky, healthy,
// broken.
func (d *Demo) generate(ctx context.Context) error {
	cycle := []string{Healthy, Flaky, Healthy, Broken}
	t := time.NewTicker(d.cfg.GenerateEvery)
	defer t.Stop()
	run := time.Now().Unix()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		behaviour := cycle[(n-1)%len(cycle)]
		body, _ := json.Marshal(map[string]any{"order_id": 1000 + n, "total_cents": 1999 + n, "demo": behaviour})
		id := fmt.Sprintf("demo-%d-%d", run, n)
		if _, err := events.Publish(ctx, d.js, events.Event{ID: id, Type: "order.created", Data: body}); err != nil {
			d.cfg.Logger.WarnContext(ctx, "demo event not published", slog.Any("error", err))
			continue
		}
		d.cfg.Logger.Info("demo: published events.order.created", slog.String("event_id", id), slog.String("behaviour", behaviour))
	}
}
