// Package config reads and validates Switchyard's single YAML configuration
// file. Values may reference the environment as ${VAR} or ${VAR:-default};
// secrets belong there, not in the file. Load applies defaults and validates
// everything, and its errors name the field and the problem
// ("destinations[1].retry.backoff[0]: must be longer than timeout (5s)").
//
// The README's configuration reference documents every field; keep the two
// in step.
package config

import (
	"math"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// Config is the whole configuration file.
type Config struct {
	// Log selects the log format and level.
	Log Log `yaml:"log"`
	// Telemetry configures tracing (off unless an endpoint is set).
	Telemetry Telemetry `yaml:"telemetry"`
	// NATS says where JetStream is: an external server or the embedded one.
	NATS NATS `yaml:"nats"`
	// DataDir holds the embedded NATS store and the embedded audit store.
	// Default ./data.
	DataDir string `yaml:"data_dir"`
	// DatabaseURL is the Postgres connection string for the audit log. Empty
	// selects the embedded SQLite store under DataDir.
	DatabaseURL Secret `yaml:"database_url"`
	// Ops is the operations listener: /healthz, /readyz and /metrics.
	Ops Ops `yaml:"ops"`
	// Ingress configures the webhook and publish HTTP server.
	Ingress Ingress `yaml:"ingress"`
	// Auditor configures the audit writer and its query API.
	Auditor Auditor `yaml:"auditor"`
	// Sources are the partners that send webhooks.
	Sources []Source `yaml:"sources"`
	// Destinations are the partner APIs events are delivered to.
	Destinations []Destination `yaml:"destinations"`
	// Alerts configures the notifier.
	Alerts Alerts `yaml:"alerts"`
	// Demo runs a demo partner and event generator in the all-in-one.
	Demo Demo `yaml:"demo"`
}

// Log selects the log output.
type Log struct {
	// Format is text or json. Default text.
	Format string `yaml:"format"`
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}

// Telemetry configures what the processes export besides /metrics.
type Telemetry struct {
	// Traces configures OpenTelemetry tracing.
	Traces Traces `yaml:"traces"`
}

// Traces configures OpenTelemetry tracing: a trace starts at ingress (or
// continues the caller's traceparent) and follows an event through EVENTS
// to every delivery attempt.
type Traces struct {
	// Endpoint is the OTLP/HTTP traces URL of a collector, e.g.
	// http://otel-collector:4318/v1/traces. Empty (the default): no span is
	// made, propagated or exported.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of new traces sampled (0 < ratio <= 1); a
	// trace continued from a caller's traceparent follows the caller's
	// decision. Default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName prefixes each process's service.name:
	// <service_name>-ingress, -dispatcher, -auditor (also in the
	// all-in-one, so that a trace shows which service did what). Default
	// switchyard.
	ServiceName string `yaml:"service_name"`
	// QueueSize bounds the spans waiting to be exported per service; past
	// it spans are dropped and counted
	// (switchyard_trace_spans_dropped_total). Default 2048.
	QueueSize int `yaml:"queue_size"`
	// ExportTimeout bounds one export request. Default 5s.
	ExportTimeout Duration `yaml:"export_timeout"`
}

// NATS says how to reach JetStream.
type NATS struct {
	// URL of an external NATS server (2.11 or newer). Empty starts an
	// embedded server with its store under data_dir/nats.
	URL string `yaml:"url"`
	// CredentialsFile is a NATS .creds file (user JWT and nkey seed) for an
	// external server in operator mode.
	CredentialsFile string `yaml:"credentials_file"`
	// User and Password authenticate to an external server. With the
	// embedded server, Password (user "switchyard" unless User is set)
	// replaces the password generated at first start in
	// data_dir/nats-password; a non-loopback EmbeddedListen needs it.
	User     string `yaml:"user"`
	Password Secret `yaml:"password"`
	// Token authenticates to an external server by token.
	Token Secret `yaml:"token"`
	// NKeySeedFile is a file holding a user nkey seed, for an external
	// server that knows the user's public nkey.
	NKeySeedFile string `yaml:"nkey_seed_file"`
	// TLS is how to reach an external server over TLS.
	TLS NATSTLS `yaml:"tls"`
	// Replicas for every stream: 1 on a single server, 3 on a cluster.
	// Default 1.
	Replicas int `yaml:"replicas"`
	// EmbeddedListen is the client address of the embedded server, for
	// tools such as the nats CLI. Empty: in-process connections only. An
	// address other than loopback (127.0.0.1, ::1, localhost) needs
	// Password.
	EmbeddedListen string `yaml:"embedded_listen"`
	// EventsMaxAge is how long EVENTS keeps events. Default 7d.
	EventsMaxAge Duration `yaml:"events_max_age"`
	// DuplicateWindow is the JetStream Nats-Msg-Id dedup window on EVENTS.
	// Default 2m.
	DuplicateWindow Duration `yaml:"duplicate_window"`
}

// NATSTLS is the client side of TLS to an external NATS server. Any field
// set turns TLS on.
type NATSTLS struct {
	// CAFile is a PEM file of the CAs the server's certificate must chain
	// to. Empty: the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate and key, for a server
	// that verifies clients. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Ops is the operations HTTP listener.
type Ops struct {
	// Listen address for /healthz, /readyz and /metrics. Default
	// 127.0.0.1:9090; "off" disables it.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// the ops listener. Default false. A profile shows a process's
	// internals and costs CPU to take, so it is refused on a listener
	// other than loopback unless PprofAllowRemote is set too.
	Pprof bool `yaml:"pprof"`
	// PprofAllowRemote lets Pprof serve on an ops listener other than
	// loopback (e.g. 0.0.0.0:9090 in a container, reached through a port
	// forward). Default false.
	PprofAllowRemote bool `yaml:"pprof_allow_remote"`
}

// Ingress configures the HTTP server partners post webhooks to.
type Ingress struct {
	// Listen address. Default :8080.
	Listen string `yaml:"listen"`
	// MaxBody is the default request body limit for sources, and the
	// publish API's. Default 1MiB - 8KiB (1016KiB): a body and its envelope
	// (events.EnvelopeAllowance) must fit in the NATS server's max_payload,
	// 1 MiB unless configured otherwise; ingress refuses to start if they
	// do not.
	MaxBody ByteSize `yaml:"max_body"`
	// MaxBytesInFlight bounds the request bodies the ingress process holds
	// at once, webhooks and the publish API together: a request takes its
	// Content-Length (a chunked body, what it has sent) before its body is
	// read, and is answered 503 with Retry-After past the bound. Default
	// 64MiB; at least every body limit.
	MaxBytesInFlight ByteSize `yaml:"max_bytes_in_flight"`
	// ReadTimeout bounds reading a whole request. Default 10s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// PublishTimeout bounds waiting for the JetStream PubAck before answering
	// 503. Default 5s.
	PublishTimeout Duration `yaml:"publish_timeout"`
	// IdempotencyHorizon is how long a delivery id (or Idempotency-Key) is
	// remembered after the JetStream duplicate window has passed: a
	// redelivery within it is answered 2xx and stores nothing. Default 72h;
	// at least nats.duplicate_window.
	IdempotencyHorizon Duration `yaml:"idempotency_horizon"`
	// APIKeys are the bearer keys our own services use on the publish API
	// (POST /v1/events). None: the publish API answers 401 to everyone.
	APIKeys []IngressAPIKey `yaml:"api_keys"`
	// MaxBatch is the most events one batch request may carry. Default 500.
	MaxBatch int `yaml:"max_batch"`
	// TrustedProxies are the load balancers or reverse proxies in front of
	// ingress (CIDRs such as 10.0.0.0/8, or single addresses): only a
	// request from one of them may name the client with X-Forwarded-For or
	// X-Real-IP. Empty: the peer address is the client, and those headers
	// are ignored (anyone could forge them).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RejectionAudit bounds the audit records of refused requests, which
	// anyone can cause without a key or a signature.
	RejectionAudit RejectionAudit `yaml:"rejection_audit"`
	// Sync bounds synchronous publishes (POST /v1/events?wait=...).
	Sync IngressSync `yaml:"sync"`
	// PollLeaseTTL is how long a replica's lease on a polled source lasts
	// unrenewed: how long a source goes unpolled after its replica dies.
	// Default 30s.
	PollLeaseTTL Duration `yaml:"poll_lease_ttl"`
}

// RejectionAudit is a token bucket per source (one for the publish API,
// one for all unknown sources) for the audit records of refused requests.
// Over it a refusal is still answered as always, but only counted; every
// SummaryInterval one summary record per source and reason says how many
// were not recorded one by one.
type RejectionAudit struct {
	// PerSecond is the sustained rate of rejection records per source.
	// Default 1.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many may be recorded at once. Default 100.
	Burst int `yaml:"burst"`
	// SummaryInterval is how often the rejections over the limit are
	// summarised. Default 1m.
	SummaryInterval Duration `yaml:"summary_interval"`
}

// IngressAPIKey is one caller of the publish API.
type IngressAPIKey struct {
	// Name identifies the caller in the audit log and metrics (never the
	// key itself): lower-case letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	// Key is the bearer token, at least 16 characters.
	Key Secret `yaml:"key"`
	// Contract, when set, validates the payloads published with this key
	// (JSON Schema per event type). Default: none.
	Contract *Contract `yaml:"contract,omitempty"`
}

// Auditor configures the audit writer and query API.
type Auditor struct {
	// Listen address of the query and replay API. Default 127.0.0.1:8081.
	// Without AdminToken it must be a loopback address.
	Listen string `yaml:"listen"`
	// BatchSize is how many audit records are written per transaction.
	// Default 500.
	BatchSize int `yaml:"batch_size"`
	// AdminToken is the bearer token the query and replay API require
	// (Authorization: Bearer <token>). Empty: no token is asked for, and
	// the API may only listen on loopback.
	AdminToken Secret `yaml:"admin_token"`
	// Retention says how long the audit log keeps what.
	Retention AuditRetention `yaml:"retention"`
	// LagThreshold: the writer reports itself behind (AuditLag) when writes
	// have failed, or an item has waited, this long. Default 30s.
	LagThreshold Duration `yaml:"lag_threshold"`
}

// AuditRetention bounds what the audit log keeps. Old rows are removed in
// small batches, each its own short transaction.
type AuditRetention struct {
	// Payloads is how long event bodies are kept; after it the body is
	// dropped and the metadata (hash, size, headers) stays. Default 30d.
	Payloads Duration `yaml:"payloads"`
	// Records is how long rows are kept at all. Default 90d.
	Records Duration `yaml:"records"`
	// Interval between retention runs. Default 1h.
	Interval Duration `yaml:"interval"`
	// BatchSize is the most rows one statement changes. Default 1000.
	BatchSize int `yaml:"batch_size"`
}

// Source is a partner that posts webhooks to /webhooks/{name}, or, with
// Poll, one whose API Switchyard polls.
type Source struct {
	// Name appears in the URL and in subjects (webhooks.<name>.<type>):
	// lower-case letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	// Scheme is how requests are verified: one of Schemes. Not used with
	// Poll.
	Scheme string `yaml:"scheme"`
	// Poll, instead of a scheme, makes Switchyard poll the partner's API
	// for new items.
	Poll *SourcePoll `yaml:"poll,omitempty"`
	// Secrets are the active signing secrets (public keys for Standard
	// Webhooks v1a, user:password for basic, tokens for bearer); several
	// during a rotation.
	Secrets []Secret `yaml:"secrets"`
	// Tolerance is how far the signed timestamp may be from now, both ways,
	// for the schemes that sign one. Default 5m.
	Tolerance Duration `yaml:"tolerance"`
	// MaxBody overrides ingress.max_body for this source.
	MaxBody ByteSize `yaml:"max_body"`
	// HMAC configures the generic hmac scheme (and only it).
	HMAC SourceHMAC `yaml:"hmac"`
	// IDHeader names the request header that carries the sender's delivery
	// id, for the hmac, basic and bearer schemes. Empty: the id is a hash
	// of the source and the body.
	IDHeader string `yaml:"id_header"`
	// TypeHeader names the request header that carries the event type, for
	// the hmac, basic and bearer schemes. Empty: the body's top-level
	// "type" field. A header is not signed: anyone who captured a request
	// can send its body again under another type.
	TypeHeader string `yaml:"type_header"`
	// TypeField names a top-level string field of the JSON body that holds
	// the event type, for github, shopify, hmac, basic and bearer: routing
	// then follows the signed body rather than an unsigned header
	// (X-GitHub-Event, X-Shopify-Topic, type_header). Not with type_header.
	TypeField string `yaml:"type_field"`
	// UnsignedID must be "allow" for an id_header whose value the signature
	// does not cover: always with basic and bearer, and with hmac unless
	// hmac.signed_content contains {id}. Such an id can be changed by
	// anyone who captured a request; ingress also remembers each body of
	// the source to recognise the replay
	// (docs/decisions/0405-unsigned-delivery-ids-are-opted-into.md).
	UnsignedID string `yaml:"unsigned_id"`
	// RateLimit bounds the requests this source may make.
	RateLimit SourceRateLimit `yaml:"rate_limit"`
	// Contract, when set, validates the source's payloads (JSON Schema per
	// event type); a payload that breaks it is quarantined or refused.
	// Webhook sources only. Default: none, nothing is checked.
	Contract *Contract `yaml:"contract,omitempty"`
}

// SourceHMAC describes a partner's own HMAC signature for the generic hmac
// scheme.
type SourceHMAC struct {
	// Header carries the signature. Required.
	Header string `yaml:"header"`
	// Algorithm is sha256, sha512 or sha1. Default sha256.
	Algorithm string `yaml:"algorithm"`
	// Encoding of the signature: hex or base64. Default hex.
	Encoding string `yaml:"encoding"`
	// Prefix precedes the signature in the header, e.g. "sha256=".
	Prefix string `yaml:"prefix"`
	// TimestampHeader carries a signed Unix timestamp (seconds); requests
	// outside the source's tolerance are refused. Empty: none.
	TimestampHeader string `yaml:"timestamp_header"`
	// SignedContent is what the MAC covers, with the placeholders {body},
	// {timestamp} and {id}. Default "{body}", or "{timestamp}.{body}" with
	// a timestamp header.
	SignedContent string `yaml:"signed_content"`
}

// SourceRateLimit is a token bucket per source (and ingress replica); over
// it, requests are answered 429 with Retry-After, before the body is read
// or a signature checked. Every webhook source has one unless Unlimited:
// anyone can post forged requests, and verifying them costs CPU.
type SourceRateLimit struct {
	// PerSecond is the sustained rate. Default DefaultSourceRatePerSecond.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many requests may arrive at once. Default: twice
	// PerSecond rounded up (DefaultSourceRateBurst for the default rate).
	Burst int `yaml:"burst"`
	// Unlimited turns the limit off (with neither PerSecond nor Burst).
	Unlimited bool `yaml:"unlimited"`
}

// The default rate limit of a webhook source: 50 requests per second with
// bursts of 100, per ingress replica. Far above what one partner sends,
// and it bounds the CPU a flood of forged requests can cost
// (docs/decisions/0403-ed25519-signatures-bounded.md).
const (
	DefaultSourceRatePerSecond = 50
	DefaultSourceRateBurst     = 2 * DefaultSourceRatePerSecond
)

// WithDefaults returns the limit with its defaults applied: the default
// rate unless Unlimited, and a burst of twice the rate rounded up.
func (r SourceRateLimit) WithDefaults() SourceRateLimit {
	if r.Unlimited {
		return r
	}
	setDefault(&r.PerSecond, DefaultSourceRatePerSecond)
	if r.PerSecond > 0 && r.Burst == 0 {
		r.Burst = max(1, int(math.Ceil(2*r.PerSecond)))
	}
	return r
}

// Destination is a partner API that receives events.
type Destination struct {
	// Name identifies the destination in consumers, subjects and alerts.
	Name string `yaml:"name"`
	// URL events are POSTed to.
	URL string `yaml:"url"`
	// Subjects are the EVENTS subjects routed here (events.>, webhooks.>
	// patterns). They must not overlap each other.
	Subjects []string `yaml:"subjects"`
	// Timeout bounds one HTTP attempt. Default 5s. Must be shorter than
	// every retry backoff step.
	Timeout Duration `yaml:"timeout"`
	// Retry is the retry policy.
	Retry Retry `yaml:"retry"`
	// Concurrency is the most in-flight requests. Default 8.
	Concurrency int `yaml:"concurrency"`
	// MaxAckPending bounds the events delivered but not yet finished
	// (in flight plus waiting for a retry). Default 10000.
	MaxAckPending int `yaml:"max_ack_pending"`
	// Headers are added to every request.
	Headers map[string]Secret `yaml:"headers"`
	// AllowPrivateNetwork permits a URL (and an OAuth2 token URL) that
	// resolves to a loopback, private or link-local address. Default false.
	AllowPrivateNetwork bool `yaml:"allow_private_network"`
	// RateLimit caps the events per second sent to this destination.
	// Default: no limit.
	RateLimit RateLimit `yaml:"rate_limit"`
	// Ordered delivers one event at a time in stream order: an event that
	// fails holds back the ones after it until it is delivered or
	// dead-lettered. Requires concurrency 1 (the default when ordered).
	Ordered bool `yaml:"ordered"`
	// Auth authenticates requests: bearer, basic or OAuth2 client
	// credentials. Default none (static headers still apply).
	Auth Auth `yaml:"auth"`
	// Signing signs requests with Standard Webhooks. Default none.
	Signing Signing `yaml:"signing"`
	// Breaker is the circuit breaker that pauses the destination while the
	// partner is down.
	Breaker Breaker `yaml:"breaker"`
	// Mode is async (publishers are answered once the event is stored) or
	// sync (a publish routed here waits for the answer by default, as with
	// ?wait=). Default async.
	Mode string `yaml:"mode"`
	// SyncHeaders are response headers passed on to a publisher waiting
	// for the answer, besides the built-in ones (Content-Type, Location,
	// ETag, ...). Credentials and cookies are never passed on.
	SyncHeaders []string `yaml:"sync_headers"`
	// Filter is a CEL expression over the event (id, type, source, subject,
	// headers by lower-case name, data: the parsed body) that decides
	// whether the destination gets it, e.g. data.shipping_address.country_code
	// in ["DE", "FR"]. Events it leaves out are acknowledged without an
	// attempt. Default none: every event routed here.
	Filter string `yaml:"filter"`
	// Transform maps the body to the partner's shape, with header and URL
	// path templates. Default none: the body is sent as stored.
	Transform Transform `yaml:"transform"`
}

// Retry is a destination's retry policy, carried out by JetStream ack-wait
// redelivery: attempt n+1 happens Backoff[n-1] after attempt n started.
type Retry struct {
	// Backoff is the schedule. Default [10s, 30s, 2m, 10m, 30m].
	Backoff []Duration `yaml:"backoff"`
	// MaxAttempts includes the first attempt. Default 6.
	MaxAttempts int `yaml:"max_attempts"`
	// RetryOnStatus lists 4xx status codes this partner uses for temporary
	// trouble (a 404 while it deploys, a 423 Locked), retried instead of
	// dead-lettered. 408, 409, 425 and 429 are always retried; 410 Gone is
	// always permanent.
	RetryOnStatus []int `yaml:"retry_on_status"`
}

// RateLimit is a token bucket: PerSecond events per second on average,
// with bursts of up to Burst.
type RateLimit struct {
	// PerSecond is the average rate; 0 means no limit.
	PerSecond float64 `yaml:"per_second"`
	// Burst is the most events sent at once after a quiet spell. Default
	// max(1, per_second rounded up).
	Burst int `yaml:"burst"`
}

// Auth types a destination may name.
const (
	AuthNone                    = ""
	AuthBearer                  = "bearer"
	AuthBasic                   = "basic"
	AuthOAuth2ClientCredentials = "oauth2-client-credentials"
)

// Auth is how requests to a destination authenticate.
type Auth struct {
	// Type is bearer, basic or oauth2-client-credentials; empty for none.
	Type string `yaml:"type"`
	// Token is the bearer token (type bearer).
	Token Secret `yaml:"token"`
	// Username and Password are the basic credentials (type basic).
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// TokenURL, ClientID and ClientSecret are the OAuth2 client
	// credentials (type oauth2-client-credentials).
	TokenURL     string `yaml:"token_url"`
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// Scopes are requested with the token.
	Scopes []string `yaml:"scopes"`
	// Params are extra token request parameters (audience, resource).
	Params map[string]string `yaml:"params"`
	// ClientAuth is how the client authenticates to the token URL: header
	// (HTTP basic), body (form fields) or auto (try header, then body).
	// Default auto.
	ClientAuth string `yaml:"client_auth"`
}

// Signing is how requests to a destination are signed.
type Signing struct {
	// StandardWebhooksSecrets sign with Standard Webhooks (webhook-id,
	// webhook-timestamp, webhook-signature): one signature per secret, so
	// that during a rotation the partner accepts either.
	StandardWebhooksSecrets []Secret `yaml:"standard_webhooks_secrets"`
}

// Breaker is a destination's circuit breaker. Only retryable failures
// (timeouts, connection errors, 408/409/425/429/5xx) count against the partner:
// any answer that is not one of those shows it is up.
type Breaker struct {
	// Disabled turns the breaker off.
	Disabled bool `yaml:"disabled"`
	// ConsecutiveFailures opens the breaker after this many retryable
	// failures in a row, across every dispatcher replica. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRatio opens the breaker when at least this share of the
	// attempts in Window failed (retryable), once MinRequests attempts were
	// made in it. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is the fewest attempts in Window for FailureRatio to
	// apply. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the span FailureRatio is measured over. Default 1m.
	Window Duration `yaml:"window"`
	// Cooldown is how long the breaker stays open before one probe
	// attempt. It doubles after each failed probe, up to MaxCooldown.
	// Default 30s.
	Cooldown Duration `yaml:"cooldown"`
	// MaxCooldown caps the growing cooldown. Default 5m.
	MaxCooldown Duration `yaml:"max_cooldown"`
}

// Demo runs a small partner and an event generator inside the all-in-one so
// that a newcomer sees retries, deliveries and dead letters at once.
type Demo struct {
	// Enabled turns the demo on.
	Enabled bool `yaml:"enabled"`
	// PartnerListen is the demo partner's address. Default 127.0.0.1:9999.
	PartnerListen string `yaml:"partner_listen"`
	// GenerateEvery publishes a demo event this often; 0 disables it.
	GenerateEvery Duration `yaml:"generate_every"`
}

// UnsignedIDAllow is the value of sources[].unsigned_id that accepts an
// id_header the signature does not cover.
const UnsignedIDAllow = "allow"

// Defaults used by WithDefaults.
const (
	DefaultIngressListen    = ":8080"
	DefaultAuditorListen    = "127.0.0.1:8081"
	DefaultOpsListen        = "127.0.0.1:9090"
	DefaultMaxBody          = ByteSize(1<<20 - 8<<10)
	DefaultMaxBytesInFlight = ByteSize(64 << 20)
	DefaultTimeout          = Duration(5 * time.Second)
	DefaultTolerance        = Duration(5 * time.Minute)
	DefaultMaxAttempts      = 6
	DefaultConcurrency      = 8
	DefaultMaxAckPending    = 10000
	DefaultEventsMaxAge     = Duration(7 * 24 * time.Hour)
	DefaultDuplicateWindow  = Duration(2 * time.Minute)
	DefaultPayloadRetention = Duration(30 * 24 * time.Hour)
	DefaultRecordRetention  = Duration(90 * 24 * time.Hour)

	DefaultBreakerConsecutiveFailures = 5
	DefaultBreakerFailureRatio        = 0.5
	DefaultBreakerMinRequests         = 20
	DefaultBreakerWindow              = Duration(time.Minute)
	DefaultBreakerCooldown            = Duration(30 * time.Second)
	DefaultBreakerMaxCooldown         = Duration(5 * time.Minute)

	DefaultIdempotencyHorizon = Duration(72 * time.Hour)
	DefaultMaxBatch           = 500

	DefaultRejectionAuditPerSecond = 1
	DefaultRejectionAuditBurst     = 100
	DefaultRejectionAuditInterval  = Duration(time.Minute)
)

// DefaultBackoff is the default retry schedule.
func DefaultBackoff() []Duration {
	return []Duration{
		Duration(10 * time.Second), Duration(30 * time.Second), Duration(2 * time.Minute),
		Duration(10 * time.Minute), Duration(30 * time.Minute),
	}
}

// Defaults is the configuration of an empty file: every field at its
// default. It is the one place the defaults are written (WithDefaults);
// whatever needs a default reads it from here.
func Defaults() Config { return Config{}.WithDefaults() }

// WithDefaults returns a copy of c with every unset field at its default.
func (c Config) WithDefaults() Config {
	setDefault(&c.Log.Format, "text")
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Telemetry.Traces.SampleRatio, 1)
	setDefault(&c.Telemetry.Traces.ServiceName, "switchyard")
	setDefault(&c.Telemetry.Traces.QueueSize, 2048)
	setDefault(&c.Telemetry.Traces.ExportTimeout, Duration(5*time.Second))
	setDefault(&c.DataDir, "./data")
	setDefault(&c.Ops.Listen, DefaultOpsListen)
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	setDefault(&c.NATS.EventsMaxAge, DefaultEventsMaxAge)
	setDefault(&c.NATS.DuplicateWindow, DefaultDuplicateWindow)
	setDefault(&c.Ingress.Listen, DefaultIngressListen)
	setDefault(&c.Ingress.MaxBody, DefaultMaxBody)
	setDefault(&c.Ingress.MaxBytesInFlight, DefaultMaxBytesInFlight)
	setDefault(&c.Ingress.ReadTimeout, Duration(10*time.Second))
	setDefault(&c.Ingress.PublishTimeout, Duration(5*time.Second))
	setDefault(&c.Ingress.IdempotencyHorizon, DefaultIdempotencyHorizon)
	setDefault(&c.Ingress.MaxBatch, DefaultMaxBatch)
	setDefault(&c.Ingress.RejectionAudit.PerSecond, DefaultRejectionAuditPerSecond)
	setDefault(&c.Ingress.RejectionAudit.Burst, DefaultRejectionAuditBurst)
	setDefault(&c.Ingress.RejectionAudit.SummaryInterval, DefaultRejectionAuditInterval)
	c.Ingress.Sync = c.Ingress.Sync.withDefaults()
	setDefault(&c.Ingress.PollLeaseTTL, DefaultPollLeaseTTL)
	setDefault(&c.Auditor.Listen, DefaultAuditorListen)
	setDefault(&c.Auditor.BatchSize, 500)
	setDefault(&c.Auditor.LagThreshold, Duration(30*time.Second))
	setDefault(&c.Auditor.Retention.Payloads, DefaultPayloadRetention)
	setDefault(&c.Auditor.Retention.Records, DefaultRecordRetention)
	setDefault(&c.Auditor.Retention.Interval, Duration(time.Hour))
	setDefault(&c.Auditor.Retention.BatchSize, 1000)
	setDefault(&c.Demo.PartnerListen, "127.0.0.1:9999")
	c.Alerts = c.Alerts.WithDefaults()

	c.Sources = append([]Source(nil), c.Sources...)
	for i := range c.Sources {
		s := &c.Sources[i]
		s.Contract = s.Contract.withDefaults()
		// A polled source's max_body bounds one item.
		setDefault(&s.MaxBody, c.Ingress.MaxBody)
		if s.Poll != nil {
			p := s.Poll.withDefaults()
			s.Poll = &p
			continue
		}
		setDefault(&s.Tolerance, DefaultTolerance)
		if s.Scheme == "hmac" {
			setDefault(&s.HMAC.Algorithm, signing.DefaultHMACAlgorithm)
			setDefault(&s.HMAC.Encoding, signing.DefaultHMACEncoding)
			setDefault(&s.HMAC.SignedContent, signing.DefaultSignedContent(s.HMAC.TimestampHeader))
		}
		s.RateLimit = s.RateLimit.WithDefaults()
	}
	c.Ingress.APIKeys = append([]IngressAPIKey(nil), c.Ingress.APIKeys...)
	for i := range c.Ingress.APIKeys {
		c.Ingress.APIKeys[i].Contract = c.Ingress.APIKeys[i].Contract.withDefaults()
	}
	c.Destinations = append([]Destination(nil), c.Destinations...)
	for i := range c.Destinations {
		d := &c.Destinations[i]
		setDefault(&d.Timeout, DefaultTimeout)
		setDefault(&d.Mode, ModeAsync)
		d.Transform = d.Transform.withDefaults()
		if d.Ordered {
			setDefault(&d.Concurrency, 1)
		}
		setDefault(&d.Concurrency, DefaultConcurrency)
		if d.RateLimit.PerSecond > 0 {
			setDefault(&d.RateLimit.Burst, max(1, int(math.Ceil(d.RateLimit.PerSecond))))
		}
		if d.Auth.Type == AuthOAuth2ClientCredentials {
			setDefault(&d.Auth.ClientAuth, "auto")
		}
		b := &d.Breaker
		setDefault(&b.ConsecutiveFailures, DefaultBreakerConsecutiveFailures)
		setDefault(&b.FailureRatio, DefaultBreakerFailureRatio)
		setDefault(&b.MinRequests, DefaultBreakerMinRequests)
		setDefault(&b.Window, DefaultBreakerWindow)
		setDefault(&b.Cooldown, DefaultBreakerCooldown)
		setDefault(&b.MaxCooldown, max(DefaultBreakerMaxCooldown, b.Cooldown))
		setDefault(&d.MaxAckPending, DefaultMaxAckPending)
		setDefault(&d.Retry.MaxAttempts, DefaultMaxAttempts)
		if d.Retry.Backoff == nil {
			d.Retry.Backoff = DefaultBackoff()
		}
	}
	return c
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Source returns the source called name.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}
