package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes a configuration file for the separately run auditor.
func writeConfig(t *testing.T, natsURL, databaseURL, opsListen string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	yaml := fmt.Sprintf("data_dir: %s\nnats:\n  url: %s\ndatabase_url: %q\nauditor:\n  listen: %s\nops:\n  listen: %s\nlog:\n  level: warn\n",
		filepath.Join(t.TempDir(), "data"), natsURL, databaseURL, freeAddr(t), opsListen)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readyz returns the status and body of the ops server's /readyz.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runInBackground runs the command until the test ends.
func runInBackground(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("auditor returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("auditor did not stop")
		}
	})
}

// Without database_url the separately run auditor refuses to start (two
// of them would each keep part of the log in a file of its own), before it
// connects to anything, unless -embedded-store says so.
func TestRefusesEmbeddedStoreUnlessAsked(t *testing.T) {
	t.Parallel()
	// Nothing listens at this NATS URL: the refusal comes first.
	cfg := writeConfig(t, "nats://127.0.0.1:1", "", "off")
	err := run(context.Background(), []string{"-config", cfg})
	// The message naming the flag to give is under test too.
	if !errors.Is(err, ErrNeedDatabaseURL) || !strings.Contains(err.Error(), "-embedded-store") {
		t.Errorf("run without database_url = %v, want ErrNeedDatabaseURL naming -embedded-store", err)
	}

	ns := natstest.Start(t)
	ops := freeAddr(t)
	runInBackground(t, "-config", writeConfig(t, ns.URL, "", ops), "-embedded-store")
	waitfor.True(t, "the auditor with -embedded-store ready", func() bool { code, _ := readyz(t, ops); return code == http.StatusOK })
}

// /readyz reflects the audit store: 503 with the reason while Postgres
// cannot be reached (the process runs all the same), 200 once it is open.
func TestReadyzFollowsTheStore(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	proxy, proxied := pgtest.NewProxy(t, pgtest.Schema(t))
	proxy.Cut()
	ops := freeAddr(t)
	runInBackground(t, "-config", writeConfig(t, ns.URL, proxied, ops))
	waitfor.True(t, "/readyz 503 naming the audit store", func() bool {
		code, body := readyz(t, ops)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "audit store") && strings.Contains(body, "not open yet")
	})
	proxy.Restore()
	waitfor.True(t, "/readyz 200 once the store is open", func() bool { code, _ := readyz(t, ops); return code == http.StatusOK })
}
