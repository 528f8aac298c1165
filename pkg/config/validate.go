package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/netaddr"
	"github.com/switchyard/switchyard/pkg/redelivery"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/subjects"
)

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	// Field is the path of the field, e.g. destinations[1].retry.backoff[0].
	Field string
	// Problem says what is wrong and, where it can, what would be right.
	Problem string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Problem }

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// namePattern is what source and destination names may look like: they
// become subject tokens and consumer names.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Schemes lists the verification schemes a source may name.
var Schemes = signing.Schemes

// Validate checks a configuration that has had WithDefaults applied and
// returns a *ValidationError listing every problem, or nil.
func (c Config) Validate() error {
	var p problems
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	c.Telemetry.Traces.validate(&p)
	if c.NATS.URL != "" {
		// A comma-separated list of seed servers is allowed, as nats.go
		// takes it: nats://n1:4222,nats://n2:4222.
		for i, one := range strings.Split(c.NATS.URL, ",") {
			if u, err := url.Parse(strings.TrimSpace(one)); err != nil || u.Host == "" {
				p.add("nats.url", "server %d must be a URL such as nats://127.0.0.1:4222 (several are separated by commas); got %q", i+1, redactUserinfo(one))
			}
		}
		if c.NATS.EmbeddedListen != "" {
			p.add("nats.embedded_listen", "is only used by the embedded server; remove it or remove nats.url")
		}
	}
	checkNATSAuth(&p, c.NATS)
	if c.NATS.Replicas != 1 && c.NATS.Replicas != 3 && c.NATS.Replicas != 5 {
		p.add("nats.replicas", "must be 1, 3 or 5, not %d", c.NATS.Replicas)
	}
	if c.NATS.URL == "" && c.NATS.Replicas != 1 {
		p.add("nats.replicas", "must be 1 with the embedded server (it is a single node)")
	}
	if c.NATS.DuplicateWindow.D() > c.NATS.EventsMaxAge.D() {
		p.add("nats.duplicate_window", "(%s) must not exceed nats.events_max_age (%s)", c.NATS.DuplicateWindow, c.NATS.EventsMaxAge)
	}
	checkListen(&p, "ops.listen", c.Ops.Listen, true)
	checkOps(&p, c.Ops)
	checkListen(&p, "ingress.listen", c.Ingress.Listen, false)
	checkListen(&p, "auditor.listen", c.Auditor.Listen, false)
	if c.Ingress.MaxBody <= 0 {
		p.add("ingress.max_body", "must be positive")
	}
	if c.Ingress.ReadTimeout.D() <= 0 {
		p.add("ingress.read_timeout", "must be positive, not %s", c.Ingress.ReadTimeout)
	}
	if c.Ingress.PublishTimeout.D() <= 0 {
		p.add("ingress.publish_timeout", "must be positive, not %s", c.Ingress.PublishTimeout)
	}
	c.validateIngress(&p)
	if c.Demo.GenerateEvery.D() < 0 {
		p.add("demo.generate_every", "must not be negative (0 turns the generator off)")
	}
	if c.Auditor.BatchSize < 1 || c.Auditor.BatchSize > 10000 {
		p.add("auditor.batch_size", "must be between 1 and 10000, not %d", c.Auditor.BatchSize)
	}
	checkAuditor(&p, c.Auditor)
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL.Reveal())
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// Do not echo the value: it may hold a password.
			p.add("database_url", "must be a postgres:// URL (the value is not shown because it may contain a password)")
		}
	}
	c.Alerts.validate(&p, c)

	seen := map[string]bool{}
	for i, s := range c.Sources {
		f := fmt.Sprintf("sources[%d]", i)
		checkName(&p, f+".name", s.Name, seen, "source")
		checkIDNamespace(&p, f+".name", s.Name)
		s.Contract.validate(&p, f+".contract")
		if s.Poll != nil {
			if s.Contract != nil && s.Contract.OnInvalid == OnInvalidReject {
				p.add(f+".contract.on_invalid", "cannot be %s for a polled source: there is no request to answer 422; its items that break the contract are quarantined (on_invalid: %s)", OnInvalidReject, OnInvalidQuarantine)
			}
			validatePoll(&p, f, s)
			if s.MaxBody <= 0 {
				p.add(f+".max_body", "must be positive")
			}
			continue
		}
		if !slices.Contains(Schemes, s.Scheme) {
			p.add(f+".scheme", "must be one of %s, not %q", strings.Join(Schemes, ", "), s.Scheme)
		}
		if len(s.Secrets) == 0 {
			p.add(f+".secrets", "needs at least one secret")
		}
		for j, sec := range s.Secrets {
			if sec == "" {
				p.add(fmt.Sprintf("%s.secrets[%d]", f, j), "is empty (is its environment variable set?)")
			} else if problem := secretProblem(s.Scheme, sec.Reveal()); problem != "" {
				// The problem never quotes the value: it is a secret.
				p.add(fmt.Sprintf("%s.secrets[%d]", f, j), "%s", problem)
			}
		}
		if s.Tolerance.D() < time.Second {
			p.add(f+".tolerance", "must be at least 1s, not %s", s.Tolerance)
		}
		if s.MaxBody <= 0 {
			p.add(f+".max_body", "must be positive")
		}
		validateSourceOptions(&p, f, s)
	}

	seen = map[string]bool{}
	for i, d := range c.Destinations {
		f := fmt.Sprintf("destinations[%d]", i)
		if !namePattern.MatchString(d.Name) {
			p.add(f+".name", "%q must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", d.Name)
		} else if seen[d.Name] {
			p.add(f+".name", "%q is used by another destination", d.Name)
		}
		seen[d.Name] = true
		if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(f+".url", "must be an http(s) URL, not %q", d.URL)
		}
		if len(d.Subjects) == 0 {
			p.add(f+".subjects", "needs at least one subject, e.g. events.order.> or webhooks.shop.>")
		}
		for j, s := range d.Subjects {
			if err := subjects.CheckRoute(s); err != nil {
				p.add(fmt.Sprintf("%s.subjects[%d]", f, j), "%v", err)
			}
			for k := 0; k < j; k++ {
				if subjects.Overlap(s, d.Subjects[k]) {
					p.add(fmt.Sprintf("%s.subjects[%d]", f, j), "%q overlaps subjects[%d] %q; JetStream needs non-overlapping filters, keep the wider one", s, k, d.Subjects[k])
				}
			}
		}
		if d.Timeout.D() <= 0 {
			p.add(f+".timeout", "must be positive")
		}
		if d.Concurrency < 1 || d.Concurrency > 1024 {
			p.add(f+".concurrency", "must be between 1 and 1024, not %d", d.Concurrency)
		}
		if d.MaxAckPending < d.Concurrency {
			p.add(f+".max_ack_pending", "(%d) must be at least concurrency (%d); it must also leave room for events waiting for a retry", d.MaxAckPending, d.Concurrency)
		}
		if d.Retry.MaxAttempts < 1 || d.Retry.MaxAttempts > 100 {
			p.add(f+".retry.max_attempts", "must be between 1 and 100, not %d", d.Retry.MaxAttempts)
		}
		if len(d.Retry.Backoff) == 0 {
			p.add(f+".retry.backoff", "needs at least one step, e.g. [10s, 30s, 2m]")
		}
		for j, b := range d.Retry.Backoff {
			if min := d.Timeout.D() + redelivery.AckMargin(d.Timeout.D()); b.D() < min {
				p.add(fmt.Sprintf("%s.retry.backoff[%d]", f, j),
					"(%s) must be at least timeout (%s) + %s: each step is also the ack wait of the attempt before it, and an attempt still running must not be redelivered",
					b, d.Timeout, redelivery.AckMargin(d.Timeout.D()))
			}
		}
		for name := range d.Headers {
			if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " :\r\n") {
				p.add(f+".headers", "header name %q is not valid", name)
			}
		}
		for j, code := range d.Retry.RetryOnStatus {
			switch {
			case code == 410:
				p.add(fmt.Sprintf("%s.retry.retry_on_status[%d]", f, j), "410 Gone is always permanent: the partner says the endpoint is gone for good")
			case code < 400 || code > 499:
				p.add(fmt.Sprintf("%s.retry.retry_on_status[%d]", f, j), "must be a 4xx status code, not %d (5xx are always retried)", code)
			}
		}
		if d.Ordered && d.Concurrency != 1 {
			p.add(f+".concurrency", "must be 1 for an ordered destination (one event in flight, in stream order), not %d", d.Concurrency)
		}
		checkRateLimit(&p, f+".rate_limit", d.RateLimit)
		checkAuth(&p, f+".auth", d.Auth)
		for j, sec := range d.Signing.StandardWebhooksSecrets {
			if err := checkStandardWebhooksSecret(sec); err != nil {
				p.add(fmt.Sprintf("%s.signing.standard_webhooks_secrets[%d]", f, j), "%v", err)
			}
		}
		checkBreaker(&p, f+".breaker", d.Breaker)
		validateSync(&p, f, d)
		validateMapping(&p, f, d)
	}

	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// secretProblem says what is wrong with a secret for a scheme, without
// quoting it; "" when nothing is.
func secretProblem(scheme, secret string) string {
	switch scheme {
	case "standard-webhooks":
		if strings.HasPrefix(secret, signing.PrefixStandardPublicKey) {
			if _, err := signing.DecodeStandardPublicKey(secret); err != nil {
				return "is not a whpk_ ed25519 public key (whpk_ and the base64 of 32 bytes)"
			}
			return ""
		}
		if _, err := signing.DecodeStandardSecret(secret); err != nil {
			return "is not a Standard Webhooks secret (whsec_ and the base64 of at least 16 bytes) or public key (whpk_...)"
		}
	case "basic":
		if u, pw, ok := strings.Cut(secret, ":"); !ok || u == "" || pw == "" {
			return "must be user:password"
		}
	case "bearer":
		if len(secret) < 16 {
			return "is shorter than 16 characters; use a long random token"
		}
	}
	return ""
}

// validateSourceOptions checks the scheme-specific fields of a source.
func validateSourceOptions(p *problems, f string, s Source) {
	if s.Scheme == "hmac" {
		h := s.HMAC
		if !validHeaderName(h.Header) {
			p.add(f+".hmac.header", "must name the header that carries the signature, e.g. X-Signature")
		}
		if !slices.Contains([]string{"sha256", "sha512", "sha1"}, h.Algorithm) {
			p.add(f+".hmac.algorithm", "must be sha256, sha512 or sha1, not %q", h.Algorithm)
		}
		if h.Encoding != "hex" && h.Encoding != "base64" {
			p.add(f+".hmac.encoding", "must be hex or base64, not %q", h.Encoding)
		}
		if h.TimestampHeader != "" && !validHeaderName(h.TimestampHeader) {
			p.add(f+".hmac.timestamp_header", "%q is not a header name", h.TimestampHeader)
		}
		if _, err := signing.ParseSignedContent(h.SignedContent); err != nil {
			p.add(f+".hmac.signed_content", "%v", err)
		} else {
			hasTS := strings.Contains(h.SignedContent, signing.PlaceholderTimestamp)
			switch {
			case hasTS && h.TimestampHeader == "":
				p.add(f+".hmac.signed_content", "uses {timestamp}; set hmac.timestamp_header too")
			case !hasTS && h.TimestampHeader != "":
				p.add(f+".hmac.signed_content", "must contain {timestamp} when hmac.timestamp_header is set, or the timestamp protects nothing")
			case strings.Contains(h.SignedContent, signing.PlaceholderID) && s.IDHeader == "":
				p.add(f+".hmac.signed_content", "uses {id}; set id_header too")
			}
		}
	} else if s.HMAC != (SourceHMAC{}) {
		p.add(f+".hmac", "is only used by scheme hmac (this source's scheme is %q)", s.Scheme)
	}
	headerSchemes := []string{"hmac", "basic", "bearer"}
	for field, v := range map[string]string{"id_header": s.IDHeader, "type_header": s.TypeHeader} {
		switch {
		case v == "":
		case !slices.Contains(headerSchemes, s.Scheme):
			p.add(f+"."+field, "is only used by schemes hmac, basic and bearer; %s takes ids and types from where the provider puts them", s.Scheme)
		case !validHeaderName(v):
			p.add(f+"."+field, "%q is not a header name", v)
		}
	}
	validateUnsigned(p, f, s)
	rl := s.RateLimit
	switch {
	case rl.PerSecond < 0 || rl.PerSecond > 1e6:
		p.add(f+".rate_limit.per_second", "must be between 0 (no limit) and 1000000, not %g", rl.PerSecond)
	case rl.Burst < 0:
		p.add(f+".rate_limit.burst", "must not be negative")
	case rl.Unlimited && (rl.PerSecond != 0 || rl.Burst != 0):
		p.add(f+".rate_limit.unlimited", "turns the limit off: remove per_second and burst, or unlimited")
	case rl.PerSecond == 0 && rl.Burst != 0:
		p.add(f+".rate_limit.burst", "needs rate_limit.per_second")
	}
}

// validateIngress checks the publish API and idempotency settings.
func (c Config) validateIngress(p *problems) {
	in := c.Ingress
	if in.IdempotencyHorizon.D() < c.NATS.DuplicateWindow.D() {
		p.add("ingress.idempotency_horizon", "(%s) must be at least nats.duplicate_window (%s)", in.IdempotencyHorizon, c.NATS.DuplicateWindow)
	}
	if in.MaxBatch < 1 || in.MaxBatch > 10000 {
		p.add("ingress.max_batch", "must be between 1 and 10000, not %d", in.MaxBatch)
	}
	// Every body a limit allows must be able to get in: a request whose
	// Content-Length alone is over the bound would be answered 503 forever.
	largest, field := in.MaxBody, "ingress.max_body"
	for i, s := range c.Sources {
		if s.Poll == nil && s.MaxBody > largest {
			largest, field = s.MaxBody, fmt.Sprintf("sources[%d].max_body", i)
		}
	}
	if in.MaxBytesInFlight < largest {
		p.add("ingress.max_bytes_in_flight", "(%d bytes) must be at least the largest body limit, %s (%d bytes), or a body at that limit could never be taken", in.MaxBytesInFlight, field, largest)
	}
	names := map[string]bool{}
	keys := map[Secret]int{}
	for i, k := range in.APIKeys {
		f := fmt.Sprintf("ingress.api_keys[%d]", i)
		checkName(p, f+".name", k.Name, names, "key")
		checkIDNamespace(p, f+".name", k.Name)
		k.Contract.validate(p, f+".contract")
		if j := slices.IndexFunc(c.Sources, func(s Source) bool { return s.Name == k.Name }); j >= 0 {
			// Both name the namespace of their event ids, <name>:<id>: one
			// could store events that shadow the other's.
			p.add(f+".name", "%q is also the name of sources[%d]; event ids are <source>:<delivery id> and <key name>:<Idempotency-Key>, so the two must differ", k.Name, j)
		}
		if len(k.Key) < 16 {
			p.add(f+".key", "must be at least 16 characters (is its environment variable set?)")
		} else if j, dup := keys[k.Key]; dup {
			p.add(f+".key", "is the same as ingress.api_keys[%d].key; give each caller its own", j)
		}
		keys[k.Key] = i
	}
	for i, proxy := range in.TrustedProxies {
		if _, err := netaddr.ParseTrustedProxy(proxy); err != nil {
			p.add(fmt.Sprintf("ingress.trusted_proxies[%d]", i), "%v", err)
		}
	}
	ra := in.RejectionAudit
	if ra.PerSecond <= 0 || ra.PerSecond > 1e6 {
		p.add("ingress.rejection_audit.per_second", "must be above 0 and at most 1000000, not %g", ra.PerSecond)
	}
	if ra.Burst < 1 {
		p.add("ingress.rejection_audit.burst", "must be at least 1, not %d", ra.Burst)
	}
	if ra.SummaryInterval.D() < time.Second {
		p.add("ingress.rejection_audit.summary_interval", "must be at least 1s, not %s", ra.SummaryInterval)
	}
	in.Sync.validate(p)
	if in.PollLeaseTTL.D() < time.Second || in.PollLeaseTTL.D() > 10*time.Minute {
		p.add("ingress.poll_lease_ttl", "must be between 1s and 10m, not %s", in.PollLeaseTTL)
	}
}

// ReservedIDPrefix is the namespace of replayed events' ids
// (replay:<dead letter>:<n>): no source or API key may be named so.
const ReservedIDPrefix = "replay"

// checkIDNamespace refuses a source or API key name that is the namespace
// of other events' ids.
func checkIDNamespace(p *problems, field, name string) {
	if name == ReservedIDPrefix {
		p.add(field, "%q is reserved: replayed events have ids %s:<dead letter>:<n>", name, ReservedIDPrefix)
	}
}

// checkName checks a name that becomes a subject token or a label, and
// that it is not in seen (then adds it).
func checkName(p *problems, field, name string, seen map[string]bool, what string) {
	if !namePattern.MatchString(name) {
		p.add(field, "%q must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", name)
	} else if seen[name] {
		p.add(field, "%q is used by another %s", name, what)
	}
	seen[name] = true
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// MinAdminTokenLength is the shortest admin token accepted.
const MinAdminTokenLength = 16

func checkAuditor(p *problems, a Auditor) {
	if a.AdminToken == "" {
		if host, _, err := net.SplitHostPort(a.Listen); err == nil && !netaddr.IsLoopback(host) {
			p.add("auditor.listen", "(%s) is reachable from other hosts, but auditor.admin_token is empty: set admin_token "+
				"(the API then requires it as a bearer token) or listen on 127.0.0.1", a.Listen)
		}
	} else if len(a.AdminToken.Reveal()) < MinAdminTokenLength || strings.TrimSpace(a.AdminToken.Reveal()) != a.AdminToken.Reveal() {
		p.add("auditor.admin_token", "must be at least %d characters without surrounding spaces (the value is not shown because it is a secret)", MinAdminTokenLength)
	}
	r := a.Retention
	if r.Payloads.D() < time.Hour {
		p.add("auditor.retention.payloads", "must be at least 1h, not %s", r.Payloads)
	}
	if r.Records.D() < r.Payloads.D() {
		p.add("auditor.retention.records", "(%s) must be at least auditor.retention.payloads (%s)", r.Records, r.Payloads)
	}
	if r.Interval.D() < time.Minute {
		p.add("auditor.retention.interval", "must be at least 1m, not %s", r.Interval)
	}
	if r.BatchSize < 1 || r.BatchSize > 100000 {
		p.add("auditor.retention.batch_size", "must be between 1 and 100000, not %d", r.BatchSize)
	}
	if a.LagThreshold.D() < time.Second {
		p.add("auditor.lag_threshold", "must be at least 1s, not %s", a.LagThreshold)
	}
}

// checkNATSAuth: at most one credential; the external server's settings
// only with nats.url; a non-loopback embedded listener only with a
// password, since anyone who reaches it could otherwise publish forged
// events, read every payload and delete streams.
func checkNATSAuth(p *problems, n NATS) {
	var methods []string
	if n.User != "" || n.Password != "" {
		methods = append(methods, "user/password")
	}
	if n.Token != "" {
		methods = append(methods, "token")
	}
	if n.NKeySeedFile != "" {
		methods = append(methods, "nkey_seed_file")
	}
	if n.CredentialsFile != "" {
		methods = append(methods, "credentials_file")
	}
	if len(methods) > 1 {
		p.add("nats", "set only one way to authenticate, not %s", strings.Join(methods, " and "))
	}
	if n.User != "" && n.Password == "" {
		p.add("nats.password", "is required with nats.user")
	}
	if n.URL != "" && n.Password != "" && n.User == "" {
		p.add("nats.user", "is required with nats.password for an external server")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		p.add("nats.tls", "cert_file and key_file go together")
	}
	if n.URL == "" {
		externalOnly := func(field string, set bool) {
			if set {
				p.add("nats."+field, "is only used with an external server (nats.url); the embedded one takes nats.password")
			}
		}
		externalOnly("token", n.Token != "")
		externalOnly("nkey_seed_file", n.NKeySeedFile != "")
		externalOnly("credentials_file", n.CredentialsFile != "")
		externalOnly("tls", n.TLS != NATSTLS{})
		if host, _, err := net.SplitHostPort(n.EmbeddedListen); err == nil && n.Password == "" && !netaddr.IsLoopback(host) {
			p.add("nats.embedded_listen", "(%s) listens beyond this machine: set nats.password (e.g. ${NATS_PASSWORD}) so that only clients with it may connect, or listen on 127.0.0.1", n.EmbeddedListen)
		}
	}
}

// checkOps refuses the profiling endpoint where nobody could reach it,
// and where anybody could unless the operator said so (ADR 0740).
func checkOps(p *problems, o Ops) {
	switch {
	case o.PprofAllowRemote && !o.Pprof:
		p.add("ops.pprof_allow_remote", "is only used with ops.pprof: true")
	case !o.Pprof:
	case o.Listen == "off":
		p.add("ops.pprof", "needs the ops listener, but ops.listen is off")
	default:
		if host, _, err := net.SplitHostPort(o.Listen); err == nil && !o.PprofAllowRemote && !netaddr.IsLoopback(host) {
			p.add("ops.pprof", "would serve profiles on %s, which is reachable from other hosts: listen on 127.0.0.1, "+
				"or set ops.pprof_allow_remote: true if the network in front of it is trusted", o.Listen)
		}
	}
}

func checkListen(p *problems, field, addr string, allowOff bool) {
	if allowOff && addr == "off" {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(field, "must be host:port such as 127.0.0.1:8080 or :8080, not %q", addr)
	}
}

func checkRateLimit(p *problems, f string, r RateLimit) {
	switch {
	case r.PerSecond < 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0):
		p.add(f+".per_second", "must be a positive number of events per second, or 0 for no limit")
	case r.PerSecond == 0 && r.Burst != 0:
		p.add(f+".burst", "is only used with per_second")
	case r.PerSecond > 0 && r.Burst < 1:
		p.add(f+".burst", "must be at least 1, not %d", r.Burst)
	}
}

// AuthTypes lists the auth types a destination may name.
var AuthTypes = []string{AuthBearer, AuthBasic, AuthOAuth2ClientCredentials}

func checkAuth(p *problems, f string, a Auth) {
	unused := func(field string, set bool) {
		if set {
			p.add(f+"."+field, "is not used by auth type %q; remove it", a.Type)
		}
	}
	bearer, basic, oauth := a.Type == AuthBearer, a.Type == AuthBasic, a.Type == AuthOAuth2ClientCredentials
	if a.Type != AuthNone && !bearer && !basic && !oauth {
		p.add(f+".type", "must be one of %s, not %q", strings.Join(AuthTypes, ", "), a.Type)
		return
	}
	unused("token", !bearer && a.Token != "")
	unused("username", !basic && a.Username != "")
	unused("password", !basic && a.Password != "")
	unused("token_url", !oauth && a.TokenURL != "")
	unused("client_id", !oauth && a.ClientID != "")
	unused("client_secret", !oauth && a.ClientSecret != "")
	unused("scopes", !oauth && len(a.Scopes) > 0)
	unused("params", !oauth && len(a.Params) > 0)
	unused("client_auth", !oauth && a.ClientAuth != "")
	switch {
	case bearer && a.Token == "":
		p.add(f+".token", "is required for bearer auth (is its environment variable set?)")
	case bearer && strings.ContainsAny(a.Token.Reveal(), "\r\n"):
		p.add(f+".token", "must be one line (the value is not shown because it is a secret)")
	case basic:
		if a.Username == "" {
			p.add(f+".username", "is required for basic auth")
		}
		if strings.Contains(a.Username, ":") {
			p.add(f+".username", "must not contain ':' (basic auth joins username:password)")
		}
		if a.Password == "" {
			p.add(f+".password", "is required for basic auth (is its environment variable set?)")
		}
	case oauth:
		if u, err := url.Parse(a.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(f+".token_url", "must be an http(s) URL, not %q", a.TokenURL)
		}
		if a.ClientID == "" {
			p.add(f+".client_id", "is required for OAuth2 client credentials")
		}
		if a.ClientSecret == "" {
			p.add(f+".client_secret", "is required for OAuth2 client credentials (is its environment variable set?)")
		}
		if a.ClientAuth != "auto" && a.ClientAuth != "header" && a.ClientAuth != "body" {
			p.add(f+".client_auth", "must be auto, header or body, not %q", a.ClientAuth)
		}
	}
}

// checkStandardWebhooksSecret checks a whsec_ secret; the error never
// quotes it.
func checkStandardWebhooksSecret(s Secret) error {
	if s == "" {
		return errors.New("is empty (is its environment variable set?)")
	}
	if _, err := signing.DecodeStandardSecret(s.Reveal()); err != nil {
		return fmt.Errorf("%w (the value is not shown because it is a secret)", err)
	}
	return nil
}

func checkBreaker(p *problems, f string, b Breaker) {
	if b.Disabled {
		return
	}
	if b.ConsecutiveFailures < 1 {
		p.add(f+".consecutive_failures", "must be at least 1, not %d", b.ConsecutiveFailures)
	}
	if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
		p.add(f+".failure_ratio", "must be more than 0 and at most 1, not %v", b.FailureRatio)
	}
	if b.MinRequests < 1 {
		p.add(f+".min_requests", "must be at least 1, not %d", b.MinRequests)
	}
	if b.Window.D() < time.Second {
		p.add(f+".window", "must be at least 1s, not %s", b.Window)
	}
	if b.Cooldown.D() < time.Second {
		p.add(f+".cooldown", "must be at least 1s, not %s", b.Cooldown)
	}
	if b.MaxCooldown.D() < b.Cooldown.D() {
		p.add(f+".max_cooldown", "(%s) must be at least cooldown (%s)", b.MaxCooldown, b.Cooldown)
	}
}

// redactUserinfo hides a password in a URL for an error message.
func redactUserinfo(raw string) string {
	if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "[redacted]@" + raw[at+1:]
	}
	return raw
}

// validateUnsigned checks the fields about what the scheme does not sign:
// an id_header outside the signature needs unsigned_id: allow, and
// type_field replaces an unsigned type header.
func validateUnsigned(p *problems, f string, s Source) {
	idSigned := s.Scheme == "hmac" && strings.Contains(s.HMAC.SignedContent, signing.PlaceholderID)
	switch {
	case s.UnsignedID != "" && s.UnsignedID != UnsignedIDAllow:
		p.add(f+".unsigned_id", "must be %q or empty, not %q", UnsignedIDAllow, s.UnsignedID)
	case s.UnsignedID != "" && s.IDHeader == "":
		p.add(f+".unsigned_id", "allows an id_header the signature does not cover; this source has no id_header")
	case s.UnsignedID != "" && idSigned:
		p.add(f+".unsigned_id", "is not needed: hmac.signed_content covers {id}")
	case s.IDHeader != "" && !idSigned && s.UnsignedID == "" && slices.Contains([]string{"hmac", "basic", "bearer"}, s.Scheme):
		fix := "put {id} in hmac.signed_content if the partner signs it, or"
		if s.Scheme != "hmac" {
			fix = s.Scheme + " signs nothing, so"
		}
		p.add(f+".id_header", "%s is not covered by the signature: anyone who captured a request can send it again under a new id; %s set unsigned_id: %s (a body sent again under a new id is then answered as a duplicate)",
			s.IDHeader, fix, UnsignedIDAllow)
	}
	if s.TypeField == "" {
		return
	}
	switch {
	case !slices.Contains(signing.SchemesWithUnsignedType, s.Scheme):
		p.add(f+".type_field", "is only used by schemes %s; %s takes the event type from the signed body already", strings.Join(signing.SchemesWithUnsignedType, ", "), s.Scheme)
	case s.TypeHeader != "":
		p.add(f+".type_field", "and type_header exclude each other: the type comes from the body or from a header")
	case len(s.TypeField) > 128 || strings.TrimSpace(s.TypeField) != s.TypeField:
		p.add(f+".type_field", "must name a top-level field of the JSON body, e.g. event_type")
	}
}

func (t Traces) validate(p *problems) {
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("telemetry.traces.endpoint", "must be an http:// or https:// URL (OTLP/HTTP, e.g. http://otel-collector:4318/v1/traces)")
		} else if u.User != nil {
			// The URL is logged at start; credentials would leak there.
			p.add("telemetry.traces.endpoint", "must not carry credentials")
		}
	}
	if !(t.SampleRatio > 0 && t.SampleRatio <= 1) {
		p.add("telemetry.traces.sample_ratio", "must be more than 0 and at most 1, not %g (to trace nothing, leave endpoint empty)", t.SampleRatio)
	}
	if !namePattern.MatchString(t.ServiceName) {
		p.add("telemetry.traces.service_name", "must be lower-case letters, digits, '-' and '_', not %q", t.ServiceName)
	}
	if t.QueueSize < 1 || t.QueueSize > 1<<20 {
		p.add("telemetry.traces.queue_size", "must be between 1 and 1048576, not %d", t.QueueSize)
	}
	if t.ExportTimeout.D() <= 0 || t.ExportTimeout.D() > time.Minute {
		p.add("telemetry.traces.export_timeout", "must be more than 0 and at most 1m, not %s", t.ExportTimeout)
	}
}
