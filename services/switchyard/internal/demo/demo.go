// Package demo is the all-in-one's demonstration: a small partner API that
// fails some requests, and a generator that publishes sample order events,
// so that within a minute of `make run` the log shows a delivery, a retry
// and a dead letter. The partner also serves a paged orders API without
// webhooks (GET /orders), which the demo configuration polls, and answers
// deliveries with a body, which a synchronous publish passes back.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
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

// Partner is the demo partner's handler: deliveries to any path but
// /orders, and the orders API at GET /orders.
func Partner(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /orders", NewOrders(time.Now(), 10*time.Second))
	var received atomic.Int64
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
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
			n := received.Add(1)
			log.Info("demo partner: received", slog.String("event_id", id), slog.Int("attempt", attempt), slog.Int("bytes", len(body)))
			// An answer worth passing back to a caller that waits for it.
			ref := fmt.Sprintf("DP-%06d", n)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Location", "/receipts/"+ref)
			w.Header().Set("Set-Cookie", "demo-session=not-for-callers")
			_ = json.NewEncoder(w).Encode(map[string]any{"received": id, "partner_ref": ref, "attempt": attempt})
		}
	})
	return mux
}

// Order is one order of the demo orders API.
type Order struct {
	ID         int    `json:"id"`
	Status     string `json:"status"`
	TotalCents int    `json:"total_cents"`
	CreatedAt  string `json:"created_at"`
}

// Orders is a paged orders API without webhooks: three orders at start and
// one more every `every`, listed oldest first after a cursor:
// GET /orders?after=<cursor>&limit=<n> answers
// {"orders": [...], "next_cursor": "..."}, next_cursor only while more
// orders follow.
type Orders struct {
	start time.Time
	every time.Duration
}

// NewOrders returns the orders API as of start.
func NewOrders(start time.Time, every time.Duration) *Orders {
	return &Orders{start: start, every: every}
}

// MaxPage bounds a page of the orders API.
const MaxPage = 50

func (o *Orders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after := 0
	if c := q.Get("after"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			http.Error(w, `{"error":"after must be a cursor from next_cursor"}`, http.StatusBadRequest)
			return
		}
		after = n
	}
	limit := 5
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, MaxPage)
	}
	total := 3 + int(time.Since(o.start)/o.every)
	statuses := []string{"created", "paid", "shipped"}
	page := []Order{}
	for id := after + 1; id <= total && len(page) < limit; id++ {
		page = append(page, Order{
			ID: id, Status: statuses[(id-1)%len(statuses)], TotalCents: 1000 + 37*id,
			CreatedAt: o.start.Add(time.Duration(max(0, id-3)) * o.every).UTC().Format(time.RFC3339),
		})
	}
	answer := map[string]any{"orders": page}
	if last := after + len(page); last < total {
		answer["next_cursor"] = strconv.Itoa(last)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
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
