package config_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	d := func(v time.Duration) config.Duration { return config.Duration(v) }
	secondSource := func(c *config.Config) *config.Source {
		c.Sources = append(c.Sources, c.Sources[0])
		c.Sources[1].Name = "billing"
		return &c.Sources[1]
	}
	secondDest := func(c *config.Config) *config.Destination {
		c.Destinations = append(c.Destinations, c.Destinations[0])
		c.Destinations[1].Name = "erp"
		c.Destinations[1].Subjects = []string{"webhooks.shop.>"}
		return &c.Destinations[1]
	}

	tests := []struct {
		name    string
		mutate  func(c *config.Config)
		wantErr error
		field   string // the FieldError's Field
		problem string // part of its Problem
	}{
		{name: "valid minimal", mutate: func(*config.Config) {}},
		{name: "two sources and two destinations", mutate: func(c *config.Config) { secondSource(c); secondDest(c) }},

		// log
		{name: "log format", mutate: func(c *config.Config) { c.Log.Format = "xml" }, wantErr: config.ErrInvalid, field: "log.format", problem: `not "xml"`},
		{name: "log format json", mutate: func(c *config.Config) { c.Log.Format = "json" }},
		{name: "log level", mutate: func(c *config.Config) { c.Log.Level = "verbose" }, wantErr: config.ErrInvalid, field: "log.level", problem: `not "verbose"`},
		{name: "log level debug", mutate: func(c *config.Config) { c.Log.Level = "debug" }},

		// telemetry
		{name: "traces endpoint", mutate: func(c *config.Config) { c.Telemetry.Traces.Endpoint = "http://127.0.0.1:4318/v1/traces" }},
		{name: "traces endpoint not http", mutate: func(c *config.Config) { c.Telemetry.Traces.Endpoint = "otel-collector:4317" }, wantErr: config.ErrInvalid, field: "telemetry.traces.endpoint", problem: "http://"},
		{name: "traces endpoint with credentials", mutate: func(c *config.Config) { c.Telemetry.Traces.Endpoint = "https://u:hunter3@collector/v1/traces" }, wantErr: config.ErrInvalid, field: "telemetry.traces.endpoint", problem: "credentials"},
		{name: "traces sample ratio above 1", mutate: func(c *config.Config) { c.Telemetry.Traces.SampleRatio = 1.5 }, wantErr: config.ErrInvalid, field: "telemetry.traces.sample_ratio", problem: "at most 1"},
		{name: "traces sample ratio negative", mutate: func(c *config.Config) { c.Telemetry.Traces.SampleRatio = -0.1 }, wantErr: config.ErrInvalid, field: "telemetry.traces.sample_ratio"},
		{name: "traces service name", mutate: func(c *config.Config) { c.Telemetry.Traces.ServiceName = "Bad Name" }, wantErr: config.ErrInvalid, field: "telemetry.traces.service_name"},
		{name: "traces queue size", mutate: func(c *config.Config) { c.Telemetry.Traces.QueueSize = -1 }, wantErr: config.ErrInvalid, field: "telemetry.traces.queue_size"},
		{name: "traces export timeout", mutate: func(c *config.Config) { c.Telemetry.Traces.ExportTimeout = d(2 * time.Minute) }, wantErr: config.ErrInvalid, field: "telemetry.traces.export_timeout"},

		// nats
		{name: "nats url without host", mutate: func(c *config.Config) { c.NATS.URL = "localhost" }, wantErr: config.ErrInvalid, field: "nats.url", problem: "must be a URL"},
		{name: "nats url", mutate: func(c *config.Config) { c.NATS.URL = "nats://127.0.0.1:4222" }},
		{name: "nats url list", mutate: func(c *config.Config) { c.NATS.URL = "nats://n1:4222, nats://n2:4222,nats://n3:4222" }},
		{name: "nats url list with a bad one", mutate: func(c *config.Config) { c.NATS.URL = "nats://n1:4222,n2" }, wantErr: config.ErrInvalid, field: "nats.url", problem: "server 2 must be a URL"},
		{name: "nats url password not echoed", mutate: func(c *config.Config) { c.NATS.URL = "nats://u:hunter3@" }, wantErr: config.ErrInvalid, field: "nats.url", problem: "xxxxx"},
		{name: "embedded_listen with url", mutate: func(c *config.Config) {
			c.NATS.URL = "nats://127.0.0.1:4222"
			c.NATS.EmbeddedListen = "127.0.0.1:4223"
		}, wantErr: config.ErrInvalid, field: "nats.embedded_listen"},
		{name: "embedded_listen without url", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = "127.0.0.1:4223" }},
		{name: "embedded_listen on localhost", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = "localhost:4223" }},
		{name: "embedded_listen on ::1", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = "[::1]:4223" }},
		{name: "embedded_listen on every interface", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = ":4222" },
			wantErr: config.ErrInvalid, field: "nats.embedded_listen", problem: "set nats.password"},
		{name: "embedded_listen on 0.0.0.0", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = "0.0.0.0:4222" },
			wantErr: config.ErrInvalid, field: "nats.embedded_listen", problem: "listens beyond this machine"},
		{name: "embedded_listen on a host name", mutate: func(c *config.Config) { c.NATS.EmbeddedListen = "nats.internal:4222" },
			wantErr: config.ErrInvalid, field: "nats.embedded_listen", problem: "set nats.password"},
		{name: "embedded_listen on 0.0.0.0 with a password", mutate: func(c *config.Config) {
			c.NATS.EmbeddedListen = "0.0.0.0:4222"
			c.NATS.Password = "a-long-operator-password"
		}},
		{name: "embedded with a user and password", mutate: func(c *config.Config) { c.NATS.User, c.NATS.Password = "ops", "a-long-operator-password" }},
		{name: "embedded with a token", mutate: func(c *config.Config) { c.NATS.Token = "tok" }, wantErr: config.ErrInvalid, field: "nats.token", problem: "only used with an external server"},
		{name: "embedded with a creds file", mutate: func(c *config.Config) { c.NATS.CredentialsFile = "x.creds" }, wantErr: config.ErrInvalid, field: "nats.credentials_file", problem: "only used with an external server"},
		{name: "embedded with an nkey", mutate: func(c *config.Config) { c.NATS.NKeySeedFile = "x.nk" }, wantErr: config.ErrInvalid, field: "nats.nkey_seed_file", problem: "only used with an external server"},
		{name: "embedded with tls", mutate: func(c *config.Config) { c.NATS.TLS.CAFile = "ca.pem" }, wantErr: config.ErrInvalid, field: "nats.tls", problem: "only used with an external server"},
		{name: "external user and password", mutate: func(c *config.Config) {
			c.NATS.URL, c.NATS.User, c.NATS.Password = "nats://n1:4222", "svc", "pw"
		}},
		{name: "external password without user", mutate: func(c *config.Config) { c.NATS.URL, c.NATS.Password = "nats://n1:4222", "pw" },
			wantErr: config.ErrInvalid, field: "nats.user", problem: "required with nats.password"},
		{name: "user without password", mutate: func(c *config.Config) { c.NATS.URL, c.NATS.User = "nats://n1:4222", "svc" },
			wantErr: config.ErrInvalid, field: "nats.password", problem: "required with nats.user"},
		{name: "external token, nkey, creds, tls", mutate: func(c *config.Config) {
			c.NATS.URL, c.NATS.Token = "nats://n1:4222", "tok"
			c.NATS.TLS = config.NATSTLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}
		}},
		{name: "two credentials", mutate: func(c *config.Config) {
			c.NATS.URL, c.NATS.Token, c.NATS.CredentialsFile = "nats://n1:4222", "tok", "x.creds"
		}, wantErr: config.ErrInvalid, field: "nats", problem: "only one way to authenticate, not token and credentials_file"},
		{name: "tls cert without key", mutate: func(c *config.Config) {
			c.NATS.URL, c.NATS.TLS.CertFile = "nats://n1:4222", "c.pem"
		}, wantErr: config.ErrInvalid, field: "nats.tls", problem: "go together"},
		{name: "replicas 2", mutate: func(c *config.Config) {
			c.NATS.URL = "nats://127.0.0.1:4222"
			c.NATS.Replicas = 2
		}, wantErr: config.ErrInvalid, field: "nats.replicas", problem: "must be 1, 3 or 5, not 2"},
		{name: "replicas 3 on a cluster", mutate: func(c *config.Config) {
			c.NATS.URL = "nats://127.0.0.1:4222"
			c.NATS.Replicas = 3
		}},
		{name: "replicas 3 embedded", mutate: func(c *config.Config) { c.NATS.Replicas = 3 }, wantErr: config.ErrInvalid, field: "nats.replicas", problem: "embedded server"},
		{name: "duplicate window longer than max age", mutate: func(c *config.Config) {
			c.NATS.EventsMaxAge = d(time.Minute)
			c.NATS.DuplicateWindow = d(2 * time.Minute)
		}, wantErr: config.ErrInvalid, field: "nats.duplicate_window", problem: "must not exceed nats.events_max_age"},

		// listeners
		{name: "ops listen off", mutate: func(c *config.Config) { c.Ops.Listen = "off" }},
		{name: "ops listen", mutate: func(c *config.Config) { c.Ops.Listen = "9090" }, wantErr: config.ErrInvalid, field: "ops.listen", problem: "host:port"},
		{name: "ops pprof on loopback", mutate: func(c *config.Config) { c.Ops.Pprof = true }},
		{name: "ops pprof on localhost", mutate: func(c *config.Config) { c.Ops.Listen, c.Ops.Pprof = "localhost:9090", true }},
		{name: "ops pprof on every interface", mutate: func(c *config.Config) { c.Ops.Listen, c.Ops.Pprof = ":9090", true }, wantErr: config.ErrInvalid, field: "ops.pprof", problem: "pprof_allow_remote"},
		{name: "ops pprof on a public address", mutate: func(c *config.Config) { c.Ops.Listen, c.Ops.Pprof = "10.1.2.3:9090", true }, wantErr: config.ErrInvalid, field: "ops.pprof", problem: "reachable from other hosts"},
		{name: "ops pprof remote allowed", mutate: func(c *config.Config) { c.Ops.Listen, c.Ops.Pprof, c.Ops.PprofAllowRemote = "0.0.0.0:9090", true, true }},
		{name: "ops pprof with the listener off", mutate: func(c *config.Config) { c.Ops.Listen, c.Ops.Pprof = "off", true }, wantErr: config.ErrInvalid, field: "ops.pprof", problem: "ops.listen is off"},
		{name: "ops pprof_allow_remote alone", mutate: func(c *config.Config) { c.Ops.PprofAllowRemote = true }, wantErr: config.ErrInvalid, field: "ops.pprof_allow_remote", problem: "only used with"},
		{name: "ingress listen off is not allowed", mutate: func(c *config.Config) { c.Ingress.Listen = "off" }, wantErr: config.ErrInvalid, field: "ingress.listen"},
		{name: "auditor listen", mutate: func(c *config.Config) { c.Auditor.Listen = "localhost" }, wantErr: config.ErrInvalid, field: "auditor.listen"},
		{name: "ingress max_body", mutate: func(c *config.Config) { c.Ingress.MaxBody = -1 }, wantErr: config.ErrInvalid, field: "ingress.max_body", problem: "positive"},
		{name: "ingress read_timeout negative", mutate: func(c *config.Config) { c.Ingress.ReadTimeout = d(-time.Second) }, wantErr: config.ErrInvalid, field: "ingress.read_timeout", problem: "positive"},
		{name: "ingress publish_timeout negative", mutate: func(c *config.Config) { c.Ingress.PublishTimeout = d(-time.Second) }, wantErr: config.ErrInvalid, field: "ingress.publish_timeout", problem: "positive"},
		{name: "demo generate_every negative", mutate: func(c *config.Config) { c.Demo.GenerateEvery = d(-time.Second) }, wantErr: config.ErrInvalid, field: "demo.generate_every", problem: "negative"},
		{name: "auditor batch_size 0", mutate: func(c *config.Config) { c.Auditor.BatchSize = 0 }, wantErr: config.ErrInvalid, field: "auditor.batch_size"},
		{name: "auditor batch_size too big", mutate: func(c *config.Config) { c.Auditor.BatchSize = 10001 }, wantErr: config.ErrInvalid, field: "auditor.batch_size", problem: "not 10001"},
		{name: "auditor batch_size max", mutate: func(c *config.Config) { c.Auditor.BatchSize = 10000 }},
		{name: "auditor open listen without token", mutate: func(c *config.Config) { c.Auditor.Listen = ":8081" }, wantErr: config.ErrInvalid, field: "auditor.listen", problem: "admin_token is empty"},
		{name: "auditor public listen without token", mutate: func(c *config.Config) { c.Auditor.Listen = "10.1.2.3:8081" }, wantErr: config.ErrInvalid, field: "auditor.listen", problem: "admin_token"},
		{name: "auditor loopback without token", mutate: func(c *config.Config) { c.Auditor.Listen = "[::1]:8081" }},
		{name: "auditor localhost without token", mutate: func(c *config.Config) { c.Auditor.Listen = "localhost:8081" }},
		{name: "auditor open listen with token", mutate: func(c *config.Config) { c.Auditor.Listen, c.Auditor.AdminToken = ":8081", "0123456789abcdef" }},
		{name: "auditor short token", mutate: func(c *config.Config) { c.Auditor.AdminToken = "short-tok" }, wantErr: config.ErrInvalid, field: "auditor.admin_token", problem: "at least 16"},
		{name: "auditor payload retention too short", mutate: func(c *config.Config) { c.Auditor.Retention.Payloads = config.Duration(time.Minute) }, wantErr: config.ErrInvalid, field: "auditor.retention.payloads"},
		{name: "auditor record retention under payloads", mutate: func(c *config.Config) { c.Auditor.Retention.Records = config.Duration(24 * time.Hour) }, wantErr: config.ErrInvalid, field: "auditor.retention.records", problem: "30d"},
		{name: "auditor retention interval", mutate: func(c *config.Config) { c.Auditor.Retention.Interval = config.Duration(time.Second) }, wantErr: config.ErrInvalid, field: "auditor.retention.interval"},
		{name: "auditor retention batch", mutate: func(c *config.Config) { c.Auditor.Retention.BatchSize = 0 }, wantErr: config.ErrInvalid, field: "auditor.retention.batch_size"},
		{name: "auditor lag threshold", mutate: func(c *config.Config) { c.Auditor.LagThreshold = config.Duration(time.Millisecond) }, wantErr: config.ErrInvalid, field: "auditor.lag_threshold"},

		// secrets at the top level
		{name: "database_url postgres", mutate: func(c *config.Config) { c.DatabaseURL = "postgres://u:p@db:5432/switchyard" }},
		{name: "database_url postgresql", mutate: func(c *config.Config) { c.DatabaseURL = "postgresql://db/switchyard" }},
		{name: "database_url mysql", mutate: func(c *config.Config) { c.DatabaseURL = "mysql://u:hunter2@db/switchyard" }, wantErr: config.ErrInvalid, field: "database_url", problem: "postgres://"},
		{name: "slack url", mutate: func(c *config.Config) { c.Alerts.SlackWebhookURL = "https://hooks.slack.com/services/T/B/X" }},
		{name: "slack url not http", mutate: func(c *config.Config) { c.Alerts.SlackWebhookURL = "hooks.slack.com/services/T/B/X" }, wantErr: config.ErrInvalid, field: "alerts.slack_webhook_url"},

		// sources
		{name: "source name upper case", mutate: func(c *config.Config) { c.Sources[0].Name = "Shop" }, wantErr: config.ErrInvalid, field: "sources[0].name", problem: `"Shop" must be`},
		{name: "source name empty", mutate: func(c *config.Config) { c.Sources[0].Name = "" }, wantErr: config.ErrInvalid, field: "sources[0].name"},
		{name: "source name leading dash", mutate: func(c *config.Config) { c.Sources[0].Name = "-shop" }, wantErr: config.ErrInvalid, field: "sources[0].name"},
		{name: "source name with dot", mutate: func(c *config.Config) { c.Sources[0].Name = "shop.eu" }, wantErr: config.ErrInvalid, field: "sources[0].name"},
		{name: "source name 63 chars", mutate: func(c *config.Config) { c.Sources[0].Name = strings.Repeat("a", 63) }},
		{name: "source name 64 chars", mutate: func(c *config.Config) { c.Sources[0].Name = strings.Repeat("a", 64) }, wantErr: config.ErrInvalid, field: "sources[0].name"},
		{name: "source name digits dash underscore", mutate: func(c *config.Config) { c.Sources[0].Name = "0shop-eu_1" }},
		{name: "duplicate source", mutate: func(c *config.Config) { secondSource(c).Name = "shop" }, wantErr: config.ErrInvalid, field: "sources[1].name", problem: "used by another source"},
		{name: "unknown scheme", mutate: func(c *config.Config) { c.Sources[0].Scheme = "carrier-pigeon" }, wantErr: config.ErrInvalid, field: "sources[0].scheme", problem: `must be one of standard-webhooks, github, stripe, shopify, slack, hmac, basic, bearer, not "carrier-pigeon"`},
		{name: "no secrets", mutate: func(c *config.Config) { c.Sources[0].Secrets = nil }, wantErr: config.ErrInvalid, field: "sources[0].secrets", problem: "at least one"},
		{name: "empty secret", mutate: func(c *config.Config) { c.Sources[0].Secrets = append(c.Sources[0].Secrets, "") }, wantErr: config.ErrInvalid, field: "sources[0].secrets[1]", problem: "is empty"},
		{name: "tolerance under 1s", mutate: func(c *config.Config) { c.Sources[0].Tolerance = d(999 * time.Millisecond) }, wantErr: config.ErrInvalid, field: "sources[0].tolerance", problem: "at least 1s"},
		{name: "tolerance 1s", mutate: func(c *config.Config) { c.Sources[0].Tolerance = d(time.Second) }},
		{name: "source max_body", mutate: func(c *config.Config) { secondSource(c).MaxBody = 0 }, wantErr: config.ErrInvalid, field: "sources[1].max_body"},

		// sources: schemes and their options
		{name: "standard-webhooks secret not base64", mutate: func(c *config.Config) { c.Sources[0].Secrets = []config.Secret{"whsec_hunter2-is-my-password"} }, wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "is not a Standard Webhooks secret"},
		{name: "standard-webhooks public key", mutate: func(c *config.Config) {
			c.Sources[0].Secrets = append(c.Sources[0].Secrets, "whpk_y4DRUY/ld5iC69e6AMIgP4Xrg4/GCQYjBxGJJPL05eY=")
		}},
		{name: "standard-webhooks public key too short", mutate: func(c *config.Config) { c.Sources[0].Secrets = []config.Secret{"whpk_AAAA"} }, wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "whpk_"},
		{name: "github", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets = "github", []config.Secret{"It's a Secret to Everybody"}
		}},
		{name: "stripe", mutate: func(c *config.Config) { c.Sources[0].Scheme = "stripe" }},
		{name: "shopify", mutate: func(c *config.Config) { c.Sources[0].Scheme = "shopify" }},
		{name: "slack", mutate: func(c *config.Config) { c.Sources[0].Scheme = "slack" }},
		{name: "basic", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].IDHeader = "basic", []config.Secret{"acme:s3cret"}, "X-Request-Id"
			c.Sources[0].UnsignedID = config.UnsignedIDAllow
		}},
		// An id header the signature does not cover is refused unless the
		// operator allows it.
		{name: "basic id header not allowed", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].IDHeader = "basic", []config.Secret{"acme:s3cret"}, "X-Request-Id"
		}, wantErr: config.ErrInvalid, field: "sources[0].id_header", problem: "basic signs nothing, so set unsigned_id: allow"},
		{name: "bearer id header not allowed", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].IDHeader = "bearer", []config.Secret{"tok_0123456789abcdef"}, "X-Request-Id"
		}, wantErr: config.ErrInvalid, field: "sources[0].id_header", problem: "not covered by the signature"},
		{name: "hmac id header not signed", mutate: func(c *config.Config) {
			hmacSource(c, func(*config.SourceHMAC) {})
			c.Sources[0].IDHeader = "X-Id"
		}, wantErr: config.ErrInvalid, field: "sources[0].id_header", problem: "put {id} in hmac.signed_content"},
		{name: "hmac id header allowed unsigned", mutate: func(c *config.Config) {
			hmacSource(c, func(*config.SourceHMAC) {})
			c.Sources[0].IDHeader, c.Sources[0].UnsignedID = "X-Id", config.UnsignedIDAllow
		}},
		{name: "hmac id header signed", mutate: func(c *config.Config) {
			hmacSource(c, func(h *config.SourceHMAC) { h.SignedContent = "{id}.{body}" })
			c.Sources[0].IDHeader = "X-Id"
		}},
		{name: "unsigned id allowed but signed", mutate: func(c *config.Config) {
			hmacSource(c, func(h *config.SourceHMAC) { h.SignedContent = "{id}.{body}" })
			c.Sources[0].IDHeader, c.Sources[0].UnsignedID = "X-Id", config.UnsignedIDAllow
		}, wantErr: config.ErrInvalid, field: "sources[0].unsigned_id", problem: "not needed"},
		{name: "unsigned id without id header", mutate: func(c *config.Config) { c.Sources[0].UnsignedID = config.UnsignedIDAllow },
			wantErr: config.ErrInvalid, field: "sources[0].unsigned_id", problem: "no id_header"},
		{name: "unsigned id typo", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].IDHeader = "basic", []config.Secret{"acme:s3cret"}, "X-Request-Id"
			c.Sources[0].UnsignedID = "yes"
		}, wantErr: config.ErrInvalid, field: "sources[0].unsigned_id", problem: `must be "allow"`},
		{name: "type field on github", mutate: func(c *config.Config) { c.Sources[0].Scheme, c.Sources[0].TypeField = "github", "event_type" }},
		{name: "type field on stripe", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].TypeField = "stripe", []config.Secret{"whsec_stripe"}, "event_type"
		}, wantErr: config.ErrInvalid, field: "sources[0].type_field", problem: "signed body already"},
		{name: "type field and header", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets = "bearer", []config.Secret{"tok_0123456789abcdef"}
			c.Sources[0].TypeField, c.Sources[0].TypeHeader = "event_type", "X-Type"
		}, wantErr: config.ErrInvalid, field: "sources[0].type_field", problem: "exclude each other"},
		{name: "basic without password", mutate: func(c *config.Config) { c.Sources[0].Scheme, c.Sources[0].Secrets = "basic", []config.Secret{"acme"} }, wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "user:password"},
		{name: "bearer short token", mutate: func(c *config.Config) { c.Sources[0].Scheme, c.Sources[0].Secrets = "bearer", []config.Secret{"short"} }, wantErr: config.ErrInvalid, field: "sources[0].secrets[0]", problem: "shorter than 16"},
		{name: "bearer with type header", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].TypeHeader = "bearer", []config.Secret{"tok_0123456789abcdef"}, "X-Event-Type"
		}},
		{name: "hmac", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) {}) }},
		{name: "hmac with timestamp and id", mutate: func(c *config.Config) {
			hmacSource(c, func(h *config.SourceHMAC) { h.TimestampHeader, h.SignedContent = "X-Ts", "{id}.{timestamp}.{body}" })
			c.Sources[0].IDHeader = "X-Id"
		}},
		{name: "hmac without header", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.Header = "" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.header"},
		{name: "hmac header with space", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.Header = "X Sig" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.header"},
		{name: "hmac md5", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.Algorithm = "md5" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.algorithm", problem: `not "md5"`},
		{name: "hmac base32", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.Encoding = "base32" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.encoding"},
		{name: "hmac typo in template", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.SignedContent = "{bdy}" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.signed_content", problem: "unknown placeholder {bdy}"},
		{name: "hmac timestamp not signed", mutate: func(c *config.Config) {
			hmacSource(c, func(h *config.SourceHMAC) { h.TimestampHeader, h.SignedContent = "X-Ts", "{body}" })
		}, wantErr: config.ErrInvalid, field: "sources[0].hmac.signed_content", problem: "protects nothing"},
		{name: "hmac timestamp without header", mutate: func(c *config.Config) {
			hmacSource(c, func(h *config.SourceHMAC) { h.SignedContent = "{timestamp}.{body}" })
		}, wantErr: config.ErrInvalid, field: "sources[0].hmac.signed_content", problem: "timestamp_header"},
		{name: "hmac id without header", mutate: func(c *config.Config) { hmacSource(c, func(h *config.SourceHMAC) { h.SignedContent = "{id}{body}" }) }, wantErr: config.ErrInvalid, field: "sources[0].hmac.signed_content", problem: "id_header"},
		{name: "hmac options on another scheme", mutate: func(c *config.Config) { c.Sources[0].HMAC.Header = "X-Sig" }, wantErr: config.ErrInvalid, field: "sources[0].hmac", problem: "only used by scheme hmac"},
		{name: "id header on github", mutate: func(c *config.Config) { c.Sources[0].Scheme, c.Sources[0].IDHeader = "github", "X-Id" }, wantErr: config.ErrInvalid, field: "sources[0].id_header", problem: "github takes ids"},
		{name: "type header with colon", mutate: func(c *config.Config) {
			c.Sources[0].Scheme, c.Sources[0].Secrets, c.Sources[0].TypeHeader = "basic", []config.Secret{"a:b"}, "X-Type:"
		}, wantErr: config.ErrInvalid, field: "sources[0].type_header"},
		{name: "rate limit", mutate: func(c *config.Config) { c.Sources[0].RateLimit = config.SourceRateLimit{PerSecond: 0.5, Burst: 3} }},
		{name: "rate limit negative", mutate: func(c *config.Config) { c.Sources[0].RateLimit.PerSecond = -1 }, wantErr: config.ErrInvalid, field: "sources[0].rate_limit.per_second"},
		{name: "rate limit burst alone", mutate: func(c *config.Config) { c.Sources[0].RateLimit = config.SourceRateLimit{Burst: 5} }, wantErr: config.ErrInvalid, field: "sources[0].rate_limit.burst", problem: "needs rate_limit.per_second"},
		{name: "rate limit off", mutate: func(c *config.Config) { c.Sources[0].RateLimit = config.SourceRateLimit{Unlimited: true} }},
		{name: "rate limit off with a rate", mutate: func(c *config.Config) { c.Sources[0].RateLimit = config.SourceRateLimit{Unlimited: true, PerSecond: 5} }, wantErr: config.ErrInvalid, field: "sources[0].rate_limit.unlimited", problem: "turns the limit off"},
		{name: "rate limit burst negative", mutate: func(c *config.Config) { c.Sources[0].RateLimit = config.SourceRateLimit{PerSecond: 1, Burst: -1} }, wantErr: config.ErrInvalid, field: "sources[0].rate_limit.burst"},

		// ingress: publish API and idempotency
		{name: "api keys", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: "k-0123456789abcdef"}, {Name: "billing", Key: "k-fedcba9876543210"}}
		}},
		{name: "api key short", mutate: func(c *config.Config) { c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: "short"}} }, wantErr: config.ErrInvalid, field: "ingress.api_keys[0].key", problem: "at least 16"},
		{name: "api key name", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "Orders", Key: "k-0123456789abcdef"}}
		}, wantErr: config.ErrInvalid, field: "ingress.api_keys[0].name"},
		{name: "api key names repeat", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: "k-0123456789abcdef"}, {Name: "orders", Key: "k-fedcba9876543210"}}
		}, wantErr: config.ErrInvalid, field: "ingress.api_keys[1].name", problem: "used by another key"},
		{name: "api keys repeat", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: "k-0123456789abcdef"}, {Name: "billing", Key: "k-0123456789abcdef"}}
		}, wantErr: config.ErrInvalid, field: "ingress.api_keys[1].key", problem: "same as ingress.api_keys[0].key"},
		{name: "api key named like a source", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: c.Sources[0].Name, Key: "k-0123456789abcdef"}}
		}, wantErr: config.ErrInvalid, field: "ingress.api_keys[0].name", problem: "also the name of sources[0]"},
		{name: "api key named replay", mutate: func(c *config.Config) {
			c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "replay", Key: "k-0123456789abcdef"}}
		}, wantErr: config.ErrInvalid, field: "ingress.api_keys[0].name", problem: "reserved"},
		{name: "source named replay", mutate: func(c *config.Config) { c.Sources[0].Name = "replay" }, wantErr: config.ErrInvalid, field: "sources[0].name", problem: "reserved"},
		{name: "trusted proxies", mutate: func(c *config.Config) {
			c.Ingress.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "fd00::/8", "2001:db8::1"}
		}},
		{name: "trusted proxy not a CIDR", mutate: func(c *config.Config) { c.Ingress.TrustedProxies = []string{"10.0.0.0/8", "lb.internal"} },
			wantErr: config.ErrInvalid, field: "ingress.trusted_proxies[1]", problem: "not a CIDR"},
		{name: "trusted proxy bad mask", mutate: func(c *config.Config) { c.Ingress.TrustedProxies = []string{"10.0.0.0/33"} },
			wantErr: config.ErrInvalid, field: "ingress.trusted_proxies[0]", problem: "not a CIDR"},
		{name: "trusted proxy host bits", mutate: func(c *config.Config) { c.Ingress.TrustedProxies = []string{"10.1.2.3/8"} },
			wantErr: config.ErrInvalid, field: "ingress.trusted_proxies[0]", problem: "did you mean 10.0.0.0/8"},
		{name: "rejection audit rate", mutate: func(c *config.Config) { c.Ingress.RejectionAudit.PerSecond = -1 },
			wantErr: config.ErrInvalid, field: "ingress.rejection_audit.per_second"},
		{name: "rejection audit burst", mutate: func(c *config.Config) { c.Ingress.RejectionAudit.Burst = -1 },
			wantErr: config.ErrInvalid, field: "ingress.rejection_audit.burst"},
		{name: "rejection audit interval", mutate: func(c *config.Config) { c.Ingress.RejectionAudit.SummaryInterval = d(time.Millisecond) },
			wantErr: config.ErrInvalid, field: "ingress.rejection_audit.summary_interval", problem: "at least 1s"},
		{name: "idempotency horizon under the window", mutate: func(c *config.Config) { c.Ingress.IdempotencyHorizon = d(time.Minute) }, wantErr: config.ErrInvalid, field: "ingress.idempotency_horizon", problem: "at least nats.duplicate_window (2m0s)"},
		{name: "idempotency horizon a week", mutate: func(c *config.Config) { c.Ingress.IdempotencyHorizon = d(7 * 24 * time.Hour) }},
		{name: "max batch zero", mutate: func(c *config.Config) { c.Ingress.MaxBatch = 0 }, wantErr: config.ErrInvalid, field: "ingress.max_batch"},
		{name: "max bytes in flight below max body", mutate: func(c *config.Config) { c.Ingress.MaxBytesInFlight = c.Ingress.MaxBody - 1 }, wantErr: config.ErrInvalid, field: "ingress.max_bytes_in_flight"},
		{name: "max bytes in flight below a source's max body", mutate: func(c *config.Config) {
			c.Ingress.MaxBytesInFlight = 2 << 20
			c.Sources[0].MaxBody = 3 << 20
		}, wantErr: config.ErrInvalid, field: "ingress.max_bytes_in_flight"},

		// destinations
		{name: "destination name", mutate: func(c *config.Config) { c.Destinations[0].Name = "CRM" }, wantErr: config.ErrInvalid, field: "destinations[0].name"},
		{name: "duplicate destination", mutate: func(c *config.Config) { secondDest(c).Name = "crm" }, wantErr: config.ErrInvalid, field: "destinations[1].name", problem: "used by another destination"},
		{name: "same name for a source and a destination", mutate: func(c *config.Config) { c.Destinations[0].Name = "shop" }},
		{name: "url ftp", mutate: func(c *config.Config) { c.Destinations[0].URL = "ftp://crm.example.com/" }, wantErr: config.ErrInvalid, field: "destinations[0].url", problem: "http(s) URL"},
		{name: "url without host", mutate: func(c *config.Config) { c.Destinations[0].URL = "http://" }, wantErr: config.ErrInvalid, field: "destinations[0].url"},
		{name: "url empty", mutate: func(c *config.Config) { c.Destinations[0].URL = "" }, wantErr: config.ErrInvalid, field: "destinations[0].url"},
		{name: "url unparsable", mutate: func(c *config.Config) { c.Destinations[0].URL = "http://[::1" }, wantErr: config.ErrInvalid, field: "destinations[0].url"},
		{name: "url http", mutate: func(c *config.Config) { c.Destinations[0].URL = "http://10.0.0.1:8080/x" }},
		{name: "no subjects", mutate: func(c *config.Config) { c.Destinations[0].Subjects = nil }, wantErr: config.ErrInvalid, field: "destinations[0].subjects", problem: "at least one subject"},
		{name: "subject empty token", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"events..created"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "empty token"},
		{name: "subject whitespace", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"events.order created"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "whitespace"},
		{name: "subject > not last", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"events.>.created"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "last token"},
		{name: "subject partial wildcard", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"events.order*"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "whole tokens"},
		{name: "subject outside EVENTS", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"dlq.crm.>"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "must start with events. or webhooks."},
		{name: "subject on replay", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"replay.crm.>"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "must start with events. or webhooks."},
		{name: "subject wildcard first token", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{"*.order.>"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]"},
		{name: "subject everything", mutate: func(c *config.Config) { c.Destinations[0].Subjects = []string{">"} }, wantErr: config.ErrInvalid, field: "destinations[0].subjects[0]", problem: "replay subjects"},
		{name: "subjects overlap", mutate: func(c *config.Config) {
			c.Destinations[0].Subjects = []string{"events.>", "webhooks.shop.>", "events.order.created"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].subjects[2]", problem: `overlaps subjects[0] "events.>"`},
		{name: "subjects overlap through wildcards", mutate: func(c *config.Config) {
			c.Destinations[0].Subjects = []string{"events.order.*", "events.*.created"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].subjects[1]", problem: "overlaps subjects[0]"},
		{name: "subjects side by side", mutate: func(c *config.Config) {
			c.Destinations[0].Subjects = []string{"events.order.>", "events.user.>", "webhooks.shop.>", "events.order"}
		}},
		{name: "same subject on two destinations", mutate: func(c *config.Config) { secondDest(c).Subjects = c.Destinations[0].Subjects }},
		{name: "timeout zero", mutate: func(c *config.Config) { c.Destinations[0].Timeout = 0 }, wantErr: config.ErrInvalid, field: "destinations[0].timeout", problem: "positive"},
		{name: "concurrency zero", mutate: func(c *config.Config) { c.Destinations[0].Concurrency = 0 }, wantErr: config.ErrInvalid, field: "destinations[0].concurrency"},
		{name: "concurrency too high", mutate: func(c *config.Config) { c.Destinations[0].Concurrency = 1025 }, wantErr: config.ErrInvalid, field: "destinations[0].concurrency", problem: "not 1025"},
		{name: "max_ack_pending under concurrency", mutate: func(c *config.Config) {
			c.Destinations[0].Concurrency = 16
			c.Destinations[0].MaxAckPending = 15
		}, wantErr: config.ErrInvalid, field: "destinations[0].max_ack_pending", problem: "(15) must be at least concurrency (16)"},
		{name: "max_ack_pending equal to concurrency", mutate: func(c *config.Config) {
			c.Destinations[0].Concurrency = 16
			c.Destinations[0].MaxAckPending = 16
		}},
		{name: "max_attempts zero", mutate: func(c *config.Config) { c.Destinations[0].Retry.MaxAttempts = 0 }, wantErr: config.ErrInvalid, field: "destinations[0].retry.max_attempts"},
		{name: "max_attempts 101", mutate: func(c *config.Config) { c.Destinations[0].Retry.MaxAttempts = 101 }, wantErr: config.ErrInvalid, field: "destinations[0].retry.max_attempts", problem: "not 101"},
		{name: "max_attempts 1 means no retries", mutate: func(c *config.Config) { c.Destinations[0].Retry.MaxAttempts = 1 }},
		{name: "no backoff", mutate: func(c *config.Config) { c.Destinations[0].Retry.Backoff = []config.Duration{} }, wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff", problem: "at least one step"},
		{name: "backoff equal to timeout", mutate: func(c *config.Config) {
			c.Destinations[0].Timeout = d(5 * time.Second)
			c.Destinations[0].Retry.Backoff = []config.Duration{d(5 * time.Second)}
		}, wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff[0]", problem: "(5s) must be at least timeout (5s) + 500ms"},
		{name: "backoff just under timeout plus margin", mutate: func(c *config.Config) {
			c.Destinations[0].Timeout = d(time.Second)
			c.Destinations[0].Retry.Backoff = []config.Duration{d(2 * time.Second), d(1249 * time.Millisecond)}
		}, wantErr: config.ErrInvalid, field: "destinations[0].retry.backoff[1]", problem: "+ 250ms"},
		{name: "backoff exactly timeout plus margin", mutate: func(c *config.Config) {
			c.Destinations[0].Timeout = d(time.Second)
			c.Destinations[0].Retry.Backoff = []config.Duration{d(1250 * time.Millisecond)}
		}},
		{name: "header name with space", mutate: func(c *config.Config) {
			c.Destinations[0].Headers = map[string]config.Secret{"X Api Key": "k"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].headers", problem: `"X Api Key" is not valid`},
		{name: "header name with colon", mutate: func(c *config.Config) {
			c.Destinations[0].Headers = map[string]config.Secret{"X-Key:": "k"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].headers"},
		{name: "header name with newline", mutate: func(c *config.Config) {
			c.Destinations[0].Headers = map[string]config.Secret{"X-Key\r\nEvil": "k"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].headers"},
		{name: "header name blank", mutate: func(c *config.Config) {
			c.Destinations[0].Headers = map[string]config.Secret{" ": "k"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].headers"},
		{name: "headers", mutate: func(c *config.Config) {
			c.Destinations[0].Headers = map[string]config.Secret{"Authorization": "Bearer t", "X-Api-Key": "k"}
		}},

		// retry_on_status, ordered, rate_limit
		{name: "retry_on_status", mutate: func(c *config.Config) { c.Destinations[0].Retry.RetryOnStatus = []int{404, 423} }},
		{name: "retry_on_status 410", mutate: func(c *config.Config) { c.Destinations[0].Retry.RetryOnStatus = []int{404, 410} }, wantErr: config.ErrInvalid, field: "destinations[0].retry.retry_on_status[1]", problem: "410 Gone is always permanent"},
		{name: "retry_on_status 500", mutate: func(c *config.Config) { c.Destinations[0].Retry.RetryOnStatus = []int{500} }, wantErr: config.ErrInvalid, field: "destinations[0].retry.retry_on_status[0]", problem: "4xx status code, not 500"},
		{name: "ordered with concurrency 1", mutate: func(c *config.Config) {
			c.Destinations[0].Ordered = true
			c.Destinations[0].Concurrency = 1
		}},
		{name: "ordered with concurrency 4", mutate: func(c *config.Config) {
			c.Destinations[0].Ordered = true
			c.Destinations[0].Concurrency = 4
		}, wantErr: config.ErrInvalid, field: "destinations[0].concurrency", problem: "must be 1 for an ordered destination"},
		{name: "rate limit", mutate: func(c *config.Config) { c.Destinations[0].RateLimit = config.RateLimit{PerSecond: 0.5, Burst: 1} }},
		{name: "rate limit negative", mutate: func(c *config.Config) { c.Destinations[0].RateLimit = config.RateLimit{PerSecond: -1} }, wantErr: config.ErrInvalid, field: "destinations[0].rate_limit.per_second"},
		{name: "rate limit zero burst", mutate: func(c *config.Config) { c.Destinations[0].RateLimit = config.RateLimit{PerSecond: 10} }, wantErr: config.ErrInvalid, field: "destinations[0].rate_limit.burst", problem: "at least 1"},
		{name: "burst without rate", mutate: func(c *config.Config) { c.Destinations[0].RateLimit = config.RateLimit{Burst: 10} }, wantErr: config.ErrInvalid, field: "destinations[0].rate_limit.burst", problem: "only used with per_second"},

		// auth
		{name: "auth bearer", mutate: func(c *config.Config) { c.Destinations[0].Auth = config.Auth{Type: "bearer", Token: "t0k"} }},
		{name: "auth bearer without token", mutate: func(c *config.Config) { c.Destinations[0].Auth = config.Auth{Type: "bearer"} }, wantErr: config.ErrInvalid, field: "destinations[0].auth.token", problem: "required"},
		{name: "auth bearer token with newline", mutate: func(c *config.Config) { c.Destinations[0].Auth = config.Auth{Type: "bearer", Token: "a\nb"} }, wantErr: config.ErrInvalid, field: "destinations[0].auth.token", problem: "one line"},
		{name: "auth unknown type", mutate: func(c *config.Config) { c.Destinations[0].Auth = config.Auth{Type: "digest"} }, wantErr: config.ErrInvalid, field: "destinations[0].auth.type", problem: `not "digest"`},
		{name: "auth basic", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "basic", Username: "u", Password: "p"}
		}},
		{name: "auth basic without password", mutate: func(c *config.Config) { c.Destinations[0].Auth = config.Auth{Type: "basic", Username: "u"} }, wantErr: config.ErrInvalid, field: "destinations[0].auth.password"},
		{name: "auth basic username with colon", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "basic", Username: "u:x", Password: "p"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].auth.username", problem: "':'"},
		{name: "auth field of another type", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "bearer", Token: "t", ClientID: "x"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].auth.client_id", problem: "not used by auth type"},
		{name: "auth oauth2", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "oauth2-client-credentials", TokenURL: "https://id.example/token", ClientID: "sy", ClientSecret: "s", ClientAuth: "auto"}
		}},
		{name: "auth oauth2 missing everything", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "oauth2-client-credentials", ClientAuth: "auto"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].auth.token_url", problem: "http(s) URL"},
		{name: "auth oauth2 bad client_auth", mutate: func(c *config.Config) {
			c.Destinations[0].Auth = config.Auth{Type: "oauth2-client-credentials", TokenURL: "https://id.example/token", ClientID: "sy", ClientSecret: "s", ClientAuth: "jwt"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].auth.client_auth"},

		// signing
		{name: "signing", mutate: func(c *config.Config) {
			c.Destinations[0].Signing.StandardWebhooksSecrets = []config.Secret{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQh"}
		}},
		{name: "signing secret not base64", mutate: func(c *config.Config) {
			c.Destinations[0].Signing.StandardWebhooksSecrets = []config.Secret{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"}
		}, wantErr: config.ErrInvalid, field: "destinations[0].signing.standard_webhooks_secrets[1]", problem: "not shown"},
		{name: "signing secret empty", mutate: func(c *config.Config) {
			c.Destinations[0].Signing.StandardWebhooksSecrets = []config.Secret{""}
		}, wantErr: config.ErrInvalid, field: "destinations[0].signing.standard_webhooks_secrets[0]", problem: "empty"},

		// breaker
		{name: "breaker disabled ignores the rest", mutate: func(c *config.Config) { c.Destinations[0].Breaker = config.Breaker{Disabled: true} }},
		{name: "breaker ratio over 1", mutate: func(c *config.Config) { c.Destinations[0].Breaker.FailureRatio = 1.5 }, wantErr: config.ErrInvalid, field: "destinations[0].breaker.failure_ratio"},
		{name: "breaker consecutive 0", mutate: func(c *config.Config) { c.Destinations[0].Breaker.ConsecutiveFailures = -1 }, wantErr: config.ErrInvalid, field: "destinations[0].breaker.consecutive_failures"},
		{name: "breaker short cooldown", mutate: func(c *config.Config) { c.Destinations[0].Breaker.Cooldown = d(100 * time.Millisecond) }, wantErr: config.ErrInvalid, field: "destinations[0].breaker.cooldown", problem: "at least 1s"},
		{name: "breaker max_cooldown under cooldown", mutate: func(c *config.Config) {
			c.Destinations[0].Breaker.Cooldown = d(time.Minute)
			c.Destinations[0].Breaker.MaxCooldown = d(30 * time.Second)
		}, wantErr: config.ErrInvalid, field: "destinations[0].breaker.max_cooldown"},
		{name: "breaker window", mutate: func(c *config.Config) { c.Destinations[0].Breaker.Window = d(time.Millisecond) }, wantErr: config.ErrInvalid, field: "destinations[0].breaker.window"},
		{name: "breaker min_requests", mutate: func(c *config.Config) { c.Destinations[0].Breaker.MinRequests = -3 }, wantErr: config.ErrInvalid, field: "destinations[0].breaker.min_requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			checkErr(t, err, tt.wantErr, tt.field, tt.problem)
			if tt.wantErr != nil && !hasField(fieldProblems(t, err), tt.field) {
				t.Errorf("no problem reported for field %q:\n%v", tt.field, err)
			}
		})
	}
}

// hmacSource turns the first source into a generic hmac source with
// defaults applied, then lets mod change its options.
func hmacSource(c *config.Config, mod func(*config.SourceHMAC)) {
	s := &c.Sources[0]
	s.Scheme, s.Secrets = "hmac", []config.Secret{"partner-secret"}
	s.HMAC = config.SourceHMAC{Header: "X-Signature", Algorithm: "sha256", Encoding: "hex", SignedContent: "{body}"}
	mod(&s.HMAC)
}

func TestWithDefaultsSchemeOptions(t *testing.T) {
	t.Parallel()
	c := config.Config{Sources: []config.Source{
		{Name: "a", Scheme: "hmac", HMAC: config.SourceHMAC{Header: "X-Sig"}},
		{Name: "b", Scheme: "hmac", HMAC: config.SourceHMAC{Header: "X-Sig", TimestampHeader: "X-Ts", Algorithm: "sha512", Encoding: "base64"}},
		{Name: "c", Scheme: "github", RateLimit: config.SourceRateLimit{PerSecond: 2.5}},
		{Name: "d", Scheme: "github", RateLimit: config.SourceRateLimit{PerSecond: 2.5, Burst: 1}},
	}}.WithDefaults()
	want := []config.SourceHMAC{
		{Header: "X-Sig", Algorithm: "sha256", Encoding: "hex", SignedContent: "{body}"},
		{Header: "X-Sig", TimestampHeader: "X-Ts", Algorithm: "sha512", Encoding: "base64", SignedContent: "{timestamp}.{body}"},
		{}, {},
	}
	for i, w := range want {
		if c.Sources[i].HMAC != w {
			t.Errorf("sources[%d].hmac = %+v, want %+v", i, c.Sources[i].HMAC, w)
		}
	}
	if got := c.Sources[2].RateLimit.Burst; got != 5 {
		t.Errorf("burst for 2.5/s = %d, want 5 (twice the rate rounded up)", got)
	}
	if got := c.Sources[3].RateLimit.Burst; got != 1 {
		t.Errorf("set burst = %d, want 1", got)
	}
	for i := range c.Sources {
		c.Sources[i].Secrets = []config.Secret{"partner-secret"}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := validConfig(t)
	c.Log.Level = "loud"
	c.Sources[0].Scheme = ""
	c.Destinations[0].URL = "crm"
	c.Destinations[0].Retry.Backoff = []config.Duration{config.Duration(time.Second), config.Duration(time.Minute), config.Duration(time.Millisecond)}

	err := c.Validate()
	problems := fieldProblems(t, err)
	want := []string{"log.level", "sources[0].scheme", "destinations[0].url", "destinations[0].retry.backoff[0]", "destinations[0].retry.backoff[2]"}
	var got []string
	for _, p := range problems {
		got = append(got, p.Field)
	}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q, want %q", got, want)
	}
	// The layout of the message is under test here.
	if !strings.HasPrefix(err.Error(), "invalid configuration:\n  log.level: ") {
		t.Errorf("error text = %q, want one problem per line after a heading", err.Error())
	}
	if n := strings.Count(err.Error(), "\n  "); n != len(want) {
		t.Errorf("error has %d problem lines, want %d:\n%v", n, len(want), err)
	}
}

// TestValidateDoesNotEchoSecrets: database_url and slack_webhook_url may
// hold passwords and tokens, so their problems must not quote them.
func TestValidateDoesNotEchoSecrets(t *testing.T) {
	t.Parallel()
	c := validConfig(t)
	c.DatabaseURL = "mysql://admin:hunter2@db/switchyard"
	c.Alerts.SlackWebhookURL = "ftp://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
	c.Destinations[0].Headers = map[string]config.Secret{"X Bad": "topsecret-header-value"}
	c.Auditor.AdminToken = "short-admin"
	c.Sources[0].Secrets = []config.Secret{"whsec_my-webhook-password"}
	c.Sources = append(c.Sources, config.Source{Name: "b", Scheme: "basic", Secrets: []config.Secret{"basic-password-only"}, Tolerance: c.Sources[0].Tolerance, MaxBody: 1})
	c.Ingress.APIKeys = []config.IngressAPIKey{{Name: "a", Key: "short-api-key"}, {Name: "b", Key: "a-long-duplicated-key"}, {Name: "c", Key: "a-long-duplicated-key"}}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad URLs")
	}
	for _, secret := range []string{"hunter2", "XXXXsecretXXXX", "topsecret-header-value", "short-admin", "my-webhook-password", "basic-password-only", "short-api-key", "a-long-duplicated-key"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals %q:\n%v", secret, err)
		}
	}
}

func TestFieldErrorText(t *testing.T) {
	t.Parallel()
	e := config.FieldError{Field: "destinations[1].retry.backoff[0]", Problem: "must be longer than timeout (5s)"}
	if got, want := e.Error(), "destinations[1].retry.backoff[0]: must be longer than timeout (5s)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// Example of a validation error as the person editing the file sees it.
func ExampleConfig_Validate() {
	c := config.Config{
		Sources: []config.Source{{Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}},
		Destinations: []config.Destination{{
			Name:     "crm",
			URL:      "https://crm.example.com/hooks",
			Subjects: []string{"events.order.>"},
			Timeout:  config.Duration(5 * time.Second),
			Retry:    config.Retry{Backoff: []config.Duration{config.Duration(3 * time.Second)}},
		}},
	}.WithDefaults()
	fmt.Println(c.Validate())
	// Output:
	// invalid configuration:
	//   destinations[0].retry.backoff[0]: (3s) must be at least timeout (5s) + 500ms: each step is also the ack wait of the attempt before it, and an attempt still running must not be redelivered
}

// The default body limit and the envelope ingress stores with a body fit
// in a default NATS server's max_payload: ingress refuses to start when a
// body limit does not, and the defaults must work out of the box.
func TestDefaultMaxBodyFitsDefaultMaxPayload(t *testing.T) {
	t.Parallel()
	if got := int64(config.DefaultMaxBody) + events.EnvelopeAllowance; got > server.MAX_PAYLOAD_SIZE {
		t.Errorf("DefaultMaxBody + EnvelopeAllowance = %d, above the NATS default max_payload %d", got, server.MAX_PAYLOAD_SIZE)
	}
}

// TestSourceRateLimitOnByDefault: a webhook source without rate_limit is
// limited to the documented default; unlimited turns it off; a polled
// source gets none (it takes no webhooks).
func TestSourceRateLimitOnByDefault(t *testing.T) {
	t.Parallel()
	c := config.Config{Sources: []config.Source{
		{Name: "a", Scheme: "github"},
		{Name: "b", Scheme: "github", RateLimit: config.SourceRateLimit{Unlimited: true}},
		{Name: "c", Scheme: "github", RateLimit: config.SourceRateLimit{Burst: 500}},
		{Name: "d", Poll: &config.SourcePoll{}},
	}}.WithDefaults()
	want := []config.SourceRateLimit{
		{PerSecond: 50, Burst: 100},
		{Unlimited: true},
		{PerSecond: config.DefaultSourceRatePerSecond, Burst: 500},
		{},
	}
	for i, w := range want {
		if got := c.Sources[i].RateLimit; got != w {
			t.Errorf("sources[%d].rate_limit = %+v, want %+v", i, got, w)
		}
	}
	if config.DefaultSourceRateBurst != 100 || config.DefaultSourceRatePerSecond != 50 {
		t.Errorf("the documented default is 50/s, burst 100")
	}
}

// TestUnsignedIDAtLoad: loading a file whose source names an id_header the
// signature does not cover fails, naming the field and the way out, until
// the operator says unsigned_id: allow.
func TestUnsignedIDAtLoad(t *testing.T) {
	t.Parallel()
	const file = `
sources:
  - name: acme
    scheme: hmac
    secrets: ["acme-secret"]
    id_header: X-Acme-Delivery
    hmac: {header: X-Acme-Signature}
%s`
	env := func(string) (string, bool) { return "", false }
	_, err := config.Parse([]byte(fmt.Sprintf(file, "")), env)
	if err == nil || !strings.Contains(err.Error(), "sources[0].id_header: X-Acme-Delivery is not covered by the signature") ||
		!strings.Contains(err.Error(), "unsigned_id: allow") {
		t.Fatalf("Parse = %v, want sources[0].id_header refused with the way out", err)
	}
	c, err := config.Parse([]byte(fmt.Sprintf(file, "    unsigned_id: allow\n")), env)
	if err != nil {
		t.Fatalf("with unsigned_id: allow: %v", err)
	}
	if got := c.Sources[0].UnsignedID; got != config.UnsignedIDAllow {
		t.Errorf("unsigned_id = %q", got)
	}
	signed := strings.Replace(fmt.Sprintf(file, ""), "{header: X-Acme-Signature}", `{header: X-Acme-Signature, signed_content: "{id}.{body}"}`, 1)
	if _, err := config.Parse([]byte(signed), env); err != nil {
		t.Errorf("with {id} in the signed content: %v", err)
	}
}
