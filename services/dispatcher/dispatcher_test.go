package dispatcher_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/dispatcher"
)

// Services run separately and started in any order: ingress (any service)
// starts first and accepts an event before any dispatcher has ever run.
// The dispatcher that starts later delivers it, because the service that
// started first created the destination's consumer.
func TestEventAcceptedBeforeTheFirstDispatcherIsDelivered(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	var hits atomic.Int32
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "ev-early" {
			hits.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(partner.Close)
	cfg := config.Config{
		NATS: config.NATS{URL: ns.URL},
		Destinations: []config.Destination{{
			Name: "erp", URL: partner.URL, Subjects: []string{"events.order.>"}, AllowPrivateNetwork: true,
			Timeout: config.Duration(time.Second), Retry: config.Retry{Backoff: []config.Duration{config.Duration(2 * time.Second)}, MaxAttempts: 3},
		}},
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// "ingress" starts: the boot every service goes through.
	ing, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: "ingress", LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ing.Close)
	if _, err := events.Publish(ctx, ing.JS, events.Event{ID: "ev-early", Type: "order.created", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	// The dispatcher's first start.
	env, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: "dispatcher", LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	dc := dispatcher.FromConfig(cfg, natstest.Logger(t), nil)
	dc.Tuning.FetchWait = 200 * time.Millisecond
	d, err := dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), dc)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Go(t, "dispatcher", d.Run)
	waitfor.True(t, "the event accepted before the dispatcher's first start delivered", func() bool { return hits.Load() == 1 })
}
