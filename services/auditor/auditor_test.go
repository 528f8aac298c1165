package auditor_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// Without an admin token the API must not be reachable from other hosts:
// the auditor refuses to start, and says what to do.
func TestRefusesOpenAPIWithoutToken(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		listen, token string
		wantErr       error
	}{
		{":8081", "", auditor.ErrOpenAPIWithoutToken},
		{"0.0.0.0:8081", "", auditor.ErrOpenAPIWithoutToken},
		{"192.0.2.10:8081", "", auditor.ErrOpenAPIWithoutToken},
		{"127.0.0.1:8081", "", nil},
		{"[::1]:8081", "", nil},
		{"localhost:8081", "", nil},
		{":8081", "0123456789abcdef", nil},
	} {
		err := auditor.Config{Auditor: config.Auditor{Listen: tt.listen, AdminToken: config.Secret(tt.token)}, Logger: log}.WithDefaults().Validate()
		// ErrOpenAPIWithoutToken's message names auditor.admin_token.
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("listen %q token %v: %v, want %v", tt.listen, tt.token != "", err, tt.wantErr)
		}
	}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	_, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{Auditor: config.Auditor{Listen: ":0"}, DataDir: t.TempDir(), Logger: log})
	if !errors.Is(err, auditor.ErrOpenAPIWithoutToken) {
		t.Errorf("New on :0 without a token = %v", err)
	}
}

func TestRouter(t *testing.T) {
	t.Parallel()
	route := auditor.Router([]config.Destination{
		{Name: "erp", Subjects: []string{"events.order.>", "webhooks.shop.>"}},
		{Name: "crm", Subjects: []string{"events.*.created"}},
	})
	for subject, want := range map[string][]string{
		"events.order.created":        {"erp", "crm"},
		"events.order.paid":           {"erp"},
		"events.invoice.created":      {"crm"},
		"webhooks.shop.order_created": {"erp"},
		"webhooks.billing.x":          nil,
	} {
		if got := route(subject); !slices.Equal(got, want) {
			t.Errorf("route(%s) = %v, want %v", subject, got, want)
		}
	}
}

// ApplyRetention runs both passes to the end, in batches, with the
// configured periods against the injected clock.
func TestApplyRetention(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dir := t.TempDir()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	a, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{
		Auditor: config.Auditor{Retention: config.AuditRetention{
			BatchSize: 3, Payloads: config.Duration(30 * 24 * time.Hour), Records: config.Duration(60 * 24 * time.Hour),
		}},
		DataDir: dir, Logger: natstest.Logger(t), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var b store.Batch
	for i := range 10 {
		for _, age := range []time.Duration{10, 45, 90} { // days
			ev := storetest.Event("ev-"+string(rune('a'+i))+"-"+age.String(), []byte(`{}`))
			ev.ReceivedAt = now.Add(-age * 24 * time.Hour)
			b.Events = append(b.Events, ev)
		}
	}
	b.Records = []*switchyardv1.AuditRecord{storetest.Rejection("old", now.Add(-61*24*time.Hour))}
	if err := st.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	got, err := a.ApplyRetention(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Bodies of the 45- and 90-day-old events dropped (before the 90-day
	// ones went), the 90-day-old events and the old rejection deleted.
	if got.PayloadsDropped != 20 || got.RowsDeleted != 11 {
		t.Errorf("retention = %+v, want 20 payloads dropped, 11 rows deleted", got)
	}
	evs, _, err := st.ListEvents(context.Background(), store.EventFilter{}, store.Page{Limit: 100})
	if err != nil || len(evs) != 20 {
		t.Fatalf("%d events left (%v), want 20", len(evs), err)
	}
	for _, e := range evs {
		d, _ := st.GetEvent(context.Background(), e.ID)
		old := now.Sub(e.ReceivedAt) > 30*24*time.Hour
		if old != (d.Event.Payload == nil) {
			t.Errorf("%s (received %v): payload %q", e.ID, e.ReceivedAt, d.Event.Payload)
		}
	}
}
