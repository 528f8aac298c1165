package tests

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// An event a destination's filter leaves out shows as filtered in the
// audit log, with no attempt, instead of pending for ever (the auditor
// routes events to destinations by subject; only the dispatcher knows the
// filter's decision, and records it).
func TestFilteredDeliveryIsRecordedAsFiltered(t *testing.T) {
	eu := newPartner(t, always(http.StatusOK))
	rest := newPartner(t, always(http.StatusOK))
	euDest := destination("eu-shop", eu.URL, []string{"events.order.>"}, 3)
	euDest.Filter = `data.country in ["DE", "FR"]`
	restDest := destination("rest-shop", rest.URL, []string{"events.order.>"}, 3)
	restDest.Filter = `!(data.country in ["DE", "FR"])`
	sys := startSystem(t, options{Config: config.Config{Destinations: []config.Destination{euDest, restDest}}})
	ctx := context.Background()
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL}

	if _, err := events.Publish(ctx, sys.JS, events.Event{ID: "order-de", Type: "order.created", ContentType: "application/json", Data: []byte(`{"country":"DE"}`)}); err != nil {
		t.Fatal(err)
	}
	statuses := func(d auditapi.EventDetail) map[string]string {
		out := map[string]string{}
		for _, x := range d.Deliveries {
			out[x.Destination] = x.Status
		}
		return out
	}
	d := waitfor.Value(t, "order-de delivered to eu-shop and filtered for rest-shop", func() (auditapi.EventDetail, bool) {
		d, err := api.GetEvent(ctx, "order-de")
		s := statuses(d)
		return d, err == nil && s["eu-shop"] == auditapi.StatusDelivered && s["rest-shop"] == auditapi.StatusFiltered
	})
	for _, a := range d.Attempts {
		if a.Destination == "rest-shop" {
			t.Errorf("an attempt recorded for the filtered-out destination: %+v", a)
		}
	}
	if rest.total() != 0 {
		t.Errorf("rest-shop got %d requests", rest.total())
	}
	filtered, err := api.ListDeliveries(ctx, url.Values{"status": {auditapi.StatusFiltered}})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Items) != 1 || filtered.Items[0].Destination != "rest-shop" {
		t.Errorf("filtered deliveries = %+v, want order-de's to rest-shop", filtered.Items)
	}
}
