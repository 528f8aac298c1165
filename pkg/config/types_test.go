package config_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/pkg/config"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "10s", want: 10 * time.Second},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "2m", want: 2 * time.Minute},
		{in: "72h", want: 72 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "30d", want: 30 * 24 * time.Hour},
		{in: "0d", want: 0},
		{in: "36500d", want: 36500 * 24 * time.Hour},
		{in: " 10s ", want: 10 * time.Second},
		{in: "0", want: 0},
		{in: "", wantErr: true},
		{in: "   ", wantErr: true},
		{in: "10", wantErr: true},
		{in: "ten seconds", wantErr: true},
		{in: "5 s", wantErr: true},
		{in: "d", wantErr: true},
		{in: "1.5d", wantErr: true},
		{in: "-1d", wantErr: true},
		{in: "36501d", wantErr: true},
		{in: "7days", wantErr: true},
		{in: "1w", wantErr: true},
		{in: "99999999999999999999d", wantErr: true},
	}
	for _, tt := range tests {
		got, err := config.ParseDuration(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %s, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "use e.g.") && tt.in != "" && strings.TrimSpace(tt.in) != "" { // saying what is right is the behaviour
				t.Errorf("ParseDuration(%q) error %q does not say what would be right", tt.in, err)
			}
			continue
		}
		if err != nil || got.D() != tt.want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		text string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "500ms"},
		{90 * time.Second, "1m30s"},
		{36 * time.Hour, "36h0m0s"},
		{24 * time.Hour, "1d"},
		{7 * 24 * time.Hour, "7d"},
	}
	for _, tt := range tests {
		d := config.Duration(tt.d)
		if got := d.String(); got != tt.text {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.text)
		}
		b, err := d.MarshalText()
		if err != nil || string(b) != tt.text {
			t.Errorf("MarshalText = %q, %v", b, err)
		}
		var back config.Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("UnmarshalText(%q) = %s, %v; want %s", b, back, err, d)
		}
	}
	var d config.Duration = 42
	if err := d.UnmarshalText([]byte("later")); err == nil || d != 42 {
		t.Errorf("UnmarshalText(later) = %v and left %d; want an error and no change", err, d)
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "1048576", want: 1 << 20},
		{in: "0", want: 0},
		{in: "1MiB", want: 1 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "1MB", want: 1_000_000},
		{in: "2KB", want: 2000},
		{in: "3GiB", want: 3 << 30},
		{in: "1GB", want: 1_000_000_000},
		{in: "100B", want: 100},
		{in: "1 MiB", want: 1 << 20},
		{in: " 64KiB ", want: 64 << 10},
		{in: "8589934591GiB", want: 8589934591 << 30},
		{in: "", wantErr: "invalid size"},
		{in: "MiB", wantErr: "invalid size"},
		{in: "-1", wantErr: "invalid size"},
		{in: "-1MiB", wantErr: "invalid size"},
		{in: "1.5MiB", wantErr: `invalid size unit ".5MiB"`},
		{in: "1TB", wantErr: `invalid size unit "TB"`},
		{in: "1mib", wantErr: `invalid size unit "mib"`},
		{in: "1 M", wantErr: `invalid size unit "M"`},
		{in: "99999999999999999999", wantErr: "invalid size"},
		// Multiplying must not wrap around to a small or negative size.
		{in: "8589934592GiB", wantErr: "too large"},
		{in: "9223372036854775807KiB", wantErr: "too large"},
		{in: "9300000000000000000", wantErr: "invalid size"},
	}
	for _, tt := range tests {
		got, err := config.ParseByteSize(tt.in)
		if tt.wantErr != "" {
			// The message naming the bad part is the behaviour: a size
			// error reaches a person as a field's problem.
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseByteSize(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || int64(got) != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeText(t *testing.T) {
	t.Parallel()
	b := config.ByteSize(512 << 10)
	text, err := b.MarshalText()
	if err != nil || string(text) != "524288" {
		t.Errorf("MarshalText = %q, %v", text, err)
	}
	var back config.ByteSize
	if err := back.UnmarshalText(text); err != nil || back != b {
		t.Errorf("round trip = %d, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("lots")); err == nil {
		t.Error("UnmarshalText(lots) succeeded")
	}
}

func TestSizesInTheFile(t *testing.T) {
	t.Parallel()
	y := `
ingress:
  max_body: 512KiB
sources:
  - name: shop
    scheme: github
    secrets: [x]
    max_body: 2MB
  - name: other
    scheme: github
    secrets: [y]
`
	c, err := config.Parse([]byte(y), noEnv)
	if err != nil {
		t.Fatalf("Parse:\n%s\n%v", y, err)
	}
	if c.Ingress.MaxBody != 512<<10 {
		t.Errorf("ingress.max_body = %d", c.Ingress.MaxBody)
	}
	if c.Sources[0].MaxBody != 2_000_000 {
		t.Errorf("sources[0].max_body = %d", c.Sources[0].MaxBody)
	}
	if c.Sources[1].MaxBody != 512<<10 {
		t.Errorf("sources[1].max_body = %d, want ingress.max_body", c.Sources[1].MaxBody)
	}
}

// secretConfig holds a different secret in every Secret field.
func secretConfig(t *testing.T) (config.Config, []string) {
	t.Helper()
	c := validConfig(t)
	c.DatabaseURL = "postgres://switchyard:pg-password-1@db:5432/switchyard"
	c.Alerts.SlackWebhookURL = "https://hooks.slack.com/services/T0/B0/slack-token-2"
	c.Sources[0].Secrets = append(c.Sources[0].Secrets, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	c.Destinations[0].Headers = map[string]config.Secret{"Authorization": "Bearer header-token-3"}
	c.Auditor.AdminToken = "admin-token-7-0123456789"
	c.Destinations[0].Auth = config.Auth{Type: config.AuthBearer, Token: "bearer-token-4"}
	c.Destinations[0].Signing.StandardWebhooksSecrets = []config.Secret{"whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQh"}
	oauth, basic := c.Destinations[0], c.Destinations[0]
	oauth.Name, oauth.Subjects = "erp", []string{"events.erp.>"}
	oauth.Auth = config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: "https://id.example/token",
		ClientID: "sy", ClientSecret: "oauth-secret-5", ClientAuth: "auto"}
	basic.Name, basic.Subjects = "wms", []string{"events.wms.>"}
	basic.Auth = config.Auth{Type: config.AuthBasic, Username: "sy", Password: "basic-password-6"}
	c.Destinations = append(c.Destinations, oauth, basic)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c, []string{
		"pg-password-1", "slack-token-2", "header-token-3", "bearer-token-4", "oauth-secret-5", "basic-password-6", "admin-token-7-0123456789",
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "dGhpcyBpcyBhIG5ldyBzZWNyZXQh",
	}
}

func assertRedacted(t *testing.T, how, out string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) || strings.Contains(strings.ToLower(out), hex.EncodeToString([]byte(s))) {
			t.Errorf("%s reveals %q:\n%s", how, s, out)
		}
	}
	// The marker shows (cut by a precision, or in hex for %x), so the
	// secret fields were printed rather than skipped.
	if !strings.Contains(out, "[re") && !strings.Contains(strings.ToLower(out), hex.EncodeToString([]byte("[re"))) {
		t.Errorf("%s shows no [redacted] marker:\n%s", how, out)
	}
}

func TestSecretRedaction(t *testing.T) {
	t.Parallel()
	c, secrets := secretConfig(t)

	// Every verb, including wrong ones: fmt prints the value inside a
	// %!d(...) complaint without calling String. (%p is checked by fmt
	// before any method and by go vet; it cannot be redacted.)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%e", "%10.3s"} {
		assertRedacted(t, "fmt "+verb+" of Config", fmt.Sprintf(verb, c), secrets)
		assertRedacted(t, "fmt "+verb+" of *Config", fmt.Sprintf(verb, &c), secrets)
		assertRedacted(t, "fmt "+verb+" of a Secret", fmt.Sprintf(verb, c.DatabaseURL), secrets)
	}
	assertRedacted(t, "fmt of the sources", fmt.Sprint(c.Sources), secrets)
	assertRedacted(t, "fmt of the headers", fmt.Sprintf("%v", c.Destinations[0].Headers), secrets)

	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"slog JSON", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"slog text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		var buf bytes.Buffer
		log := slog.New(h.new(&buf))
		log.Info("loaded", slog.Any("config", c), slog.Any("database_url", c.DatabaseURL),
			"secret", c.Sources[0].Secrets[0], slog.Any("sources", c.Sources))
		assertRedacted(t, h.name, buf.String(), secrets)
	}

	js, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	assertRedacted(t, "json.Marshal", string(js), secrets)

	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}
	assertRedacted(t, "yaml.Marshal", string(y), secrets)

	if got := c.DatabaseURL.Reveal(); got != "postgres://switchyard:pg-password-1@db:5432/switchyard" {
		t.Errorf("Reveal() = %q", got)
	}
}

func TestSecretMethods(t *testing.T) {
	t.Parallel()
	s := config.Secret("hunter2")
	for name, got := range map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"LogValue": s.LogValue().String(),
	} {
		if got != "[redacted]" {
			t.Errorf("%s() = %q, want [redacted]", name, got)
		}
	}
	if b, err := s.MarshalText(); err != nil || string(b) != "[redacted]" {
		t.Errorf("MarshalText() = %q, %v", b, err)
	}
	// An empty secret prints as empty, so a missing one is visible.
	if got := config.Secret("").String(); got != "" {
		t.Errorf("empty Secret String() = %q, want empty", got)
	}
	var back config.Secret
	if err := back.UnmarshalText([]byte("hunter2")); err != nil || back.Reveal() != "hunter2" {
		t.Errorf("UnmarshalText = %q, %v", back.Reveal(), err)
	}
}

// TestParseErrorsDoNotRevealSecrets: a secret that fails validation, or sits
// next to a field that does, is never quoted in the error.
func TestParseErrorsDoNotRevealSecrets(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{
		"DATABASE_URL": "mysql://admin:db-password-9@db/switchyard",
		"SLACK_URL":    "slack-token-8",
		"TOKEN":        "header-token-7",
	})
	y := minimalYAML + "    concurrency: 0\n    headers:\n      Authorization: Bearer ${TOKEN}\n" +
		"database_url: ${DATABASE_URL}\nalerts:\n  slack_webhook_url: ${SLACK_URL}\n"
	_, err := config.Parse([]byte(y), env)
	checkErr(t, err, config.ErrInvalid, "database_url", "not shown")
	checkErr(t, err, config.ErrInvalid, "alerts.slack_webhook_url", "not shown")
	for _, s := range []string{"db-password-9", "slack-token-8", "header-token-7", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		if strings.Contains(err.Error(), s) { // never a secret in what the error says
			t.Errorf("error reveals %q:\n%v", s, err)
		}
	}
}
