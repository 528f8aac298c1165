package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// `sources poll NAME --dry-run` shows what a round would store, from the
// stored cursor, which items are stored already, and where the cursor would
// move, and stores nothing.
func TestSourcesPollDryRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var orders atomic.Int64
	orders.Store(3)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		total := int(orders.Load())
		var page []map[string]any
		for id := after + 1; id <= total && len(page) < 2; id++ {
			page = append(page, map[string]any{"id": id, "status": "created"})
		}
		answer := map[string]any{"orders": page}
		if last := after + len(page); last < total {
			answer["next_cursor"] = strconv.Itoa(last)
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(api.Close)
	ns := natstest.Start(t)
	_, js := ns.Connect(t)

	yaml := "nats:\n  url: " + ns.URL + `
sources:
  - name: shop-orders
    poll:
      url: ` + api.URL + `/orders
      query: {after: "{cursor}"}
      interval: 1s
      allow_private_network: true
      items: $.orders
      id: $.id
      type: '"order.\(.status)"'
      cursor: {mode: response, path: $.next_cursor}
`
	file := filepath.Join(t.TempDir(), "switchyard.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := cli.Execute(ctx, append([]string{"sources", "poll", "--config", file}, args...), &out, &out)
		return out.String(), err
	}
	out, err := run("shop-orders", "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"webhooks.shop-orders.order_created", "shop-orders:3", `{"id":3,"status":"created"}`,
		"2 page(s), 3 item(s)", `the cursor would move from "" to "2"`, "nothing was stored"} {
		if !strings.Contains(out, want) {
			t.Errorf("the first dry run lacks %q:\n%s", want, out)
		}
	}
	if n := natstest.Count(t, js, "EVENTS", "webhooks.>"); n != 0 {
		t.Fatalf("a dry run stored %d events", n)
	}

	// Ingress polls for real; then a fourth order comes.
	cfg, err := config.Load(file, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingress.New(js, auditlog.NewEmitter(js, "ingress"), ingress.FromConfig(cfg, natstest.Logger(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ing.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ing.Poll(pctx) }()
	waitfor.True(t, "the three orders stored", func() bool { return natstest.Count(t, js, "EVENTS", "webhooks.>") == 3 })
	stop()
	<-done
	_ = ing.Close(ctx)
	orders.Store(4)

	out, err = run("shop-orders", "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"stored  webhooks.shop-orders.order_created  shop-orders:3", "new     webhooks.shop-orders.order_created  shop-orders:4",
		`1 page(s), 2 item(s), 1 not stored yet`, `the cursor would stay at "2"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the second dry run lacks %q:\n%s", want, out)
		}
	}
	if n := natstest.Count(t, js, "EVENTS", "webhooks.>"); n != 3 {
		t.Errorf("%d events after the dry run, want the 3 ingress stored", n)
	}
	kv, err := js.KeyValue(ctx, topology.PollCursorBucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "shop-orders"); err != nil || string(e.Value()) != "2" || e.Revision() != 1 {
		t.Errorf("cursor %v %v: a dry run moved it", e, err)
	}

	if out, err := run("shop-orders"); err == nil || !strings.Contains(err.Error(), "--dry-run") {
		t.Errorf("without --dry-run: %v\n%s", err, out)
	}
	if _, err := run("nope", "--dry-run"); err == nil || !strings.Contains(err.Error(), `no source is called "nope"`) {
		t.Errorf("an unknown source: %v", err)
	}
}

// A dry run of a polled source with a contract says which items break it:
// polling would quarantine them, not deliver them.
func TestSourcesPollDryRunShowsItemsThatBreakTheContract(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"orders": [{"id": 1, "status": "created", "email": "a@example.com"}, {"id": 2, "status": "created"}]}`))
	}))
	t.Cleanup(api.Close)
	ns := natstest.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "order.json"), []byte(`{"type": "object", "required": ["email"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "switchyard.yaml")
	yaml := "nats:\n  url: " + ns.URL + `
sources:
  - name: shop-orders
    poll:
      url: ` + api.URL + `/orders
      interval: 1s
      allow_private_network: true
      items: $.orders
      id: $.id
      type: '"order.\(.status)"'
    contract: {default: order.json}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cli.Execute(ctx, []string{"sources", "poll", "--config", file, "shop-orders", "--dry-run"}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Nothing was provisioned: whether item 1 is stored is unknown.
	for _, want := range []string{"unknown     webhooks.shop-orders.order_created  shop-orders:1", "quarantine  webhooks.shop-orders.order_created  shop-orders:2  27     /: missing property 'email'",
		"2 item(s), 1 breaking the source's contract (would be quarantined)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the dry run lacks %q:\n%s", want, out.String())
		}
	}
}
