package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor"
)

// env holds what a section started, stopped in reverse order by close.
type env struct {
	dir     string
	log     *slog.Logger
	closers []func()
}

func (e *env) onClose(f func()) { e.closers = append(e.closers, f) }

func (e *env) close() {
	for _, f := range slices.Backward(e.closers) {
		f()
	}
	e.closers = nil
}

// goRun runs f until the section closes; an error other than the
// context's is logged then.
func (e *env) goRun(ctx context.Context, name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	e.onClose(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.log.Error("stopped", slog.String("component", name), slog.Any("err", err))
		}
	})
}

// natsServer starts an embedded JetStream server with file storage under
// the section's directory and Switchyard's topology declared, as the
// all-in-one does.
func (e *env) natsServer(ctx context.Context) (*server.Server, error) {
	dir, err := os.MkdirTemp(e.dir, "nats-")
	if err != nil {
		return nil, err
	}
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	e.onClose(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	_, js, err := e.connect(ns)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := topology.Ensure(tctx, js, topology.Topology{}); err != nil {
		return nil, fmt.Errorf("declare topology: %w", err)
	}
	return ns, nil
}

// connect opens an in-process connection, as each service of the
// all-in-one has.
func (e *env) connect(ns *server.Server) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.ConnectEmbedded(ns, natsx.ConnectOptions{Name: "bench", Logger: e.log})
	if err != nil {
		return nil, nil, err
	}
	e.onClose(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, nil, err
	}
	return nc, js, nil
}

// auditor builds an auditor on its own connection, closed with the
// section; the caller runs what it needs of it.
func (e *env) auditor(ns *server.Server, cfg auditor.Config) (*auditor.Auditor, error) {
	_, js, err := e.connect(ns)
	if err != nil {
		return nil, err
	}
	aud, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), cfg)
	if err != nil {
		return nil, err
	}
	e.onClose(func() { _ = aud.Close() })
	return aud, nil
}

// serve serves h on a free loopback port until the section closes and
// returns its address.
func (e *env) serve(ctx context.Context, name string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	e.goRun(ctx, name, func(ctx context.Context) error {
		return httpserve.Serve(ctx, name, ln, h, slog.New(slog.DiscardHandler))
	})
	return ln.Addr().String(), nil
}

// natsAndPostgres starts a NATS server (natsServer) and creates a Postgres
// schema (postgresSchema) for a section that writes the audit log.
func (e *env) natsAndPostgres(ctx context.Context) (*server.Server, string, error) {
	ns, err := e.natsServer(ctx)
	if err != nil {
		return nil, "", err
	}
	dbURL, err := e.postgresSchema(ctx)
	return ns, dbURL, err
}

// defaultDatabaseURL is pgtest's default, the local test database.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// postgresSchema creates a fresh schema in the Postgres named by
// TEST_DATABASE_URL, dropped when the section closes, and returns a URL
// that selects it.
func (e *env) postgresSchema(ctx context.Context) (string, error) {
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = defaultDatabaseURL
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("Postgres is not reachable at TEST_DATABASE_URL: %w (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "bench_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("create schema: %w", err)
	}
	e.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			e.log.Error("drop schema", slog.String("schema", schema), slog.Any("err", err))
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			e.log.Error("drop schema", slog.String("schema", schema), slog.Any("err", err))
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("TEST_DATABASE_URL is not a URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// partner is a fast local partner: 204 at once, counting requests and,
// for bodies that carry their intended send time, the latency from it.
type partner struct {
	n         atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

func (p *partner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if sent, ok := sentTime(body); ok {
		d := time.Since(sent)
		p.mu.Lock()
		p.latencies = append(p.latencies, d)
		p.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
	p.n.Add(1)
}

var _ http.Handler = (*partner)(nil)

// reset forgets the latencies so far and returns the count.
func (p *partner) reset() int64 {
	p.mu.Lock()
	p.latencies = nil
	p.mu.Unlock()
	return p.n.Load()
}

func (p *partner) takeLatencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.latencies)
}

// waitUntil polls cond every 5 ms until it holds or d passes.
func waitUntil(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// sectionDir is a fresh directory for a section's files.
func sectionDir(root, name string) (string, error) {
	return os.MkdirTemp(root, filepath.Base(name)+"-")
}
