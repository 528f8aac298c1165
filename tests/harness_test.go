package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// system is the four services running against one embedded NATS server and
// a fresh Postgres schema, each on its own NATS connection as if they were
// separate processes.
type system struct {
	NATS     *natstest.Server
	JS       jetstream.JetStream
	Ingress  *httptest.Server
	AuditAPI *httptest.Server
	// DatabaseURL is the audit log's Postgres schema.
	DatabaseURL string
}

// auditDB connects to an audit log's Postgres schema until the test ends.
func auditDB(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect to the audit database: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// queryRow runs a query against the audit log's Postgres schema.
func (s *system) queryRow(t *testing.T, sql string, dest ...any) error {
	t.Helper()
	conn := auditDB(t, s.DatabaseURL)
	defer conn.Close(context.Background())
	return conn.QueryRow(context.Background(), sql).Scan(dest...)
}

// settled reports whether a destination's consumer has nothing pending and
// nothing in flight or waiting for a retry.
func (s *system) settled(t *testing.T, destination string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.JS.Consumer(ctx, natsx.StreamEvents, dispatcher.ConsumerName(destination))
	if err != nil {
		t.Fatalf("consumer of %s: %v", destination, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer of %s: %v", destination, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

// assertNotInAuditLog fails if any row of any audit table contains one of
// the strings (secrets, signatures).
func (s *system) assertNotInAuditLog(t *testing.T, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	conn := auditDB(t, s.DatabaseURL)
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 5 {
		t.Fatalf("list audit tables: %v (%d)", err, len(tables))
	}
	for _, table := range tables {
		for _, secret := range secrets {
			var n int
			// Row text includes bytea as hex: check the text form and the
			// hex form of each secret.
			q := "SELECT count(*) FROM " + pgx.Identifier{table}.Sanitize() + " t WHERE t::text LIKE '%' || $1 || '%' OR t::text LIKE '%' || $2 || '%'"
			if err := conn.QueryRow(ctx, q, secret, fmt.Sprintf("%x", secret)).Scan(&n); err != nil {
				t.Fatalf("scan %s: %v", table, err)
			}
			if n != 0 {
				t.Errorf("%d rows of %s contain a secret or signature", n, table)
			}
		}
	}
}

// mustStandard is a Standard Webhooks signer with the vector secret.
func mustStandard(t *testing.T) *signing.StandardWebhooks {
	t.Helper()
	sw, err := signing.NewStandardWebhooks([]string{vectorSecret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

// options for startSystem.
type options struct {
	// Config is the configuration file's content; the harness points it at
	// its NATS server and Postgres schema and shortens the alert timings.
	Config config.Config
	// Now is ingress's clock (signature tolerance).
	Now func() time.Time
	// SlackURL is the notifier's webhook; empty logs alerts.
	SlackURL string
}

// startSystem runs the services until the test ends. Each is built as its
// binary and the all-in-one build it (New with FromConfig), from one
// configuration, so the tests run what is deployed.
func startSystem(t *testing.T, o options) *system {
	t.Helper()
	ns := natstest.Start(t)
	dbURL := pgtest.Schema(t)
	cfg := o.Config
	cfg.NATS.URL = ns.URL
	cfg.DatabaseURL = config.Secret(dbURL)
	cfg.Alerts.SlackWebhookURL = config.Secret(o.SlackURL)
	// A short group wait: the end-to-end tests wait for real time.
	cfg.Alerts.GroupWait = config.Duration(100 * time.Millisecond)
	cfg.Alerts.EvaluationInterval = config.Duration(200 * time.Millisecond)
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	_, js := ns.Connect(t)
	log := natstest.Logger(t)
	// One connection per service, as if they were separate processes. They
	// are opened before the cleanup that stops the services is registered,
	// so that cleanups (last in, first out) stop the services first.
	_, ajs := ns.Connect(t)
	_, djs := ns.Connect(t)
	_, njs := ns.Connect(t)
	_, ijs := ns.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	goRun := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s stopped: %v", name, err)
			}
		}()
	}

	// With telemetry.traces.endpoint, each service its own tracer
	// provider, as each process has (svcboot.Env.Tracing).
	tracing := func(service string) *telemetry.Tracing {
		tr, err := telemetry.New(cfg.Telemetry.Traces, service, nil, log)
		if err != nil {
			t.Fatalf("tracing: %v", err)
		}
		t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
		return tr
	}

	ac := auditor.FromConfig(cfg, log.With("service", "auditor"), nil)
	ac.Tracing = tracing("auditor")
	aud, err := auditor.New(ajs, auditlog.NewEmitter(ajs, "auditor"), ac)
	if err != nil {
		t.Fatalf("auditor: %v", err)
	}
	t.Cleanup(func() { _ = aud.Close() })
	goRun("auditor", aud.RunWriter)
	auditAPI := httptest.NewServer(aud.Handler())
	t.Cleanup(auditAPI.Close)

	dc := dispatcher.FromConfig(cfg, log.With("service", "dispatcher"), nil)
	dc.Tracing = tracing("dispatcher")
	dc.Tuning = dispatcher.Tuning{
		FetchWait: 250 * time.Millisecond,
		// Deliveries cut off at the end of a test are handed back at once.
		ShutdownGrace: 2 * time.Second,
	}
	disp, err := dispatcher.New(djs, auditlog.NewEmitter(djs, "dispatcher"), dc)
	if err != nil {
		t.Fatalf("dispatcher: %v", err)
	}
	if err := disp.Provision(ctx); err != nil {
		t.Fatalf("provision destinations: %v", err)
	}
	goRun("dispatcher", disp.Run)

	notif, err := notifier.New(njs, auditlog.NewEmitter(njs, "notifier"), notifier.FromConfig(cfg, log.With("service", "notifier"), nil))
	if err != nil {
		t.Fatalf("notifier: %v", err)
	}
	goRun("notifier", notif.Run)

	ic := ingress.FromConfig(cfg, log.With("service", "ingress"), nil)
	ic.Now = o.Now
	ic.Tracing = tracing("ingress")
	ing, err := ingress.New(ijs, auditlog.NewEmitter(ijs, "ingress"), ic)
	if err != nil {
		t.Fatalf("ingress: %v", err)
	}
	// Served by the test's HTTP server instead of Run: what Run does
	// around serving is done here.
	if err := ing.Provision(ctx); err != nil {
		t.Fatalf("provision ingress: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ing.Close(cctx)
	})
	ingSrv := httptest.NewServer(ing.Handler())
	t.Cleanup(ingSrv.Close)

	return &system{NATS: ns, JS: js, Ingress: ingSrv, AuditAPI: auditAPI, DatabaseURL: dbURL}
}

// auditedEvent is GET /v1/events/{id}.
type auditedEvent struct {
	ID       string `json:"id"`
	Subject  string `json:"subject"`
	Payload  string `json:"payload"`
	Attempts []struct {
		Destination string `json:"destination"`
		Attempt     int    `json:"attempt"`
		StatusCode  int    `json:"status_code"`
		Outcome     string `json:"outcome"`
		Final       bool   `json:"final"`
	} `json:"attempts"`
	DeadLetters []struct {
		Destination string `json:"destination"`
		Attempts    int    `json:"attempts"`
		Reason      string `json:"reason"`
	} `json:"dead_letters"`
}

// getJSON fetches a URL into v and returns the status code.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", url, body, err)
		}
	}
	return resp.StatusCode
}

// partner is a fake partner API. Respond decides each answer from the
// request's attempt number (1-based, per event id).
type partner struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string][]*recorded
	respond  func(attempt int) int
}

type recorded struct {
	header http.Header
	body   []byte
}

func newPartner(t *testing.T, respond func(attempt int) int) *partner {
	p := &partner{requests: map[string][]*recorded{}, respond: respond}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.requests[id] = append(p.requests[id], &recorded{header: r.Header.Clone(), body: body})
		n := len(p.requests[id])
		p.mu.Unlock()
		w.WriteHeader(p.respond(n))
	}))
	t.Cleanup(p.Close)
	return p
}

// got returns the requests received for an event id.
func (p *partner) got(id string) []*recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*recorded(nil), p.requests[id]...)
}

// total is the number of requests for all events.
func (p *partner) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, rs := range p.requests {
		n += len(rs)
	}
	return n
}

func always(code int) func(int) int { return func(int) int { return code } }

// destination is a test destination with a fast schedule.
func destination(name, url string, subjects []string, maxAttempts int) config.Destination {
	return config.Destination{
		Name:     name,
		URL:      url,
		Subjects: subjects,
		Timeout:  config.Duration(500 * time.Millisecond),
		Retry: config.Retry{
			Backoff:     []config.Duration{config.Duration(time.Second)},
			MaxAttempts: maxAttempts,
		},
		AllowPrivateNetwork: true,
	}
}
