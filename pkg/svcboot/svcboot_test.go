package svcboot_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/svcboot"
)

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
	if err := svcboot.Main(ctx, "ingress", []string{"-c", "/nonexistent.yaml"}, &out, noBuild); err == nil || !strings.Contains(err.Error(), "nonexistent.yaml") {
		t.Errorf("-c with a missing file: %v", err)
	}
	cfg := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(cfg, []byte("nats: {url: \"nats://127.0.0.1:1\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svcboot.Main(ctx, "ingress", []string{"-c", cfg, "-ops-listen", "nowhere"}, &out, noBuild); err == nil || !strings.Contains(err.Error(), "ops.listen") {
		t.Errorf("-ops-listen nowhere: %v, want an error naming ops.listen", err)
	}
}
