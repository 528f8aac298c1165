package svcboot_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
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

// Go's profiles are served on the ops listener only with ops.pprof: a
// default process answers 404 under /debug/pprof/.
func TestOpsPprofOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		env, err := svcboot.Start(context.Background(), config.Config{DataDir: t.TempDir(), Ops: config.Ops{Pprof: enabled}},
			svcboot.Options{Name: "test", AllowEmbedded: true, LogOutput: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(env.Close)
		srv := httptest.NewServer(env.OpsHandler())
		t.Cleanup(srv.Close)
		for path, want := range map[string]string{
			"/debug/pprof/":                  "goroutine",
			"/debug/pprof/heap?debug=1":      "heap profile:",
			"/debug/pprof/goroutine?debug=1": "goroutine profile:",
			"/debug/pprof/cmdline":           "",
		} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case !enabled && resp.StatusCode != http.StatusNotFound:
				t.Errorf("ops.pprof off: GET %s = %d, want 404", path, resp.StatusCode)
			case enabled && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want)):
				t.Errorf("ops.pprof on: GET %s = %d, want 200 with %q:\n%.300s", path, resp.StatusCode, want, body)
			}
		}
		// /metrics is there either way.
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("ops.pprof %v: /metrics = %d", enabled, resp.StatusCode)
		}
	}
}

func noBuild(context.Context, *svcboot.Env) (svcboot.Service, error) {
	return nil, errors.New("must not be reached")
}

func TestMainCommandLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var out bytes.Buffer
	if err := svcboot.Main(ctx, "ingress", []string{"-help"}, &out, noBuild); err != nil || !strings.Contains(out.String(), "-ops-listen") {
		t.Errorf("-help: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := svcboot.Main(ctx, "ingress", []string{"-version"}, &out, noBuild); err != nil || !strings.HasPrefix(out.String(), "switchyard ingress ") {
		t.Errorf("-version: %v %q", err, out.String())
	}
	if err := svcboot.Main(ctx, "ingress", []string{"-cnofig", "x"}, &out, noBuild); !errors.Is(err, svcboot.ErrUsage) {
		t.Errorf("unknown flag: %v, want ErrUsage", err)
	}
	err := svcboot.Main(ctx, "ingress", []string{"-c", "/nonexistent.yaml"}, &out, noBuild)
	var pathErr *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pathErr) || pathErr.Path != "/nonexistent.yaml" {
		t.Errorf("-c with a missing file: %v", err)
	}
	// The Docker image's command line: a leading run, flags with two dashes.
	if err := svcboot.Main(ctx, "ingress", []string{"run", "--config", "/nonexistent.yaml"}, &out, noBuild); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run --config with a missing file: %v, want the file not found", err)
	}
	cfg := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(cfg, []byte("nats: {url: \"nats://127.0.0.1:1\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = svcboot.Main(ctx, "ingress", []string{"-c", cfg, "-ops-listen", "nowhere"}, &out, noBuild)
	var ve *config.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != "ops.listen" {
		t.Errorf("-ops-listen nowhere: %v, want an error naming ops.listen", err)
	}
}
