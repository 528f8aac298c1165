package cli_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// send-webhook signs with the source's secret from the configuration when
// no --secret is given, so the demo's DEMO_WEBHOOK_SECRET override is
// honoured, and a receiver holding that secret accepts the request.
func TestSendWebhookSignsWithTheConfiguredSecret(t *testing.T) {
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	verifier, err := signing.NewStandardWebhooks([]string{secret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var verr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, verr = verifier.Verify(signing.Request{Header: r.Header, Body: body, Now: time.Now()})
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cfg := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(cfg, []byte("sources:\n  - name: shop\n    scheme: standard-webhooks\n    secrets: [\"${SHOP_SECRET}\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHOP_SECRET", secret)
	var out bytes.Buffer
	err = cli.Execute(context.Background(), []string{"send-webhook", "-c", cfg, "--source", "shop", "--url", srv.URL}, &out, &out)
	if err != nil || verr != nil {
		t.Fatalf("send-webhook: %v, verification: %v\n%s", err, verr, out.String())
	}

	err = cli.Execute(context.Background(), []string{"send-webhook", "-c", cfg, "--source", "nope", "--url", srv.URL}, &out, &out)
	if !errors.Is(err, cli.ErrUnknownSource) {
		t.Errorf("unknown source: %v, want %v", err, cli.ErrUnknownSource)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := cli.Execute(context.Background(), []string{"version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "switchyard ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}
