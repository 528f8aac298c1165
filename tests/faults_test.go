package tests

// The fault matrix's harness. Each scenario gets a fresh system: its own
// Postgres schema behind a TCP proxy (pgtest.Proxy, which a scenario can
// cut), its own single-node nats-server process with a file store and
// sync_interval: always, and ingress, two dispatchers, the auditor and the
// notifier each as its own process, all from one configuration written for
// the scenario; a fake partner that records every request it receives and
// can fail, hang or close its listener; and a fake Slack. A load generator
// offers signed Standard Webhooks (retried by the sender until 2xx, as
// providers do) and direct publishes by our own services (pkg/events.Publish:
// JetStream with Nats-Msg-Id), paced over the scenario, while the
// scenario's fault runs. Then the runner waits until every accepted event
// is settled and checks the invariants (checkInvariants); a broken one
// fails the test after the table of every scenario is printed.
//
// `make test` runs a short scenario (TestFaultsShort); `make chaos` the
// matrix with at least 10,000 events per scenario (TestFaultMatrix,
// faults_matrix_test.go). Adding a scenario is adding a row to a table.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// faultDest is the destination every scenario delivers to: it takes the
// webhooks and the direct publishes.
const faultDest = "erp"

// faultCooldown is the breaker's cooldown in the scenarios (it doubles
// once after a failed probe).
const faultCooldown = 2 * time.Second

// faultScenario is one row of the fault matrix.
type faultScenario struct {
	name string
	// events are offered at rate per second.
	events, rate int
	// settings tweaks the scenario's configuration (defaultFaultSettings).
	settings func(*faultSettings)
	// respond is the partner's answer to a request while it is neither
	// down nor hanging; nil answers 204.
	respond func(partnerCall) partnerReply
	// latency: the partner takes a uniformly random time up to this to
	// answer, so that requests are in flight when a fault strikes.
	latency time.Duration
	// slack scripts the fake Slack's answers (slacktest.New); none: 200 ok.
	slack []slacktest.Answer
	// natsConfig and config edit the rendered nats-server and Switchyard
	// configuration files (a store limit, a setting the knobs lack).
	natsConfig, config func(string) string
	// fault runs in the test goroutine while the load runs. It marks each
	// fault's span with f.begin / the returned end, which the recovery
	// time is measured from.
	fault func(f *faultRun)
	// deadLetters says which events must be dead-lettered (all of them,
	// and no other); nil: none may be.
	deadLetters func(n int) bool
	// pages are the alert episodes Slack must see, by alert ("PartnerDown
	// erp"): per episode one [FIRING] and one [RESOLVED] after it. An alert
	// not listed must not page at all.
	pages map[string]int
	// kills: the fault SIGKILLs dispatchers, so the partner may have
	// received a request whose attempt record died with its dispatcher
	// (allowed in the destination timeout + 1 s before a kill, and counted).
	kills bool
	// check adds the scenario's own invariants (f.broken for each broken
	// one).
	check func(f *faultRun)
	// privatePostgres runs the scenario's audit log on a Postgres server
	// of its own (f.pg), which the fault may restart, instead of a schema
	// of the shared one.
	privatePostgres bool
	// skew is the clock offset of the webhook sender of event n: its
	// webhook-timestamp is signed that far ahead (or behind, negative).
	skew func(n int) time.Duration
}

// faultSettings are the configuration knobs the scenarios tune (the
// README's configuration reference has them all).
type faultSettings struct {
	// timeout, backoff, maxAttempts, concurrency: the destination's.
	timeout     time.Duration
	backoff     string
	maxAttempts int
	concurrency int
	// breaker is the destination's breaker block (YAML flow mapping).
	breaker string
	// partnerDownResolve, deadLetteredResolve: the alerts' resolve_after.
	partnerDownResolve, deadLetteredResolve time.Duration
}

func defaultFaultSettings() faultSettings {
	return faultSettings{
		timeout: time.Second,
		// Up to 60 attempts over about three minutes: the retry horizon
		// every scenario's outage fits in.
		backoff:     "1500ms, 2s, 3s",
		maxAttempts: 60,
		concurrency: 16,
		// A failure ratio that 30% random 5xx never reaches and a run of
		// failures that they do not make (0.3^20): only an outage opens the
		// breaker. A short cooldown, so that outages of seconds open and
		// close it.
		breaker:             fmt.Sprintf("{consecutive_failures: 20, failure_ratio: 0.95, min_requests: 100, window: 10s, cooldown: %s, max_cooldown: %s}", faultCooldown, 2*faultCooldown),
		partnerDownResolve:  2 * time.Second,
		deadLetteredResolve: 10 * time.Second,
	}
}

// partnerCall is a request the partner decides an answer for.
type partnerCall struct {
	// n is the event's number (eventNumber of the Idempotency-Key).
	n       int
	key     string
	attempt int
}

// partnerReply is the partner's answer: a status and an optional
// Retry-After in seconds.
type partnerReply struct {
	status     int
	retryAfter int
}

// failing answers a share of the requests 503 at random, the rest 204.
func failing(share float64) func(partnerCall) partnerReply {
	return func(partnerCall) partnerReply {
		if mrand.Float64() < share {
			return partnerReply{status: http.StatusServiceUnavailable}
		}
		return partnerReply{status: http.StatusNoContent}
	}
}

// faultResult is one scenario's row of the table and of chaos.json.
type faultResult struct {
	Scenario     string `json:"scenario"`
	Offered      int    `json:"offered"`
	Accepted     int    `json:"accepted"`
	Delivered    int    `json:"delivered"`
	DeadLettered int    `json:"dead_lettered"`
	Lost         int    `json:"lost"`
	Duplicates   int    `json:"duplicates"`
	// MaxDeliveryDelayMS: the longest time from an event's acceptance (2xx
	// or PubAck) to the partner's first 2xx for it.
	MaxDeliveryDelayMS int64 `json:"max_delivery_delay_ms"`
	// RecoveryMS: for each fault, the time from its end until every event
	// accepted before its end was delivered (dead letters aside); the
	// longest over the scenario's faults. Null for a scenario without a
	// fault span (its fault is the partner's answers throughout).
	RecoveryMS *int64 `json:"recovery_ms"`
	// Attempts the audit log holds; RefusedAttempts of them never reached
	// the partner (connection refused); UnauditedKilled requests the
	// partner saw whose record died with a SIGKILLed dispatcher.
	Attempts        int `json:"attempts"`
	RefusedAttempts int `json:"refused_attempts"`
	UnauditedKilled int `json:"unaudited_killed"`
	// WebhookRetries: webhook requests of the load answered other than
	// 2xx (or not at all), which the sender retried.
	WebhookRetries int `json:"webhook_retries"`
	// Pages are the Slack messages per alert, in order.
	Pages      map[string][]string `json:"pages"`
	WallTimeMS int64               `json:"wall_time_ms"`
	// Broken are the invariants that did not hold (empty: all held).
	Broken []string `json:"broken"`
}

// faultWindow is the span of one fault.
type faultWindow struct {
	what     string
	from, to time.Time
}

// faultRun is one scenario's system and state.
type faultRun struct {
	t        *testing.T
	sc       faultScenario
	set      faultSettings
	res      *faultResult
	run      *clusterRun
	procs    map[string]*service
	partner  *faultPartner
	slack    *slacktest.Server
	db       *pgtest.Proxy
	dbURL    string // straight to Postgres, for the checks
	pg       *privatePostgres
	js       jetstream.JetStream
	natsAddr string
	ingress  string
	secrets  []string
	began    time.Time

	offeredFn func() int

	mu          sync.Mutex
	windows     []faultWindow
	kills       []time.Time
	extraBroken []string
}

// faultPartner is the fake partner: it answers POST /<destination> with
// the scenario's respond, and can hang (accept and never answer) or be
// down (its listener closed: connection refused).
type faultPartner struct {
	f       *faultRun
	addr    string
	hanging atomic.Bool
	mu      sync.Mutex
	srv     *http.Server
}

func (p *faultPartner) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	key := req.Header.Get("Idempotency-Key")
	attempt, _ := strconv.Atoi(req.Header.Get("Switchyard-Attempt"))
	q := partnerRequest{dest: strings.TrimPrefix(req.URL.Path, "/"), key: key, attempt: attempt, at: time.Now(), body: body}
	if p.hanging.Load() {
		// Recorded with status 0: it reached the partner, which never
		// answers; the dispatcher's timeout ends it.
		p.f.run.receive(q)
		<-req.Context().Done()
		return
	}
	reply := partnerReply{status: http.StatusNoContent}
	if p.f.sc.respond != nil {
		reply = p.f.sc.respond(partnerCall{n: eventNumber(key), key: key, attempt: attempt})
	}
	q.status, q.retryAfter = reply.status, time.Duration(reply.retryAfter)*time.Second
	p.f.run.receive(q)
	if d := p.f.sc.latency; d > 0 {
		select { // the partner at work, not a wait for something
		case <-time.After(time.Duration(mrand.Int64N(int64(d)))):
		case <-req.Context().Done():
		}
	}
	if reply.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(reply.retryAfter))
	}
	w.WriteHeader(reply.status)
}

// up opens the partner's listener (again, on the same address).
func (p *faultPartner) up() {
	p.f.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.f.t.Fatalf("partner: listen on %s again: %v", p.addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.serve)}
	go func() { _ = srv.Serve(ln) }()
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
}

// down closes the partner's listener: new connections are refused. The
// requests it is answering are answered first (a hanging one is cut after
// 2 s), so that every request it received has its answer recorded.
func (p *faultPartner) down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = srv.Close()
}

// randomSecret is a fresh secret for a scenario's configuration.
func randomSecret(t *testing.T, prefix string) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if prefix == "whsec_" {
		return prefix + base64.StdEncoding.EncodeToString(b)
	}
	return prefix + hex.EncodeToString(b)
}

// faultServices are the processes of a scenario, in start order (NATS is
// started before them).
var faultServices = []struct{ name, kind string }{
	{"auditor", "auditor"}, {"dispatcher-1", "dispatcher"}, {"dispatcher-2", "dispatcher"},
	{"notifier", "notifier"}, {"ingress", "ingress"},
}

// runFaultScenario runs one scenario with the binaries bin (serviceBinaries
// plus "nats-server") and fills res. Broken invariants fail t.
func runFaultScenario(t *testing.T, bin map[string]string, sc faultScenario, res *faultResult) {
	began := time.Now()
	res.Scenario = sc.name
	// Until the end is reached: a fatal failure half-way shows in the table.
	res.Broken = []string{"the run stopped before the checks (see the test's log)"}
	defer func() { res.WallTimeMS = time.Since(began).Milliseconds() }()
	set := defaultFaultSettings()
	if sc.settings != nil {
		sc.settings(&set)
	}
	dir := t.TempDir()
	f := &faultRun{t: t, sc: sc, set: set, res: res, run: newClusterRun(faultDest), procs: map[string]*service{}, began: began}

	// NATS: a single node with a file store, fsync on every write, as a
	// single-node production server runs.
	f.natsAddr = freeTCPAddr(t)
	host, port, _ := net.SplitHostPort(f.natsAddr)
	natsConf := filepath.Join(dir, "nats.conf")
	natsText := fmt.Sprintf("listen: %s:%s\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", host, port, filepath.Join(dir, "nats"))
	if sc.natsConfig != nil {
		natsText = sc.natsConfig(natsText)
	}
	writeFile(t, natsConf, natsText)
	f.procs["nats"] = &service{proc: newProc(t, dir, "nats", bin["nats-server"], "-c", natsConf), kind: "nats"}

	// Postgres: a fresh schema, reached by the services through a proxy
	// the scenario can cut; the checks go straight to it.
	if sc.privatePostgres {
		f.pg = startPrivatePostgres(t)
		f.dbURL = f.pg.URL()
	} else {
		f.dbURL = pgtest.Schema(t)
	}
	var proxied string
	f.db, proxied = pgtest.NewProxy(t, f.dbURL)

	f.slack = slacktest.New(t, sc.slack...)
	f.partner = &faultPartner{f: f, addr: freeTCPAddr(t)}
	f.partner.up()
	t.Cleanup(f.partner.down)

	bearer, signing := randomSecret(t, "faults-bearer-"), randomSecret(t, "whsec_")
	f.secrets = []string{vectorSecret, strings.TrimPrefix(vectorSecret, "whsec_"), bearer, signing, strings.TrimPrefix(signing, "whsec_"), slacktest.SecretPath}
	if u, err := url.Parse(f.dbURL); err == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			f.secrets = append(f.secrets, pw)
		}
	}
	f.ingress = freeTCPAddr(t)
	auditAddr := freeTCPAddr(t)
	cfgPath := filepath.Join(dir, "switchyard.yaml")
	cfgText := fmt.Sprintf(`log: {format: json, level: info}
data_dir: %q
database_url: %q
nats: {url: "nats://%s"}
ingress: {listen: %q, publish_timeout: 3s}
auditor: {listen: %q}
sources:
  - {name: shop, scheme: standard-webhooks, secrets: [%q], rate_limit: {unlimited: true}}
destinations:
  - name: %s
    url: "http://%s/%s"
    subjects: ["webhooks.shop.>", "events.order.>"]
    timeout: %s
    retry: {backoff: [%s], max_attempts: %d}
    concurrency: %d
    allow_private_network: true
    auth: {type: bearer, token: %q}
    signing: {standard_webhooks_secrets: [%q]}
    breaker: %s
alerts:
  slack_webhook_url: %q
  group_wait: 500ms
  evaluation_interval: 500ms
  rules:
    partner_down: {resolve_after: %s}
    dead_lettered: {resolve_after: %s}
    # The matrix pages on what its faults are about (PartnerDown, dead
    # letters); these rules have their own tests and would page on the
    # scenarios' error rates, latencies and backlogs by design.
    error_rate: {disabled: true}
    latency: {disabled: true}
    backlog: {disabled: true}
`, filepath.Join(dir, "data"), proxied, f.natsAddr, f.ingress, auditAddr, vectorSecret,
		faultDest, f.partner.addr, faultDest, set.timeout, set.backoff, set.maxAttempts, set.concurrency,
		bearer, signing, set.breaker, f.slack.WebhookURL(), set.partnerDownResolve, set.deadLetteredResolve)
	if sc.config != nil {
		cfgText = sc.config(cfgText)
	}
	writeFile(t, cfgPath, cfgText)

	for _, s := range faultServices {
		svc := &service{kind: s.kind, ops: freeTCPAddr(t)}
		svc.proc = newProc(t, dir, s.name, bin[s.kind], "-config", cfgPath, "-ops-listen", svc.ops)
		f.procs[s.name] = svc
	}
	f.procs["nats"].start(t)
	waitTCP(t, f.natsAddr)
	// The auditor first (it migrates the schema), the dispatchers before
	// ingress takes traffic.
	for _, s := range faultServices {
		f.procs[s.name].start(t)
		waitReady(t, f.procs[s.name])
	}

	nc, err := nats.Connect("nats://"+f.natsAddr, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f.js = js

	// The load: one event every 1/rate s, one in directEvery published
	// straight to NATS, each retried by its sender until it is in.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var senders sync.WaitGroup
	loadDone := make(chan struct{})
	var offered atomic.Int64
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / time.Duration(sc.rate))
		defer tick.Stop()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		sw := mustStandard(t)
		for n := 1; n <= sc.events; n++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			ev := &loadEvent{n: n, direct: n%directEvery == 0, offered: time.Now(),
				body: fmt.Appendf(nil, `{"type":"order.created","n":%d}`, n)}
			ev.id = fmt.Sprintf("shop:wh-%d", n)
			if ev.direct {
				ev.id = fmt.Sprintf("direct-%d", n)
			} else if sc.skew != nil {
				ev.skew = sc.skew(n)
			}
			f.run.mu.Lock()
			f.run.events[ev.id] = ev
			f.run.mu.Unlock()
			offered.Store(int64(n))
			senders.Add(1)
			go func() {
				defer senders.Done()
				if ev.direct {
					f.run.publishUntilAcked(ctx, js, ev)
				} else {
					f.run.postUntilAccepted(ctx, client, sw, []string{f.ingress}, ev)
				}
			}()
		}
	}()
	f.offeredFn = func() int { return int(offered.Load()) }

	if sc.fault != nil {
		sc.fault(f)
	}

	// Settle: every offered event in, then every accepted event delivered
	// or dead-lettered, the audit log complete, the alerts resolved.
	var broken []string
	brk := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		t.Error(msg)
		broken = append(broken, msg)
	}
	if ok, why := f.settle(5*time.Minute, func() (bool, string) {
		select {
		case <-loadDone:
		default:
			return false, fmt.Sprintf("%d of %d events offered", offered.Load(), sc.events)
		}
		n := f.run.pendingSenders()
		return n == 0, fmt.Sprintf("%d offered events not accepted yet", n)
	}); !ok {
		brk("the load did not get in: %s", why)
	}
	cancel()
	senders.Wait()
	accepted := f.run.acceptedIDs()
	var deadLetters map[string]string
	lost := func() []string {
		var out []string
		f.run.mu.Lock()
		defer f.run.mu.Unlock()
		for _, id := range accepted {
			if _, ok := f.run.firstOK[faultDest][id]; !ok && deadLetters[id] == "" {
				out = append(out, id)
			}
		}
		return out
	}
	settled, why := f.settle(5*time.Minute, func() (bool, string) {
		f.running()
		deadLetters = queryDeadLettersOf(t, f.dbURL, faultDest)
		l := lost()
		return len(l) == 0, fmt.Sprintf("%d accepted events neither delivered nor dead-lettered, e.g. %v", len(l), l[:min(5, len(l))])
	})
	if !settled {
		brk("lost: %s", why)
	}
	var agree auditAgreement
	if ok, why := f.settle(3*time.Minute, func() (bool, string) {
		f.running()
		if n := countRows(t, f.dbURL, "SELECT count(*) FROM events"); n < len(accepted) {
			return false, fmt.Sprintf("%d of %d accepted events in the audit log", n, len(accepted))
		}
		agree = f.compareAudit()
		return agree.ok(), agree.String()
	}); !ok {
		brk("the audit log does not agree with the partner's log: %s", why)
	}
	if ok, why := f.settle(2*time.Minute, func() (bool, string) {
		p := f.pageProblems()
		return len(p) == 0, strings.Join(p, "; ")
	}); !ok {
		brk("Slack: %s", why)
	}

	// The figures.
	f.fill(accepted, deadLetters, lost(), agree)
	// The invariants.
	for _, msg := range f.invariants(accepted, deadLetters, agree) {
		brk("%s", msg)
	}
	if sc.check != nil {
		sc.check(f)
	}
	f.mu.Lock()
	res.Broken = append(append([]string{}, broken...), f.extraBroken...)
	f.mu.Unlock()
}

// offered is how many events the load generator has offered so far.
func (f *faultRun) offered() int { return f.offeredFn() }

// broken records a broken invariant of the scenario's own check.
func (f *faultRun) broken(format string, args ...any) {
	f.t.Helper()
	msg := fmt.Sprintf(format, args...)
	f.t.Error(msg)
	f.mu.Lock()
	f.extraBroken = append(f.extraBroken, msg)
	f.mu.Unlock()
}

// settle polls cond until it holds or the timeout passes, and reports
// whether it held and the last reason it did not.
func (f *faultRun) settle(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok || time.Now().After(deadline) {
			return ok, why
		}
		<-tick.C
	}
}

// running fails the test at once if a process exited without the test
// stopping it.
func (f *faultRun) running() {
	f.t.Helper()
	for name, s := range f.procs {
		if ex := s.exitedOnItsOwn(); len(ex) > 0 {
			f.t.Fatalf("%s exited without being killed: %v", name, ex)
		}
	}
}

// afterOffered waits until the load generator has offered share of the
// scenario's events: faults are placed on the load's own clock.
func (f *faultRun) afterOffered(share float64) {
	f.t.Helper()
	want := int(share * float64(f.sc.events))
	waitfor.Within(f.t, 5*time.Minute, fmt.Sprintf("%d events offered", want), func() bool {
		f.running()
		return f.offered() >= want
	})
}

// until waits for a condition of the fault's (a page, a count of events)
// with a deadline.
func (f *faultRun) until(what string, cond func() bool) {
	f.t.Helper()
	waitfor.Within(f.t, 3*time.Minute, what, func() bool {
		f.running()
		return cond()
	})
}

// begin marks the start of a fault; the function it returns its end.
func (f *faultRun) begin(what string) (end func()) {
	f.t.Logf("%6.1fs %s begins", time.Since(f.began).Seconds(), what)
	from := time.Now()
	return func() {
		f.t.Logf("%6.1fs %s ends", time.Since(f.began).Seconds(), what)
		f.mu.Lock()
		f.windows = append(f.windows, faultWindow{what: what, from: from, to: time.Now()})
		f.mu.Unlock()
	}
}

// kill SIGKILLs a process (a dispatcher's kill time bounds the attempts
// allowed to go unaudited).
func (f *faultRun) kill(name string) {
	f.t.Helper()
	f.mu.Lock()
	f.kills = append(f.kills, time.Now())
	f.mu.Unlock()
	f.procs[name].kill(f.t)
}

// killBetween SIGKILLs a process once share from of the events was
// offered and starts it again at share to: one fault span.
func (f *faultRun) killBetween(name string, from, to float64) {
	f.t.Helper()
	f.afterOffered(from)
	end := f.begin("SIGKILL " + name)
	f.kill(name)
	f.afterOffered(to)
	f.start(name)
	end()
}

// start starts a killed process again and waits until it is ready.
func (f *faultRun) start(name string) {
	f.t.Helper()
	s := f.procs[name]
	s.start(f.t)
	if name == "nats" {
		waitTCP(f.t, f.natsAddr)
		return
	}
	waitReady(f.t, s)
}

// pages is how many Slack messages of kind ("[FIRING]", "[RESOLVED]") the
// alert ("PartnerDown erp") got.
func (f *faultRun) pages(alert, kind string) int {
	rule, subject, _ := strings.Cut(alert, " ")
	return countPages(f.slack, rule, subject, kind)
}

// pageProblems compares the Slack messages with the scenario's expected
// episodes: per episode one [FIRING] then one [RESOLVED] ([UPDATE] and
// [STILL FIRING] may come between), and nothing for other alerts.
func (f *faultRun) pageProblems() []string {
	return episodeProblems(slackPages(f.slack), f.sc.pages)
}

// episodeProblems compares the messages per alert (slackPages) with the
// expected episodes per alert.
func episodeProblems(got map[string][]string, want map[string]int) []string {
	var out []string
	for alert, kinds := range got {
		var seq, wantSeq []string
		for _, k := range kinds {
			if k == "[FIRING]" || k == "[RESOLVED]" {
				seq = append(seq, k)
			}
		}
		for range want[alert] {
			wantSeq = append(wantSeq, "[FIRING]", "[RESOLVED]")
		}
		if !slices.Equal(seq, wantSeq) {
			out = append(out, fmt.Sprintf("%s: want %d episodes (firing, resolved), Slack got %v", alert, want[alert], kinds))
		}
	}
	for alert, n := range want {
		if _, ok := got[alert]; !ok && n > 0 {
			out = append(out, fmt.Sprintf("%s: want %d episodes, Slack got none", alert, n))
		}
	}
	slices.Sort(out)
	return out
}

// auditAgreement compares the partner's log with the audit log's
// attempts, per (event, destination, attempt number): the partner saw a
// request for every attempt recorded, but those whose connection was
// refused (they never reached it), and the audit log has an attempt for
// every request the partner saw, but those whose dispatcher was SIGKILLed
// before it could record them (kill scenarios only: sent in the
// destination timeout + 1 s before a kill).
type auditAgreement struct {
	attempts int
	// unaudited: partner requests without an attempt record;
	// unauditedKilled those of them a kill explains.
	unaudited       []partnerRequest
	unauditedKilled int
	// unseen: attempt records the partner has no request for (ids);
	// refused those of them whose connection was refused.
	unseen  []string
	refused int
}

func (a auditAgreement) ok() bool { return len(a.unaudited) == 0 && len(a.unseen) == 0 }

func (a auditAgreement) String() string {
	return fmt.Sprintf("%d partner requests without an attempt record (e.g. %+v); %d attempt records the partner did not see (e.g. %v)",
		len(a.unaudited), a.unaudited[:min(3, len(a.unaudited))], len(a.unseen), a.unseen[:min(3, len(a.unseen))])
}

// attemptKey names one attempt: event, destination, attempt number.
type attemptKey struct {
	id, dest string
	attempt  int
}

// attemptRow is what the audit log recorded of an attempt.
type attemptRow struct {
	status int
	err    string
}

func (f *faultRun) compareAudit() auditAgreement {
	t := f.t
	ctx := context.Background()
	conn := auditDB(t, f.dbURL)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT event_id, destination, attempt, status_code, error FROM attempts")
	if err != nil {
		t.Fatalf("read attempts: %v", err)
	}
	recorded := map[attemptKey]attemptRow{}
	n := 0
	for rows.Next() {
		n++
		var k attemptKey
		var r attemptRow
		if err := rows.Scan(&k.id, &k.dest, &k.attempt, &r.status, &r.err); err != nil {
			t.Fatal(err)
		}
		recorded[k] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var kills []time.Time
	if f.sc.kills {
		f.mu.Lock()
		kills = slices.Clone(f.kills)
		f.mu.Unlock()
	}
	f.run.mu.Lock()
	defer f.run.mu.Unlock()
	a := agreeAudit(f.run.reqs, recorded, kills, f.set.timeout)
	if n != len(recorded) {
		a.unseen = append(a.unseen, fmt.Sprintf("%d attempt records share an (event, destination, attempt) with another", n-len(recorded)))
	}
	a.attempts = n
	return a
}

// agreeAudit compares the partner's requests with the attempt records.
// A request may go unrecorded only if it came in the timeout + 1 s
// before one of kills, or up to 1 s after it (the partner records a
// request once it has read it: one sent just before the kill may be
// recorded just after); pass no kills where none is allowed.
func agreeAudit(reqs []partnerRequest, recorded map[attemptKey]attemptRow, kills []time.Time, timeout time.Duration) auditAgreement {
	a := auditAgreement{attempts: len(recorded)}
	killed := func(at time.Time) bool {
		for _, k := range kills {
			if !at.Before(k.Add(-timeout-time.Second)) && !at.After(k.Add(time.Second)) {
				return true
			}
		}
		return false
	}
	seen := map[attemptKey]bool{}
	for _, q := range reqs {
		k := attemptKey{q.key, q.dest, q.attempt}
		seen[k] = true
		if _, ok := recorded[k]; ok {
			continue
		}
		if killed(q.at) {
			a.unauditedKilled++
		} else {
			a.unaudited = append(a.unaudited, q)
		}
	}
	for k, r := range recorded {
		if seen[k] {
			continue
		}
		if r.status == 0 && strings.Contains(r.err, "connection refused") {
			a.refused++
			continue
		}
		a.unseen = append(a.unseen, fmt.Sprintf("%s attempt %d: %d %q", k.id, k.attempt, r.status, r.err))
	}
	slices.Sort(a.unseen)
	return a
}

// fill computes the scenario's figures.
func (f *faultRun) fill(accepted []string, deadLetters map[string]string, lost []string, agree auditAgreement) {
	res := f.res
	res.Offered = f.run.offered()
	res.Accepted = len(accepted)
	res.Delivered = f.run.delivered(faultDest)
	res.DeadLettered = len(deadLetters)
	res.Lost = len(lost)
	dups, _ := f.run.duplicates()
	res.Duplicates = dups[faultDest]
	res.MaxDeliveryDelayMS = f.run.maxDeliveryDelay().Milliseconds()
	res.Attempts, res.RefusedAttempts, res.UnauditedKilled = agree.attempts, agree.refused, agree.unauditedKilled
	res.Pages = slackPages(f.slack)
	f.run.mu.Lock()
	for _, a := range f.run.answers {
		if a.status/100 != 2 {
			res.WebhookRetries++
		}
	}
	f.run.mu.Unlock()
	f.mu.Lock()
	windows := slices.Clone(f.windows)
	f.mu.Unlock()
	f.run.mu.Lock()
	defer f.run.mu.Unlock()
	var recovery time.Duration
	for _, w := range windows {
		for _, id := range accepted {
			ev := f.run.events[id]
			at, ok := f.run.firstOK[faultDest][id]
			if ok && !ev.accepted.After(w.to) {
				recovery = max(recovery, at.Sub(w.to))
			}
		}
	}
	if len(windows) > 0 {
		ms := recovery.Milliseconds()
		res.RecoveryMS = &ms
	}
}

// invariants checks what every scenario must show and returns what broke.
func (f *faultRun) invariants(accepted []string, deadLetters map[string]string, agree auditAgreement) []string {
	var out []string
	res := f.res
	if res.Accepted != res.Offered {
		out = append(out, fmt.Sprintf("%d of %d offered events accepted", res.Accepted, res.Offered))
	}
	if res.Lost > 0 {
		out = append(out, fmt.Sprintf("%d accepted events lost (neither delivered nor dead-lettered)", res.Lost))
	}
	// Duplicates: every request names an offered event by its original
	// Idempotency-Key and carries its body.
	if _, wrong := f.run.duplicates(); wrong > 0 {
		out = append(out, fmt.Sprintf("%d partner requests carried an Idempotency-Key or body that is not the original event's", wrong))
	}
	// Dead letters: exactly the scenario's, each with a reason.
	isAccepted := map[string]bool{}
	for _, id := range accepted {
		isAccepted[id] = true
	}
	for id, reason := range deadLetters {
		if reason == "" {
			out = append(out, fmt.Sprintf("dead letter of %s has no reason", id))
		}
		if f.sc.deadLetters == nil || !f.sc.deadLetters(eventNumber(id)) {
			out = append(out, fmt.Sprintf("%s dead-lettered (%s) though the partner was only down within the retry horizon", id, reason))
		}
	}
	if f.sc.deadLetters != nil {
		missing := 0
		for _, id := range accepted {
			if f.sc.deadLetters(eventNumber(id)) && deadLetters[id] == "" {
				missing++
			}
		}
		if missing > 0 {
			out = append(out, fmt.Sprintf("%d events the partner refused for good have no dead letter", missing))
		}
	}
	if !agree.ok() {
		out = append(out, "audit log vs partner: "+agree.String())
	}
	out = append(out, f.pageProblems()...)
	// No secret in any log line of any process.
	for name, s := range f.procs {
		b, err := os.ReadFile(s.logPath)
		if err != nil {
			out = append(out, fmt.Sprintf("read %s's log: %v", name, err))
			continue
		}
		if len(b) == 0 {
			out = append(out, fmt.Sprintf("%s's log is empty: the secrets check would see nothing", name))
		}
		for i, secret := range f.secrets {
			if n := strings.Count(string(b), secret); n > 0 {
				out = append(out, fmt.Sprintf("%s's log holds configured secret #%d %d times", name, i, n))
			}
		}
	}
	for name, s := range f.procs {
		if ex := s.exitedOnItsOwn(); len(ex) > 0 {
			out = append(out, fmt.Sprintf("%s exited without being killed: %v", name, ex))
		}
	}
	return out
}

// queryDeadLettersOf returns a destination's dead letters in the audit
// log: event id -> reason.
func queryDeadLettersOf(t *testing.T, dbURL, dest string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn := auditDB(t, dbURL)
	defer conn.Close(ctx)
	out := map[string]string{}
	rows, err := conn.Query(ctx, "SELECT event_id, reason FROM dead_letters WHERE destination = $1", dest)
	if err != nil {
		return out
	}
	for rows.Next() {
		var id, reason string
		if rows.Scan(&id, &reason) == nil {
			out[id] = reason
		}
	}
	return out
}

// faultBinaries builds the services and the NATS server once for a test.
func faultBinaries(t *testing.T) map[string]string {
	t.Helper()
	bin := serviceBinaries(t, t.TempDir())
	bin["nats-server"] = natscluster.Binary(t)
	return bin
}

// runFaultMatrix runs the scenarios one after the other as subtests, then
// prints the table and writes it as JSON to jsonPath (when not empty).
// The invariants a scenario broke fail its subtest; the table comes first.
func runFaultMatrix(t *testing.T, scenarios []faultScenario, jsonPath string) {
	bin := faultBinaries(t)
	var results []*faultResult
	for _, sc := range scenarios {
		res := &faultResult{Scenario: sc.name}
		t.Run(sc.name, func(t *testing.T) { runFaultScenario(t, bin, sc, res) })
		if res.WallTimeMS > 0 { // not left out by -run
			results = append(results, res)
		}
	}
	printFaultTable(os.Stdout, results)
	if jsonPath != "" {
		b, err := json.MarshalIndent(map[string]any{"scenarios": results, "race_detector": raceEnabled, "measured_at": time.Now().UTC().Format(time.RFC3339)}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			t.Fatalf("write %s: %v", jsonPath, err)
		}
		fmt.Printf("faults: wrote %s\n", jsonPath)
	}
}

// printFaultTable prints one line per scenario.
func printFaultTable(w io.Writer, results []*faultResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\toffered\taccepted\tdelivered\tdead-lettered\tlost\tduplicates\tmax delay\trecovery\twebhook retries\tattempts\tunaudited (killed)\tpages\twall\tinvariants\t")
	for _, r := range results {
		verdict := "ok"
		if len(r.Broken) > 0 {
			verdict = fmt.Sprintf("%d BROKEN", len(r.Broken))
		}
		ms := func(v int64) string {
			return (time.Duration(v) * time.Millisecond).Round(10 * time.Millisecond).String()
		}
		recovery := "-"
		if r.RecoveryMS != nil {
			recovery = ms(*r.RecoveryMS)
		}
		fired, resolved := 0, 0
		for _, kinds := range r.Pages {
			for _, k := range kinds {
				switch k {
				case "[FIRING]":
					fired++
				case "[RESOLVED]":
					resolved++
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.Scenario, r.Offered, r.Accepted, r.Delivered,
			r.DeadLettered, r.Lost, r.Duplicates, ms(r.MaxDeliveryDelayMS), recovery, r.WebhookRetries, r.Attempts, r.UnauditedKilled,
			fmt.Sprintf("%d fired, %d resolved", fired, resolved),
			(time.Duration(r.WallTimeMS) * time.Millisecond).Round(time.Second), verdict)
	}
	_ = tw.Flush()
}
