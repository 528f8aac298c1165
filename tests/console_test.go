package tests

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// The browser test's environment: where its tools are, and how to get them.
const (
	browserDir     = "browser"
	browserInstall = "apt-get install -y chromium nodejs npm && (cd tests/browser && npm ci)"
	// hostilePayload is the body of an event that must be shown as text.
	hostilePayload = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">`
	// partnerErrorBody is what the partner answers while it fails: the
	// console shows it as the attempts' response, as text.
	partnerErrorBody = `<script>window.__pwned = 3</script>maintenance until 14:00`
)

// browserTools returns node and chromium, or fails the test saying how to
// install what is missing.
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (Node.js)")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "playwright-core in tests/browser/node_modules")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, "Debian's chromium at "+chromium)
	}
	if len(missing) > 0 {
		t.Fatalf("the console's browser test needs %s: install with `%s` (as root; `make test` runs the npm ci itself when npm is there), "+
			"or set CHROMIUM to a Chromium binary", strings.Join(missing, ", "), browserInstall)
	}
	return node, chromium
}

// failingPartner fails the first three requests for the order event with
// 503 and an error body, then accepts; it accepts everything else.
type failingPartner struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]int
}

func newFailingPartner(t *testing.T, eventID string) *failingPartner {
	p := &failingPartner{seen: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.seen[id]++
		n := p.seen[id]
		p.mu.Unlock()
		if id == eventID && n <= 3 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, partnerErrorBody)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *failingPartner) requests(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[id]
}

// TestConsoleInBrowser drives the operator console in a real browser
// (tests/browser/console.mjs: Playwright on Debian's headless chromium)
// against the real services on the real Postgres: an order event fails
// three times at the partner and is dead-lettered; on-call logs in, finds
// it by its order number, sees the three failed attempts, replays it and
// watches it become delivered without reloading; silences the alert that
// fired and sees it muted; and a hostile payload shows as text. The script
// saves screenshots of the overview and of the event page.
func TestConsoleInBrowser(t *testing.T) {
	node, chromium := browserTools(t)
	const (
		token   = "console-e2e-admin-token-0001"
		order   = "7731"
		eventID = "order-7731-created"
		hostile = "note-hostile-1"
	)
	erp := newFailingPartner(t, eventID)
	cfg := config.Config{Destinations: []config.Destination{destination("erp", erp.URL, []string{"events.order.>"}, 3)}}
	cfg.Auditor.AdminToken = token
	sys := startSystem(t, options{Config: cfg})
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, Token: token}
	ctx := context.Background()

	if _, err := events.Publish(ctx, sys.JS, events.Event{ID: eventID, Type: "order.created",
		Data: []byte(`{"order_id":` + order + `,"customer":"ACME GmbH","total":"1299.00","currency":"EUR"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, sys.JS, events.Event{ID: hostile, Type: "note.created", Data: []byte(hostilePayload)}); err != nil {
		t.Fatal(err)
	}
	// What the browser is to find must be in the audit log first: the
	// dead letter after three failed attempts, the alert it fired, and the
	// hostile event.
	waitfor.True(t, "the order dead-lettered after 3 attempts, in the audit log", func() bool {
		d, err := api.GetEvent(ctx, eventID)
		return err == nil && len(d.Deliveries) == 1 && d.Deliveries[0].Status == auditapi.StatusDeadLettered &&
			len(d.Attempts) == 3 && len(d.DeadLetters) == 1
	})
	waitfor.True(t, "DeliveryDeadLettered firing on erp, in the audit log", func() bool {
		l, err := api.ListAlerts(ctx, url.Values{"rule": {"DeliveryDeadLettered"}, "destination": {"erp"}, "state": {"firing"}})
		return err == nil && len(l.Items) > 0
	})
	waitfor.True(t, "the hostile event in the audit log", func() bool {
		_, err := api.GetEvent(ctx, hostile)
		return err == nil
	})

	artifacts := os.Getenv("CONSOLE_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(browserDir, "artifacts")
	}
	artifacts, err := filepath.Abs(artifacts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "console.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+sys.AuditAPI.URL, "CONSOLE_TOKEN="+token, "CONSOLE_ORDER="+order, "CONSOLE_EVENT_ID="+eventID,
		"CONSOLE_HOSTILE_EVENT_ID="+hostile, "CONSOLE_ARTIFACTS="+artifacts, "CHROMIUM="+chromium)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("tests/browser/console.mjs (%s):\n%s", time.Since(start).Round(100*time.Millisecond), out)
	if err != nil {
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the browser test did not finish within 2 minutes")
		}
		t.Fatalf("the browser test failed: %v (its output is above)", err)
	}

	// What the browser did happened: the replay (asked by the console
	// user) reached the partner, and the silence exists.
	d, err := api.GetEvent(ctx, eventID)
	if err != nil || len(d.Replays) != 1 || d.Replays[0].RequestedBy != "console:e2e-oncall" || d.Deliveries[0].Status != auditapi.StatusDelivered {
		t.Errorf("after the browser: replays %+v, deliveries %+v, %v", d.Replays, d.Deliveries, err)
	}
	if n := erp.requests(eventID); n != 4 {
		t.Errorf("the partner got %d requests for the order, want 4 (3 failed, 1 replayed)", n)
	}
	for _, shot := range []string{"console-overview.png", "console-event.png"} {
		if fi, err := os.Stat(filepath.Join(artifacts, shot)); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", shot, err)
		}
	}
}
