package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/switchyard/internal/app"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runApp runs the all-in-one until the test ends, and returns its context.
func runApp(t *testing.T, cfg config.Config, logOut io.Writer) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, logOut) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app.Run: %v", err)
		}
	})
	return ctx
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoQuickStart runs the all-in-one with the demo configuration (on
// free ports, with a fast generator) and checks what the README promises:
// the log shows a delivery, a retry and a dead letter, and the README's
// signed webhook is accepted.
func TestDemoQuickStart(t *testing.T) {
	cfg, err := config.Load("../../../../deployments/demo.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the demo config does not load: %v", err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Ingress.Listen = freeAddr(t)
	cfg.Auditor.Listen = freeAddr(t)
	cfg.Ops.Listen = freeAddr(t)
	partner := freeAddr(t)
	cfg.Demo.PartnerListen = partner
	cfg.Destinations[0].URL = "http://" + partner + "/hooks"
	cfg.Demo.GenerateEvery = config.Duration(100 * time.Millisecond)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	ctx := runApp(t, cfg, &logs)

	for _, want := range []string{"demo partner: received", "attempt failed; will retry", "dead-lettered", "ALERT [FIRING][critical] ", "dead-lettered on demo-partner"} {
		waitfor.True(t, "the log line "+want, func() bool { return strings.Contains(logs.String(), want) })
	}

	var out bytes.Buffer
	err = cli.Execute(ctx, []string{"send-webhook", "-c", "../../../../deployments/demo.yaml", "--url", "http://" + cfg.Ingress.Listen + "/webhooks/demo", "--id", "msg_quickstart"}, &out, &out)
	if err != nil || !strings.Contains(out.String(), "202 Accepted") {
		t.Fatalf("send-webhook: %v\n%s", err, out.String())
	}
	waitfor.True(t, "the webhook's delivery in the audit log", func() bool {
		resp, err := http.Get("http://" + cfg.Auditor.Listen + "/v1/events/demo:msg_quickstart")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ev struct {
			Attempts []struct {
				Outcome string `json:"outcome"`
			} `json:"attempts"`
		}
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&ev) == nil &&
			len(ev.Attempts) > 0 && ev.Attempts[len(ev.Attempts)-1].Outcome == "delivered"
	})
	if _, err := os.Stat(cfg.DataDir + "/audit.db"); err != nil {
		t.Errorf("the embedded audit store was not created: %v", err)
	}
}

// The all-in-one with database_url starts while Postgres is down: ingress
// accepts webhooks (the audit log catches up later), and the audit API says
// why it cannot answer yet.
func TestAllInOneStartsWhilePostgresIsDown(t *testing.T) {
	cfg, err := config.Load("../../../../deployments/demo.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	proxy, proxied := pgtest.NewProxy(t, pgtest.Schema(t))
	proxy.Cut()
	cfg.DatabaseURL = config.Secret(proxied)
	cfg.DataDir = t.TempDir()
	cfg.Ingress.Listen, cfg.Auditor.Listen, cfg.Ops.Listen = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.Demo.Enabled = false
	ctx := runApp(t, cfg, io.Discard)
	auditStatus := func() int {
		resp, err := http.Get("http://" + cfg.Auditor.Listen + "/v1/events/demo:msg_while_down")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitfor.True(t, "the audit API answering 503", func() bool { return auditStatus() == http.StatusServiceUnavailable })
	// Ingress starts listening a moment after the audit API; the first
	// answer is 202, a resend of the same webhook 200 "duplicate".
	waitfor.True(t, "ingress accepting the webhook while Postgres is down", func() bool {
		var out bytes.Buffer
		err := cli.Execute(ctx, []string{"send-webhook", "-c", "../../../../deployments/demo.yaml", "--url", "http://" + cfg.Ingress.Listen + "/webhooks/demo", "--id", "msg_while_down"}, &out, &out)
		return err == nil && (strings.Contains(out.String(), "202 Accepted") || strings.Contains(out.String(), "duplicate"))
	})
	proxy.Restore()
	waitfor.True(t, "the webhook in the audit log once Postgres is back", func() bool { return auditStatus() == http.StatusOK })
}

func TestCheckConfig(t *testing.T) {
	var out bytes.Buffer
	err := cli.Execute(context.Background(), []string{"check-config", "-c", "../../../../deployments/demo.yaml"}, &out, &out)
	if err != nil || !strings.Contains(out.String(), "is valid") {
		t.Fatalf("check-config: %v\n%s", err, out.String())
	}
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("destinations:\n  - name: Bad Name\n    url: ftp://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = cli.Execute(context.Background(), []string{"check-config", "-c", bad}, &out, &out)
	var ve *config.ValidationError
	fields := map[string]bool{}
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fields[p.Field] = true
		}
	}
	if !fields["destinations[0].name"] || !fields["destinations[0].url"] {
		t.Fatalf("want errors naming destinations[0].name and .url, got %v", err)
	}
}

// The Docker image's command line (tests/deployments_test.go pins it)
// starts the all-in-one: a missing file is reported as such.
func TestRunCommandLineOfTheImage(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := cli.Execute(context.Background(), []string{"run", "--config", t.TempDir() + "/switchyard.yaml"}, &out, &out)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("switchyard run --config <missing file>: %v, want the file not found\n%s", err, out.String())
	}
}
