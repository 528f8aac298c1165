package auditor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// An auditor started while Postgres is down runs: it opens and migrates the
// store in the background, reports its lag (AuditLag with the reason) from
// the start, answers the API with 503 saying why, and once Postgres is back
// writes everything that waited, once.
func TestStartsWhilePostgresIsDown(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dbURL := pgtest.Schema(t) // empty: the auditor migrates it
	proxy, proxied := pgtest.NewProxy(t, dbURL)
	proxy.Cut()

	a, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{
		DatabaseURL: config.Secret(proxied), Logger: natstest.Logger(t),
		Auditor:      config.Auditor{LagThreshold: config.Duration(300 * time.Millisecond)},
		Tuning:       auditor.Tuning{LagInterval: 100 * time.Millisecond},
		Destinations: []config.Destination{{Name: "erp", Subjects: []string{"events.order.>"}}},
	})
	if err != nil {
		t.Fatalf("New while Postgres is down = %v, want the auditor to start and keep trying", err)
	}
	t.Cleanup(func() { a.Close() })
	natstest.Go(t, "audit writer", a.RunWriter)
	api := httptest.NewServer(a.Handler())
	t.Cleanup(api.Close)

	if err := a.Ready(context.Background()); !errors.Is(err, store.ErrNotReady) {
		t.Errorf("Ready while Postgres is down = %v, want ErrNotReady", err)
	}
	// Nothing to write yet, and still the lag is reported, with the reason.
	lagWithReason := func() bool {
		for _, rec := range natstest.AuditRecords(t, js, "audit.lag.>") {
			if l := rec.GetAuditLag(); !l.GetCaughtUp() && l.GetFailingSince() != nil && strings.Contains(l.GetLastError(), "not open yet") {
				return true
			}
		}
		return false
	}
	waitfor.True(t, "an AuditLag record saying the store is not open", lagWithReason)
	resp, err := http.Get(api.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var apiErr auditapi.Error
	_ = json.NewDecoder(resp.Body).Decode(&apiErr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "store_not_ready" || !strings.Contains(apiErr.Message, "not open yet") ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /v1/events while the store is not open: %d %+v, want 503 store_not_ready with the reason", resp.StatusCode, apiErr)
	}

	// Traffic while the store cannot be opened: it waits in JetStream.
	const n = 25
	dispatcher := auditlog.NewEmitter(js, "dispatcher")
	for i := range n {
		id := fmt.Sprint("ev-down-", i)
		res, err := events.Publish(context.Background(), js, events.Event{ID: id, Type: "order.created", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range []*switchyardv1.AuditRecord{
			storetest.RoundAttempt(id, "erp", res.Sequence, 1, time.Now(), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
			storetest.RoundAttempt(id, "erp", res.Sequence, 2, time.Now(), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
			storetest.Rejection("rej-"+id, time.Now()),
		} {
			if err := dispatcher.Emit(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	natstest.PublishDeadLetter(t, js, storetest.RoundDeadLetter("ev-dl", "erp", 999, time.Now(), "").GetDeadLettered())

	proxy.Restore()
	waitfor.True(t, "the store open", func() bool { return a.Ready(context.Background()) == nil })
	for _, c := range []struct{ stream, name string }{
		{natsx.StreamAudit, natsx.ConsumerAuditor},
		{natsx.StreamEvents, natsx.ConsumerAuditorEvents},
		{natsx.StreamDeadLetters, natsx.ConsumerAuditorDeadLetters},
	} {
		waitfor.True(t, c.name+" acknowledged everything", func() bool {
			cons, err := js.Consumer(context.Background(), c.stream, c.name)
			if err != nil {
				return false
			}
			info, err := cons.Info(context.Background())
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		})
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for table, want := range map[string]int{"events": n, "attempts": 2 * n, "rejections": n, "dead_letters": 1, "deliveries": n + 1} {
		var got int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %d rows, want %d (everything that waited, once)", table, got, want)
		}
	}
	resp, err = http.Get(api.URL + "/v1/events?limit=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/events once the store is open: %d", resp.StatusCode)
	}
	waitfor.True(t, "an AuditLag record saying it caught up", func() bool {
		for _, rec := range natstest.AuditRecords(t, js, "audit.lag.>") {
			if rec.GetAuditLag().GetCaughtUp() {
				return true
			}
		}
		return false
	})
}

// A malformed database URL is an error at once (not retried), and does not
// repeat the URL.
func TestBadDatabaseURLFailsAtOnce(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	_, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{DatabaseURL: "postgres://u:hunter2@[::1/x", Logger: natstest.Logger(t)})
	// Never the password in what the error says.
	if !errors.Is(err, store.ErrBadDatabaseURL) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New with a malformed URL = %v", err)
	}
}

// The embedded store's directory is created; an error says what it is
// about once, without the caller's prefix repeated.
func TestEmbeddedStoreDirectory(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dir := filepath.Join(t.TempDir(), "not", "yet")
	a, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{DataDir: dir, Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatalf("New with a data dir to create: %v", err)
	}
	a.Close()
	if _, err := os.Stat(filepath.Join(dir, "audit.db")); err != nil {
		t.Errorf("audit.db not created: %v", err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{DataDir: file, Logger: natstest.Logger(t)})
	// The message is what is under test: said once, naming data_dir.
	if err == nil || strings.HasPrefix(err.Error(), "auditor:") || strings.Count(err.Error(), "audit store") != 1 || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("New with a file as data dir = %v, want one clear error naming data_dir", err)
	}
	_, err = auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{Logger: natstest.Logger(t)})
	if !errors.Is(err, auditor.ErrNoDataDir) {
		t.Errorf("New without data dir = %v, want ErrNoDataDir", err)
	}
}
