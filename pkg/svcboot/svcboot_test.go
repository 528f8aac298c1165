package svcboot_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
)

// /readyz is NATS connected and every added check passing; a failing check
// is named in the 503.
func TestReadyChecks(t *testing.T) {
	t.Parallel()
	env, err := svcboot.Start(context.Background(), config.Config{DataDir: t.TempDir()},
		svcboot.Options{Name: "test", AllowEmbedded: true, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		env.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz without checks: %d %s", code, body)
	}
	var ok atomic.Bool
	env.AddReadyCheck("audit store", func(context.Context) error {
		if ok.Load() {
			return nil
		}
		return errors.New("not open yet")
	})
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit store: not open yet") {
		t.Errorf("/readyz with a failing check: %d %s, want 503 naming it", code, body)
	}
	ok.Store(true)
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz with every check passing: %d %s", code, body)
	}
}
