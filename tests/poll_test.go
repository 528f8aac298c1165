package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// A polled source whose partner API goes down: ingress's rounds fail and
// are recorded, the notifier pages PartnerDown for the source ("lost
// connection to the partner API"), and says when the partner is back and
// the items that waited there are stored, once each.
func TestPolledSourceOutagePagesAndRecovers(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var mu sync.Mutex
	orders := 3
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, `{"error":"maintenance"}`, http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		n := orders
		mu.Unlock()
		var items []string
		for id := 1; id <= n; id++ {
			items = append(items, fmt.Sprintf(`{"id": %d, "status": "created"}`, id))
		}
		_, _ = fmt.Fprintf(w, `{"orders": [%s]}`, strings.Join(items, ","))
	}))
	t.Cleanup(api.Close)
	slack := slacktest.New(t)

	cfg := config.Config{
		Sources: []config.Source{{Name: "shop-orders", Poll: &config.SourcePoll{
			URL: api.URL + "/orders", Interval: config.Duration(time.Second), AllowPrivateNetwork: true,
			Items: "$.orders", ID: "$.id", Type: `"order.\(.status)"`,
		}}},
		Alerts: config.Alerts{
			SlackWebhookURL: config.Secret(slack.WebhookURL()), GroupWait: config.Duration(100 * time.Millisecond),
			EvaluationInterval: config.Duration(200 * time.Millisecond),
			Rules: config.AlertRules{SourceAlertRules: config.SourceAlertRules{SourceDown: config.SourceDownRule{
				After: config.Duration(4 * time.Second), ResolveAfter: config.Duration(time.Second)}}},
		},
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	_, ijs := ns.Connect(t)
	_, njs := ns.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	log := natstest.Logger(t)

	notif, err := notifier.New(njs, auditlog.NewEmitter(njs, "notifier"), notifier.FromConfig(cfg, log.With("service", "notifier"), nil))
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = notif.Run(ctx) })
	ing, err := ingress.New(ijs, auditlog.NewEmitter(ijs, "ingress"), ingress.FromConfig(cfg, log.With("service", "ingress"), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ing.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ing.Close(context.Background()) })
	wg.Go(func() { _ = ing.Poll(ctx) })

	waitfor.True(t, "the three orders stored", func() bool { return natstest.Count(t, js, "EVENTS", "webhooks.shop-orders.>") == 3 })

	// The partner goes down, and two orders wait there meanwhile.
	down.Store(true)
	mu.Lock()
	orders = 5
	mu.Unlock()
	waitfor.True(t, "PartnerDown for the source in Slack", func() bool { return len(slack.Accepted()) >= 1 })
	first := slack.Accepted()[0].Text
	if !strings.Contains(first, "[FIRING][critical] shop-orders: lost connection to the partner API") {
		t.Fatalf("Slack got %q", first)
	}
	failed := 0
	for _, r := range natstest.AuditRecords(t, js, "audit.poll.shop-orders") {
		if pr := r.GetPollRound(); pr.GetStatusCode() == http.StatusServiceUnavailable && pr.GetError() != "" {
			failed++
		}
	}
	if failed == 0 {
		t.Error("no failed round recorded in AUDIT")
	}

	down.Store(false)
	waitfor.True(t, "the alert resolved", func() bool {
		for _, m := range slack.Accepted() {
			if strings.Contains(m.Text, "[RESOLVED][critical] PartnerDown for shop-orders") {
				return true
			}
		}
		return false
	})
	waitfor.True(t, "the orders that waited stored", func() bool { return natstest.Count(t, js, "EVENTS", "webhooks.shop-orders.>") == 5 })
	if n := len(slack.Accepted()); n != 2 {
		t.Errorf("%d Slack messages, want the firing one and the resolved one", n)
	}
}
