package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
)

const demoFile = "../../deployments/demo.yaml"

func TestParseMinimal(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(minimalYAML), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	src, ok := c.Source("shop")
	if !ok {
		t.Fatal(`Source("shop") not found`)
	}
	if src.Scheme != "standard-webhooks" || len(src.Secrets) != 1 || src.Secrets[0].Reveal() != testSecret {
		t.Errorf("source = %+v", src)
	}
	if src.Tolerance != config.DefaultTolerance || src.MaxBody != config.DefaultMaxBody {
		t.Errorf("source defaults: tolerance %s, max_body %d", src.Tolerance, src.MaxBody)
	}
	if _, ok := c.Source("crm"); ok {
		t.Error(`Source("crm") found a destination`)
	}
	if len(c.Destinations) != 1 {
		t.Fatalf("%d destinations, want 1", len(c.Destinations))
	}
	d := c.Destinations[0]
	if d.Name != "crm" || d.URL != "https://crm.example.com/hooks" || !slices.Equal(d.Subjects, []string{"events.order.>"}) {
		t.Errorf("destination = %+v", d)
	}
	if d.Timeout != config.DefaultTimeout || d.Retry.MaxAttempts != config.DefaultMaxAttempts ||
		!slices.Equal(d.Retry.Backoff, config.DefaultBackoff()) || d.Concurrency != config.DefaultConcurrency ||
		d.MaxAckPending != config.DefaultMaxAckPending {
		t.Errorf("destination defaults not applied: %+v", d)
	}
}

func TestLoadDemo(t *testing.T) {
	t.Parallel()
	c, err := config.Load(demoFile, noEnv)
	if err != nil {
		t.Fatalf("Load(%s): %v", demoFile, err)
	}
	if !c.Demo.Enabled || c.Demo.GenerateEvery != config.Duration(5*time.Second) || c.Demo.PartnerListen != "127.0.0.1:9999" {
		t.Errorf("demo = %+v", c.Demo)
	}
	if c.NATS.URL != "" || c.NATS.Replicas != 1 {
		t.Errorf("nats = %+v, want the embedded server", c.NATS)
	}
	if c.Alerts.SlackWebhookURL != "" {
		t.Errorf("slack_webhook_url = %q, want empty from ${SLACK_WEBHOOK_URL:-}", c.Alerts.SlackWebhookURL.Reveal())
	}
	src, ok := c.Source("demo")
	if !ok {
		t.Fatal("source demo missing")
	}
	if got := src.Secrets[0].Reveal(); got != testSecret {
		t.Errorf("demo secret = %q, want the default from the file", got)
	}
	d := c.Destinations[0]
	if d.Name != "demo-partner" || d.Timeout != config.Duration(time.Second) || d.Retry.MaxAttempts != 3 || d.Concurrency != 4 || !d.AllowPrivateNetwork {
		t.Errorf("destination = %+v", d)
	}
	if got, want := d.Retry.Backoff, []config.Duration{config.Duration(2 * time.Second), config.Duration(4 * time.Second)}; !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}

	// The environment overrides the defaults written in the file.
	c, err = config.Load(demoFile, envMap(map[string]string{
		"DEMO_WEBHOOK_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
		"SLACK_WEBHOOK_URL":   "https://hooks.slack.com/services/T0/B0/x",
	}))
	if err != nil {
		t.Fatalf("Load with environment: %v", err)
	}
	if got := c.Sources[0].Secrets[0].Reveal(); got != "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" {
		t.Errorf("secret = %q, want the environment's", got)
	}
	if got := c.Alerts.SlackWebhookURL.Reveal(); got != "https://hooks.slack.com/services/T0/B0/x" {
		t.Errorf("slack_webhook_url = %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), noEnv)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error = %v, want fs.ErrNotExist", err)
	}

	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(minimalYAML, "events.order.>", "orders.>", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path, noEnv)
	checkErr(t, err, config.ErrInvalid, "destinations[0].subjects[0]", "must start with events. or webhooks.")
	// Naming the file is part of the message a person reads.
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the file %s: %v", path, err)
	}
}

// TestParse covers what only the YAML layer can get wrong: syntax, unknown
// keys, types, and the field paths and lines in its errors.
func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr error
		field   string
		problem string
	}{
		{name: "minimal", yaml: minimalYAML},
		{name: "no sources or destinations", yaml: "log: {level: debug}\n"},
		{name: "empty file", yaml: "", wantErr: config.ErrInvalid, problem: "empty"},
		{name: "only comments", yaml: "# nothing here\n", wantErr: config.ErrInvalid, problem: "empty"},
		{name: "syntax error", yaml: "sources: [\n", wantErr: config.ErrInvalid},
		{name: "tab indentation", yaml: "log:\n\tformat: json\n", wantErr: config.ErrInvalid},
		{name: "not a mapping", yaml: "- a\n- b\n", wantErr: config.ErrInvalid},
		{
			name:    "unknown top-level key",
			yaml:    minimalYAML + "destination: []\n",
			wantErr: config.ErrInvalid, field: "destination", problem: "field destination not found (check the spelling",
		},
		{
			name:    "unknown nested key",
			yaml:    strings.Replace(minimalYAML, "    url:", "    retires: 3\n    url:", 1),
			wantErr: config.ErrInvalid, field: "destinations[0].retires", problem: "line 8: field retires not found",
		},
		{
			name:    "misspelt key inside retry",
			yaml:    minimalYAML + "    retry:\n      max_attempt: 3\n",
			wantErr: config.ErrInvalid, field: "destinations[0].retry.max_attempt", problem: "not found",
		},
		{
			name:    "wrong type",
			yaml:    minimalYAML + "    concurrency: lots\n",
			wantErr: config.ErrInvalid, field: "destinations[0].concurrency", problem: "found a text value, want a number",
		},
		{
			name:    "bad duration",
			yaml:    minimalYAML + "    timeout: 5 seconds\n",
			wantErr: config.ErrInvalid, field: "destinations[0].timeout", problem: `line 10: invalid duration "5 seconds"`,
		},
		{
			name:    "duration without unit",
			yaml:    minimalYAML + "    timeout: 5\n",
			wantErr: config.ErrInvalid, field: "destinations[0].timeout", problem: "invalid duration",
		},
		{
			name:    "duration as a list",
			yaml:    minimalYAML + "    timeout: [5s]\n",
			wantErr: config.ErrInvalid, field: "destinations[0].timeout", problem: "not !!seq",
		},
		{
			name:    "bad backoff step in a block list",
			yaml:    minimalYAML + "    retry:\n      backoff:\n        - 10s\n        - 30 s\n",
			wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff[1]", problem: `line 13: invalid duration "30 s"`,
		},
		{
			name: "bad backoff step in a flow list",
			yaml: minimalYAML + "    retry: {backoff: [10s, soon]}\n",
			// A flow mapping on one line is reported by its first key.
			wantErr: config.ErrInvalid, field: "destinations[0].retry", problem: `line 10: invalid duration "soon"`,
		},
		{
			name:    "backoff step shorter than the timeout",
			yaml:    minimalYAML + "    timeout: 10s\n    retry: {backoff: [5s, 30s]}\n",
			wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff[0]", problem: "(5s) must be at least timeout (10s) + 1s",
		},
		{
			name:    "bad size unit",
			yaml:    "ingress:\n  max_body: 1TB\n",
			wantErr: config.ErrInvalid, field: "ingress.max_body", problem: `line 2: invalid size unit "TB"`,
		},
		{name: "sizes", yaml: "ingress:\n  max_body: 512KiB\n" + strings.Replace(minimalYAML, "    scheme:", "    max_body: 2MB\n    scheme:", 1)},
		{
			name:    "empty backoff list",
			yaml:    minimalYAML + "    retry:\n      backoff: []\n",
			wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff", problem: "at least one step",
		},
		{
			name:    "every problem reported, with the line in the file",
			yaml:    "# Comments and blank lines shift the re-encoded text.\n\n\n" + minimalYAML + "\n\n    concurency: 4\n    timeout: 1x\n",
			wantErr: config.ErrInvalid, field: "destinations[0].concurency", problem: "line 15: field concurency not found",
		},
		{
			name:    "a later problem keeps its line too",
			yaml:    "# Comments and blank lines shift the re-encoded text.\n\n\n" + minimalYAML + "\n\n    concurency: 4\n    timeout: 1x\n",
			wantErr: config.ErrInvalid, field: "destinations[0].timeout", problem: `line 16: invalid duration "1x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), noEnv)
			checkErr(t, err, tt.wantErr, tt.field, tt.problem)
		})
	}
}

func TestParseReportsEveryYAMLProblem(t *testing.T) {
	t.Parallel()
	y := "\n# a comment\nlogg: {}\nnats:\n  replicaz: 3\n  events_max_age: forever\n"
	_, err := config.Parse([]byte(y), noEnv)
	for _, want := range []string{
		"logg: line 3: field logg not found",
		"nats.replicaz: line 5: field replicaz not found",
		`nats.events_max_age: line 6: invalid duration "forever"`,
	} {
		checkErr(t, err, config.ErrInvalid, "", want)
	}
	// The message is for a person: no Go type names.
	if strings.Contains(err.Error(), "config.") {
		t.Errorf("error mentions Go type names: %v", err)
	}
}

func TestInterpolation(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{
		"SHOP_SECRET": testSecret,
		"CRM_URL":     "https://crm.example.com/hooks",
		"CRM_HOST":    "crm.example.com",
		"CONCURRENCY": "16",
		"PRIVATE":     "true",
		"TIMEOUT":     "2s",
		"EMPTY":       "",
		"BATCH":       "250",
	})
	tests := []struct {
		name    string
		yaml    string
		check   func(t *testing.T, c config.Config)
		wantErr error
		field   string
		problem string
		// more are other fields the error must name, with their problem.
		more map[string]string
	}{
		{
			name: "whole value",
			yaml: strings.Replace(minimalYAML, `"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`, `"${SHOP_SECRET}"`, 1),
			check: func(t *testing.T, c config.Config) {
				if got := c.Sources[0].Secrets[0].Reveal(); got != testSecret {
					t.Errorf("secret = %q", got)
				}
			},
		},
		{
			name: "inside a value",
			yaml: strings.Replace(minimalYAML, "https://crm.example.com/hooks", "https://${CRM_HOST}:8443/v1/hooks", 1),
			check: func(t *testing.T, c config.Config) {
				if got := c.Destinations[0].URL; got != "https://crm.example.com:8443/v1/hooks" {
					t.Errorf("url = %q", got)
				}
			},
		},
		{
			name: "default when unset",
			yaml: strings.Replace(minimalYAML, "https://crm.example.com/hooks", "${NOT_SET:-http://127.0.0.1:9999/hooks}", 1),
			check: func(t *testing.T, c config.Config) {
				if got := c.Destinations[0].URL; got != "http://127.0.0.1:9999/hooks" {
					t.Errorf("url = %q", got)
				}
			},
		},
		{
			name: "default when empty",
			yaml: minimalYAML + "log:\n  level: ${EMPTY:-warn}\n",
			check: func(t *testing.T, c config.Config) {
				if c.Log.Level != "warn" {
					t.Errorf("level = %q", c.Log.Level)
				}
			},
		},
		{
			name: "set value wins over the default",
			yaml: strings.Replace(minimalYAML, "https://crm.example.com/hooks", "${CRM_URL:-http://127.0.0.1:9999/hooks}", 1),
			check: func(t *testing.T, c config.Config) {
				if got := c.Destinations[0].URL; got != "https://crm.example.com/hooks" {
					t.Errorf("url = %q", got)
				}
			},
		},
		{
			name: "empty default",
			yaml: minimalYAML + "alerts:\n  slack_webhook_url: ${NOT_SET:-}\n",
			check: func(t *testing.T, c config.Config) {
				if c.Alerts.SlackWebhookURL != "" {
					t.Errorf("slack_webhook_url = %q", c.Alerts.SlackWebhookURL.Reveal())
				}
			},
		},
		{
			name: "plain reference becomes a number",
			yaml: minimalYAML + "    concurrency: ${CONCURRENCY}\nauditor:\n  batch_size: ${BATCH}\n",
			check: func(t *testing.T, c config.Config) {
				if c.Destinations[0].Concurrency != 16 || c.Auditor.BatchSize != 250 {
					t.Errorf("concurrency = %d, batch_size = %d", c.Destinations[0].Concurrency, c.Auditor.BatchSize)
				}
			},
		},
		{
			name: "plain reference becomes a bool",
			yaml: minimalYAML + "    allow_private_network: ${PRIVATE}\n",
			check: func(t *testing.T, c config.Config) {
				if !c.Destinations[0].AllowPrivateNetwork {
					t.Error("allow_private_network = false")
				}
			},
		},
		{
			name: "default becomes a number",
			yaml: minimalYAML + "    concurrency: ${NOT_SET:-32}\n",
			check: func(t *testing.T, c config.Config) {
				if c.Destinations[0].Concurrency != 32 {
					t.Errorf("concurrency = %d", c.Destinations[0].Concurrency)
				}
			},
		},
		{
			name: "duration from the environment",
			yaml: minimalYAML + "    timeout: ${TIMEOUT}\n",
			check: func(t *testing.T, c config.Config) {
				if c.Destinations[0].Timeout != config.Duration(2*time.Second) {
					t.Errorf("timeout = %s", c.Destinations[0].Timeout)
				}
			},
		},
		{
			name:    "quoted reference stays a string",
			yaml:    minimalYAML + "    concurrency: \"${CONCURRENCY}\"\n",
			wantErr: config.ErrInvalid, field: "destinations[0].concurrency", problem: "found a text value, want a number",
		},
		{
			name: "$$ is a literal $",
			yaml: strings.Replace(minimalYAML, "https://crm.example.com/hooks", "https://crm.example.com/hooks?q=$${CRM_HOST}&p=$$1", 1),
			check: func(t *testing.T, c config.Config) {
				if got := c.Destinations[0].URL; got != "https://crm.example.com/hooks?q=${CRM_HOST}&p=$1" {
					t.Errorf("url = %q", got)
				}
			},
		},
		{
			name: "a lone $ is kept",
			yaml: minimalYAML + "    headers:\n      X-Price: \"5$ or $5 or $PATH\"\n",
			check: func(t *testing.T, c config.Config) {
				if got := c.Destinations[0].Headers["X-Price"].Reveal(); got != "5$ or $5 or $PATH" {
					t.Errorf("header = %q", got)
				}
			},
		},
		{
			name: "keys are not interpolated",
			yaml: minimalYAML + "    headers:\n      X-${CRM_HOST}: v\n",
			check: func(t *testing.T, c config.Config) {
				if _, ok := c.Destinations[0].Headers["X-${CRM_HOST}"]; !ok {
					t.Errorf("headers = %v", c.Destinations[0].Headers)
				}
			},
		},
		{
			name:    "missing variable",
			yaml:    strings.Replace(minimalYAML, `"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`, `"${SHOP_WEBHOOK_SECRET}"`, 1),
			wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "environment variable SHOP_WEBHOOK_SECRET is not set",
		},
		{
			name:    "missing variable in a map",
			yaml:    minimalYAML + "    headers:\n      Authorization: Bearer ${CRM_TOKEN}\n",
			wantErr: config.ErrInvalid, field: "destinations[0].headers.Authorization", problem: "CRM_TOKEN is not set",
		},
		{
			name:    "set but empty secret",
			yaml:    strings.Replace(minimalYAML, `"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`, `"${EMPTY}"`, 1),
			wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "is empty (is its environment variable set?)",
		},
		{
			name:    "unclosed reference",
			yaml:    minimalYAML + "log:\n  level: ${LEVEL\n",
			wantErr: config.ErrInvalid, field: "log.level", problem: "unclosed ${",
		},
		{
			name:    "bad variable name",
			yaml:    minimalYAML + "log:\n  level: ${1LEVEL}\n",
			wantErr: config.ErrInvalid, field: "log.level", problem: "${1LEVEL} is not a valid environment variable reference",
		},
		{
			name:    "empty reference",
			yaml:    minimalYAML + "log:\n  level: ${}\n",
			wantErr: config.ErrInvalid, field: "log.level", problem: "not a valid environment variable reference",
		},
		{
			name:    "every missing variable reported",
			yaml:    minimalYAML + "database_url: ${DATABASE_URL}\nalerts:\n  slack_webhook_url: ${SLACK_URL}\n",
			wantErr: config.ErrInvalid, field: "alerts.slack_webhook_url", problem: "environment variable SLACK_URL is not set",
			more: map[string]string{"database_url": "environment variable DATABASE_URL is not set"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Parse([]byte(tt.yaml), env)
			checkErr(t, err, tt.wantErr, tt.field, tt.problem)
			for field, problem := range tt.more {
				checkErr(t, err, tt.wantErr, field, problem)
			}
			if tt.wantErr != nil {
				var ve *config.ValidationError
				if errors.As(err, &ve) && !hasField(ve.Problems, tt.field) {
					t.Errorf("no problem for field %q: %v", tt.field, err)
				}
				return
			}
			tt.check(t, c)
		})
	}
}

// TestInterpolationValuesAreData: a value from the environment is one
// scalar, whatever YAML syntax it contains; it cannot add keys, anchors or
// documents, and secrets come through byte for byte.
func TestInterpolationValuesAreData(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"s3cr3t: with a colon",
		"with # a comment",
		"*alias",
		"&anchor value",
		"!!int 5",
		"[a, b]",
		"{a: b}",
		"'quoted'",
		`"double"`,
		"- item",
		"line one\nline two: x\n---\nlog: {}",
		"  padded  ",
		"123",
		"true",
		"$${NOT_EXPANDED_TWICE}",
		"${NESTED}",
	} {
		env := envMap(map[string]string{"V": v, "NESTED": "no"})
		y := minimalYAML + "    headers:\n      Authorization: ${V}\n"
		c, err := config.Parse([]byte(y), env)
		if err != nil {
			t.Errorf("value %q: %v", v, err)
			continue
		}
		if got := c.Destinations[0].Headers["Authorization"].Reveal(); got != v {
			t.Errorf("value %q came through as %q", v, got)
		}

		_, err = config.Parse([]byte(minimalYAML+"log:\n  level: ${V}\n"), env)
		checkErr(t, err, config.ErrInvalid, "log.level", "must be debug, info, warn or error")
		if problems := fieldProblems(t, err); len(problems) != 1 {
			t.Errorf("value %q: %d problems, want only log.level: %v", v, len(problems), err)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	in := config.Config{
		Sources:      []config.Source{{Name: "shop"}},
		Destinations: []config.Destination{{Name: "crm"}},
	}
	got := in.WithDefaults()
	want := config.Config{
		Log: config.Log{Format: "text", Level: "info"},
		Telemetry: config.Telemetry{Traces: config.Traces{
			SampleRatio: 1, ServiceName: "switchyard", QueueSize: 2048, ExportTimeout: config.Duration(5 * time.Second),
		}},
		DataDir: "./data",
		NATS: config.NATS{
			Replicas:        1,
			EventsMaxAge:    config.Duration(7 * 24 * time.Hour),
			DuplicateWindow: config.Duration(2 * time.Minute),
		},
		Ops: config.Ops{Listen: "127.0.0.1:9090"},
		Ingress: config.Ingress{
			Listen:             ":8080",
			MaxBody:            1<<20 - 8<<10,
			MaxBytesInFlight:   64 << 20,
			ReadTimeout:        config.Duration(10 * time.Second),
			PublishTimeout:     config.Duration(5 * time.Second),
			IdempotencyHorizon: config.Duration(72 * time.Hour),
			MaxBatch:           500,
			RejectionAudit:     config.RejectionAudit{PerSecond: 1, Burst: 100, SummaryInterval: config.Duration(time.Minute)},
			Sync:               config.IngressSync{MaxWait: config.Duration(30 * time.Second), DefaultWait: config.Duration(5 * time.Second)},
			PollLeaseTTL:       config.Duration(30 * time.Second),
		},
		Auditor: config.Auditor{Listen: "127.0.0.1:8081", BatchSize: 500, LagThreshold: config.Duration(30 * time.Second),
			Retention: config.AuditRetention{Payloads: config.DefaultPayloadRetention, Records: config.DefaultRecordRetention,
				Interval: config.Duration(time.Hour), BatchSize: 1000}},
		Sources: []config.Source{{
			Name:      "shop",
			Tolerance: config.Duration(5 * time.Minute),
			MaxBody:   1<<20 - 8<<10,
			RateLimit: config.SourceRateLimit{PerSecond: 50, Burst: 100},
		}},
		Destinations: []config.Destination{{
			Name:          "crm",
			Timeout:       config.Duration(5 * time.Second),
			Concurrency:   8,
			MaxAckPending: 10000,
			Retry: config.Retry{
				Backoff: []config.Duration{
					config.Duration(10 * time.Second), config.Duration(30 * time.Second), config.Duration(2 * time.Minute),
					config.Duration(10 * time.Minute), config.Duration(30 * time.Minute),
				},
				MaxAttempts: 6,
			},
			Breaker: config.Breaker{
				ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, Window: config.Duration(time.Minute),
				Cooldown: config.Duration(30 * time.Second), MaxCooldown: config.Duration(5 * time.Minute),
			},
			Mode:      config.ModeAsync,
			Transform: config.Transform{Timeout: config.DefaultTransformTimeout, MaxOutput: config.DefaultTransformMaxOutput},
		}},
		Demo: config.Demo{PartnerListen: "127.0.0.1:9999"},
		// TestAlertsWithDefaults spells these out.
		Alerts: config.Alerts{}.WithDefaults(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithDefaults() =\n%+v\nwant\n%+v", got, want)
	}
	if in.Sources[0].Tolerance != 0 || in.Destinations[0].Timeout != 0 {
		t.Error("WithDefaults changed the receiver's sources or destinations")
	}
	if !reflect.DeepEqual(got.WithDefaults(), got) {
		t.Error("WithDefaults is not idempotent")
	}
}

func TestWithDefaultsKeepsSetValues(t *testing.T) {
	t.Parallel()
	in := config.Config{
		Log: config.Log{Format: "json", Level: "debug"},
		Telemetry: config.Telemetry{Traces: config.Traces{
			Endpoint: "http://collector:4318/v1/traces", SampleRatio: 0.25, ServiceName: "sy", QueueSize: 10, ExportTimeout: config.Duration(time.Second),
		}},
		DataDir: "/var/lib/switchyard",
		NATS:    config.NATS{URL: "nats://n:4222", Replicas: 3, EventsMaxAge: config.Duration(time.Hour), DuplicateWindow: config.Duration(time.Minute)},
		Ops:     config.Ops{Listen: "off"},
		Ingress: config.Ingress{Listen: ":80", MaxBody: 4096, MaxBytesInFlight: 8192, ReadTimeout: config.Duration(time.Second), PublishTimeout: config.Duration(time.Second),
			IdempotencyHorizon: config.Duration(time.Hour), MaxBatch: 9,
			RejectionAudit: config.RejectionAudit{PerSecond: 3, Burst: 4, SummaryInterval: config.Duration(time.Hour)},
			Sync:           config.IngressSync{MaxWait: config.Duration(time.Minute), DefaultWait: config.Duration(time.Second)},
			PollLeaseTTL:   config.Duration(time.Minute)},
		Auditor: config.Auditor{Listen: ":81", BatchSize: 7, AdminToken: "0123456789abcdef", LagThreshold: config.Duration(time.Second),
			Retention: config.AuditRetention{Payloads: config.Duration(time.Hour), Records: config.Duration(2 * time.Hour),
				Interval: config.Duration(time.Minute), BatchSize: 5}},
		Sources: []config.Source{
			{Name: "a", Tolerance: config.Duration(time.Minute), MaxBody: 100, RateLimit: config.SourceRateLimit{PerSecond: 3, Burst: 4}},
			{Name: "b"},
		},
		Destinations: []config.Destination{{
			Name: "crm", Timeout: config.Duration(time.Second), Concurrency: 2, MaxAckPending: 3,
			Retry:     config.Retry{Backoff: []config.Duration{config.Duration(2 * time.Second)}, MaxAttempts: 2},
			RateLimit: config.RateLimit{PerSecond: 2.5, Burst: 1},
			Auth:      config.Auth{Type: config.AuthOAuth2ClientCredentials, ClientAuth: "body"},
			Breaker: config.Breaker{
				ConsecutiveFailures: 2, FailureRatio: 0.9, MinRequests: 4, Window: config.Duration(time.Hour),
				Cooldown: config.Duration(time.Second), MaxCooldown: config.Duration(time.Minute),
			},
			Mode:      config.ModeSync,
			Transform: config.Transform{Timeout: config.Duration(2 * time.Second), MaxOutput: 10},
		}},
		Demo:   config.Demo{PartnerListen: ":9"},
		Alerts: config.Alerts{}.WithDefaults(),
	}
	got := in.WithDefaults()
	// Only source b had anything unset; it inherits ingress.max_body.
	want := in
	want.Sources = []config.Source{in.Sources[0], {Name: "b", Tolerance: config.DefaultTolerance, MaxBody: 4096,
		RateLimit: config.SourceRateLimit{PerSecond: config.DefaultSourceRatePerSecond, Burst: config.DefaultSourceRateBurst}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithDefaults() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestWithDefaultsOrderedAndRateLimit(t *testing.T) {
	t.Parallel()
	c := config.Config{Destinations: []config.Destination{
		{Name: "ordered", Ordered: true},
		{Name: "limited", RateLimit: config.RateLimit{PerSecond: 2.5}},
		{Name: "slow", RateLimit: config.RateLimit{PerSecond: 0.2}},
	}}.WithDefaults()
	if got := c.Destinations[0].Concurrency; got != 1 {
		t.Errorf("ordered destination concurrency = %d, want 1", got)
	}
	if got := c.Destinations[1].RateLimit.Burst; got != 3 {
		t.Errorf("rate limit 2.5/s burst = %d, want 3", got)
	}
	if got := c.Destinations[2].RateLimit.Burst; got != 1 {
		t.Errorf("rate limit 0.2/s burst = %d, want 1", got)
	}
}

// A value in the wrong shape may be a secret: the error says what shape is
// wanted and never quotes the value, nor the Go types behind it.
func TestTypeErrorsDoNotQuoteValues(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, field, want string }{
		{"sources:\n  - name: a\n    scheme: github\n    secrets: bob:pw1-secret\n", "sources[0].secrets", "want a list"},
		{"destinations:\n  - name: a\n    headers: [Bearer-tok3n]\n", "destinations[0].headers", "want a mapping"},
		{"destinations:\n  - name: a\n    auth: {token: {a: s3cr3t-value}}\n", "destinations[0].auth", "want a string"},
		{"destinations:\n  - name: a\n    allow_private_network: sure\n", "destinations[0].allow_private_network", "want true or false"},
	}
	for _, tt := range tests {
		_, err := config.Parse([]byte(tt.yaml), envMap(nil))
		if err == nil {
			t.Fatalf("%q parsed", tt.yaml)
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.want) {
			t.Errorf("error %q: want field %s and %q", msg, tt.field, tt.want)
		}
		for _, leak := range []string{"pw1-secret", "Bearer-tok3n", "s3cr3t-value", "sure", "config.", "[]"} {
			if strings.Contains(msg, leak) {
				t.Errorf("error %q quotes %q", msg, leak)
			}
		}
	}
}

// Loading a file whose embedded server listens on every interface without
// a password is refused, naming the field; with nats.password from the
// environment it loads, and neither the value nor the error shows it.
func TestLoadRefusesAnOpenEmbeddedListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "switchyard.yaml")
	yaml := minimalYAML + "nats:\n  embedded_listen: \"0.0.0.0:4222\"\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path, noEnv)
	checkErr(t, err, config.ErrInvalid, "nats.embedded_listen", "set nats.password")

	if err := os.WriteFile(path, []byte(yaml+"  password: ${NATS_PASSWORD}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const pw = "operator-chosen-pa55word"
	c, err := config.Load(path, envMap(map[string]string{"NATS_PASSWORD": pw}))
	if err != nil {
		t.Fatalf("Load with nats.password: %v", err)
	}
	if c.NATS.Password.Reveal() != pw {
		t.Errorf("nats.password = %q", c.NATS.Password.Reveal())
	}
}
