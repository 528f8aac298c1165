package tests

// The cluster test runs Switchyard the way production does: every service
// as its own process, two replicas each, against a 3-node NATS cluster with
// R3 streams and the real Postgres, with a fake partner and a fake Slack.
// Under a steady load of signed webhooks and direct NATS publishes it kills
// the node that leads EVENTS, stops the node that leads a destination's
// consumer, kills one replica of every service, makes a destination fail
// long enough to page, and takes the cluster's quorum away; then it checks
// that every accepted event was delivered to both destinations (or
// dead-lettered with a reason), counts the duplicates, compares the audit
// log with what the partner saw, counts the Slack pages, and prints the
// figures. `make test` runs a short load (cluster_short_test.go); `make
// chaos` the long one (cluster_long_test.go).

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/dispatcher"
)

// clusterLoad sizes the cluster test's load.
type clusterLoad struct {
	// events: at least this many are offered...
	events int
	// duration: ...over at least this long (the faults take what they take).
	duration time.Duration
	// rate is the events offered per second.
	rate int
}

// Destinations of the cluster test: both take the same events. "a" fails
// one request in ten (retried) and refuses some events for good (dead
// letters); "b" is made to fail for a while so that PartnerDown pages.
var clusterDestinations = []string{"a", "b"}

// deadOnA reports whether destination a refuses event n for good.
func deadOnA(n int) bool { return n%50 == 7 }

// directEvery: one event in directEvery is published straight to NATS, the
// rest are webhooks.
const directEvery = 4

// destTimeout is the destinations' request timeout.
const destTimeout = time.Second

func TestCluster(t *testing.T) {
	// Mostly waiting (elections, ack waits): it overlaps well with the
	// other cluster test.
	t.Parallel()
	runCluster(t, clusterLoadSettings)
}

// loadEvent is one event the load generator offered.
type loadEvent struct {
	n      int
	id     string
	body   []byte
	direct bool
	// offered, accepted: when it was first sent, and when a 2xx or a
	// PubAck came back (zero until then).
	offered, accepted time.Time
	// skew is how far the sender's clock is ahead (behind, negative) of
	// the machine's: the webhook-timestamp it signs (faults test).
	skew time.Duration
}

// answer is one attempt to hand an event in: a webhook request or a
// direct publish.
type answer struct {
	direct         bool
	ingress        int
	sent, answered time.Time
	status         int // HTTP status; 0 for a network error; 202 for a PubAck
	retryAfter     string
}

// partnerRequest is one request the fake partner received.
type partnerRequest struct {
	dest, key string
	attempt   int
	at        time.Time
	status    int
	// retryAfter is the Retry-After the partner answered with (faults
	// test).
	retryAfter time.Duration
	body       []byte
}

// clusterRun is the state of one run, shared by the load generator, the
// partner and the checks.
type clusterRun struct {
	mu      sync.Mutex
	events  map[string]*loadEvent
	answers []answer
	reqs    []partnerRequest
	// firstOK[dest][id] is when the partner first answered 2xx.
	firstOK map[string]map[string]time.Time
	okCount map[string]map[string]int
	// latest[dest] is the latest acceptance time among the events
	// delivered to dest; lastIngressOK and lastDirectOK the latest send
	// time of a webhook answered 2xx and of an acknowledged publish: the
	// progress that recovered() compares with a fault's time.
	latest        map[string]time.Time
	lastIngressOK time.Time
	lastDirectOK  time.Time

	bDown atomic.Bool
}

// newClusterRun is the state of a run delivering to dests.
func newClusterRun(dests ...string) *clusterRun {
	r := &clusterRun{
		events:  map[string]*loadEvent{},
		firstOK: map[string]map[string]time.Time{},
		okCount: map[string]map[string]int{},
		latest:  map[string]time.Time{},
	}
	for _, d := range dests {
		r.firstOK[d], r.okCount[d] = map[string]time.Time{}, map[string]int{}
	}
	return r
}

// eventNumber is the n of "shop:wh-<n>" or "direct-<n>".
func eventNumber(id string) int {
	n, _ := strconv.Atoi(id[strings.LastIndexAny(id, "-")+1:])
	return n
}

// partner is the fake partner: POST /a and /b.
func (r *clusterRun) partner(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	dest := strings.TrimPrefix(req.URL.Path, "/")
	key := req.Header.Get("Idempotency-Key")
	attempt, _ := strconv.Atoi(req.Header.Get("Switchyard-Attempt"))
	status := http.StatusNoContent
	switch {
	case dest == "a" && deadOnA(eventNumber(key)):
		status = http.StatusUnprocessableEntity
	case dest == "a" && rand.IntN(10) == 0:
		status = http.StatusServiceUnavailable
	case dest == "b" && r.bDown.Load():
		status = http.StatusServiceUnavailable
	}
	r.receive(partnerRequest{dest: dest, key: key, attempt: attempt, at: time.Now(), status: status, body: body})
	w.WriteHeader(status)
}

// receive records a request the partner received and what it answered.
func (r *clusterRun) receive(q partnerRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, q)
	if q.status/100 == 2 && r.firstOK[q.dest] != nil {
		if _, seen := r.firstOK[q.dest][q.key]; !seen {
			r.firstOK[q.dest][q.key] = q.at
			if ev := r.events[q.key]; ev != nil && ev.accepted.After(r.latest[q.dest]) {
				r.latest[q.dest] = ev.accepted
			}
		}
		r.okCount[q.dest][q.key]++
	}
}

// service is one Switchyard process of the test.
type service struct {
	*proc
	kind string
	// ops is the /healthz, /readyz address; listen the ingress or audit
	// API address (empty for the others).
	ops, listen string
}

func runCluster(t *testing.T, load clusterLoad) {
	began := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	dir := t.TempDir()
	// The services build while the cluster starts.
	type build struct {
		bin map[string]string
		err error
	}
	built := make(chan build, 1)
	go func() {
		bin, err := buildServices(dir)
		built <- build{bin, err}
	}()
	cluster := natscluster.Start(t, natscluster.Options{})
	step("cluster started")
	b := <-built
	if b.err != nil {
		t.Fatal(b.err)
	}
	bin := b.bin
	step("services built")
	_, js := cluster.Connect(t)
	dbURL := pgtest.Schema(t)
	slack := slacktest.New(t)
	run := newClusterRun(clusterDestinations...)
	partnerURL := newHTTPServer(t, http.HandlerFunc(run.partner))

	// Two replicas of every service, each with its own ports; they share
	// the NATS cluster, the database and (through both) their work.
	var services []*service
	byName := map[string]*service{}
	for _, kind := range []string{"auditor", "dispatcher", "notifier", "ingress"} {
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s-%d", kind, i)
			s := &service{kind: kind, ops: freeTCPAddr(t)}
			if kind == "ingress" || kind == "auditor" {
				s.listen = freeTCPAddr(t)
			}
			cfgPath := filepath.Join(dir, name+".yaml")
			writeFile(t, cfgPath, clusterConfig(dir, name, cluster.URLs(), dbURL, partnerURL, slack.WebhookURL(), s))
			if _, err := config.Load(cfgPath, os.LookupEnv); err != nil {
				t.Fatalf("%s's configuration: %v", name, err)
			}
			s.proc = newProc(t, dir, name, bin[kind], "-config", cfgPath, "-ops-listen", s.ops)
			services = append(services, s)
			byName[name] = s
		}
	}
	byName["auditor-1"].start(t)
	waitReady(t, byName["auditor-1"])
	for _, s := range services[1:] {
		s.start(t)
	}
	for _, s := range services {
		waitReady(t, s)
	}
	ingresses := []string{byName["ingress-1"].listen, byName["ingress-2"].listen}
	// A service that exits on its own fails the test at once, with its
	// log.
	running := func() {
		for _, s := range services {
			if ex := s.exitedOnItsOwn(); len(ex) > 0 {
				t.Fatalf("%s exited without being killed: %v", s.name, ex)
			}
		}
	}
	step("services ready")

	// The load: webhooks to both ingress replicas, retried until 2xx, and
	// direct publishes retried until PubAck.
	sw := mustStandard(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var phasesDone atomic.Bool
	var senders sync.WaitGroup
	start := time.Now()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / time.Duration(load.rate))
		defer tick.Stop()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for n := 1; ; n++ {
			if phasesDone.Load() && n > load.events && time.Since(start) >= load.duration {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			ev := &loadEvent{n: n, direct: n%directEvery == 0, offered: time.Now(),
				body: fmt.Appendf(nil, `{"type":"order.created","n":%d}`, n)}
			if ev.direct {
				ev.id = fmt.Sprintf("direct-%d", n)
			} else {
				ev.id = fmt.Sprintf("shop:wh-%d", n)
			}
			run.mu.Lock()
			run.events[ev.id] = ev
			run.mu.Unlock()
			senders.Add(1)
			go func() {
				defer senders.Done()
				if ev.direct {
					run.publishUntilAcked(ctx, js, ev)
				} else {
					run.postUntilAccepted(ctx, client, sw, ingresses, ev)
				}
			}()
		}
	}()

	waitfor.Within(t, time.Minute, "the first deliveries", func() bool { return run.recoveredSince(start) })

	recoveries := map[string]time.Duration{}
	var order []string
	fault := func(name string, t0 time.Time) {
		t.Helper()
		waitfor.Within(t, 2*time.Minute, "recovery after: "+name, func() bool {
			running()
			return run.recoveredSince(t0)
		})
		recoveries[name] = time.Since(t0)
		order = append(order, name)
		step("recovered after " + name)
	}

	// 1. SIGKILL the node that leads EVENTS, then restart it.
	leader := cluster.WaitStreamLeader(t, js, natsx.StreamEvents)
	t0 := time.Now()
	cluster.Kill(t, leader)
	fault("SIGKILL "+leader+" (EVENTS leader)", t0)
	cluster.Restart(t, leader)

	// 2. Stop the node that leads destination a's consumer.
	cl := cluster.WaitConsumerLeader(t, js, natsx.StreamEvents, dispatcher.ConsumerName("a"))
	t0 = time.Now()
	cluster.Stop(t, cl)
	fault("SIGTERM "+cl+" (leads dispatcher-a)", t0)
	cluster.Restart(t, cl)

	// 3. Kill one replica of every service; the others carry on. Then
	// start them again.
	t0 = time.Now()
	killedAt := t0
	for _, name := range []string{"ingress-2", "dispatcher-2", "auditor-2", "notifier-2"} {
		byName[name].kill(t)
	}
	fault("SIGKILL one replica of each service", t0)
	for _, name := range []string{"ingress-2", "dispatcher-2", "auditor-2", "notifier-2"} {
		byName[name].start(t)
	}
	for _, s := range services {
		waitReady(t, s)
	}

	// 4. Destination b fails until PartnerDown pages, then recovers until
	// it resolves: one page and one resolution across both notifiers.
	run.bDown.Store(true)
	waitfor.Within(t, 2*time.Minute, "PartnerDown on b paged", func() bool { return countPages(slack, "PartnerDown", "b", "[FIRING]") > 0 })
	run.bDown.Store(false)
	waitfor.Within(t, 2*time.Minute, "PartnerDown on b resolved", func() bool { return countPages(slack, "PartnerDown", "b", "[RESOLVED]") > 0 })
	step("PartnerDown on b paged and resolved")

	// 5. No quorum: two of three nodes stopped. Ingress answers 503 with
	// Retry-After and never 2xx; every service says it is not ready, and
	// why. Then the nodes come back.
	down := cluster.Running()[:2]
	for _, n := range down {
		cluster.Stop(t, n)
	}
	qLost := time.Now()
	// Each asks JetStream, which may take its whole check timeout to not
	// answer: ask them all at once.
	notReady := map[string]string{}
	waitfor.Within(t, 2*time.Minute, "every service not ready without a quorum", func() bool {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range services {
			mu.Lock()
			_, ok := notReady[s.name]
			mu.Unlock()
			if ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, body := readyz(s); code == http.StatusServiceUnavailable {
					mu.Lock()
					notReady[s.name] = strings.TrimSpace(body)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return len(notReady) == len(services)
	})
	step("no quorum: every service not ready")
	waitfor.Within(t, time.Minute, "webhooks answered without a quorum", func() bool {
		return len(run.answersBetween(qLost, time.Now())) >= 10
	})
	qBack := time.Now()
	for _, n := range down {
		cluster.Start(t, n)
	}
	for _, n := range down {
		cluster.WaitHealthy(t, n)
	}
	fault("no quorum (2 of 3 nodes stopped) until both restart", qBack)
	for _, s := range services {
		waitReady(t, s)
	}
	phasesDone.Store(true)
	step("faults done")

	// The load ends; every sender gets its event in.
	waitfor.Within(t, 5*time.Minute, "the load generator to finish", func() bool {
		select {
		case <-loadDone:
			return true
		default:
			return false
		}
	})
	loadTook := time.Since(start)
	step("load done")
	waitfor.Within(t, 5*time.Minute, "every offered event accepted", func() bool {
		running()
		return run.pendingSenders() == 0
	})
	senders.Wait()
	cancel()

	accepted := run.acceptedIDs()
	drainFrom := time.Now()
	deadLetters := map[string]string{} // event id -> reason, on a
	waitfor.Explained(t, 5*time.Minute, "every accepted event delivered or dead-lettered", func() (bool, string) {
		running()
		missing := run.undelivered(accepted, deadLetters)
		if len(missing) > 0 {
			// Dead letters are read from the audit log as they land.
			deadLetters = queryDeadLetters(t, dbURL)
			missing = run.undelivered(accepted, deadLetters)
		}
		return len(missing) == 0, fmt.Sprintf("%d not delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
	})
	drainTook := time.Since(drainFrom)
	step("delivered")

	// The audit log agrees with the partner: every event, and every
	// attempt the partner saw (but those whose dispatcher was killed
	// before it could record them).
	var unrecorded, killedBeforeRecording []partnerRequest
	waitfor.Explained(t, 3*time.Minute, "the audit log to have every event and attempt", func() (bool, string) {
		running()
		if n := countRows(t, dbURL, "SELECT count(*) FROM events"); n < len(accepted) {
			return false, fmt.Sprintf("%d of %d events in the events table", n, len(accepted))
		}
		unrecorded, killedBeforeRecording = run.unrecordedAttempts(t, dbURL, killedAt)
		return len(unrecorded) == 0, fmt.Sprintf("%d attempts the partner saw are not in the attempts table, e.g. %+v", len(unrecorded), unrecorded[:min(3, len(unrecorded))])
	})

	step("audit log complete")

	// Checks.
	exitedOnItsOwn := map[string][]string{}
	for _, s := range services {
		if ex := s.exitedOnItsOwn(); len(ex) > 0 {
			exitedOnItsOwn[s.name] = ex
		}
	}
	if len(exitedOnItsOwn) > 0 {
		t.Errorf("services exited without being killed: %v", exitedOnItsOwn)
	}
	offered := run.offered()
	if len(accepted) != offered {
		t.Errorf("%d of %d offered events accepted", len(accepted), offered)
	}
	for name, body := range notReady {
		if !strings.Contains(body, "NATS: ") || !(strings.Contains(body, "JetStream") || strings.Contains(body, "stream")) {
			t.Errorf("%s's /readyz without a quorum says %q; want the JetStream reason", name, body)
		}
	}
	quorum := run.answersBetween(qLost, qBack)
	statuses := map[int]int{}
	for _, a := range quorum {
		statuses[a.status]++
		if a.status/100 == 2 {
			t.Errorf("ingress %d answered %d without a quorum (sent %s after the second node stopped)", a.ingress, a.status, a.sent.Sub(qLost))
		}
		if a.status == http.StatusServiceUnavailable && a.retryAfter == "" {
			t.Errorf("a 503 without a quorum has no Retry-After")
		}
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no 503 without a quorum: %v", statuses)
	}
	duplicates, wrongKey := run.duplicates()
	if wrongKey > 0 {
		t.Errorf("%d partner requests carried an Idempotency-Key or body that is not the original event's", wrongKey)
	}
	for _, id := range accepted {
		n := eventNumber(id)
		if deadOnA(n) && deadLetters[id] == "" {
			t.Errorf("%s was refused for good by a but has no dead letter", id)
		}
	}
	if len(killedBeforeRecording) > 0 {
		t.Logf("%d attempts the partner saw were not recorded: their dispatcher was SIGKILLed before it could", len(killedBeforeRecording))
	}
	pages := slackPages(slack)
	if countPages(slack, "PartnerDown", "b", "[FIRING]") != 1 || countPages(slack, "PartnerDown", "b", "[RESOLVED]") != 1 {
		t.Errorf("PartnerDown on b: want exactly one page and one resolution; Slack got %v", pages)
	}
	for alert, kinds := range pages {
		for i := 1; i < len(kinds); i++ {
			if kinds[i] == "[FIRING]" && kinds[i-1] == "[FIRING]" {
				t.Errorf("%s paged twice in one episode: %v", alert, kinds)
			}
		}
	}

	maxDelay := run.maxDeliveryDelay()
	fmt.Printf("cluster: %d events offered over %s (%d/s; 1 in %d published straight to NATS), %d accepted\n",
		offered, loadTook.Round(time.Millisecond), load.rate, directEvery, len(accepted))
	for _, d := range clusterDestinations {
		fmt.Printf("cluster: destination %s: %d delivered, %d dead-lettered, lost 0, %d duplicate deliveries\n",
			d, run.delivered(d), deadLetteredOn(d, deadLetters), duplicates[d])
	}
	fmt.Printf("cluster: max delivery delay %s; the backlog drained %s after the load ended\n",
		maxDelay.Round(time.Millisecond), drainTook.Round(time.Millisecond))
	for _, name := range order {
		fmt.Printf("cluster: recovered %s after %s\n", recoveries[name].Round(time.Millisecond), name)
	}
	fmt.Printf("cluster: without a quorum for %s: ingress answered %v; not ready: %v\n",
		qBack.Sub(qLost).Round(time.Millisecond), statuses, notReady)
	// What the replicas that ran from start to end used: the figures the
	// production guide sizes requests from (race-enabled binaries under
	// make test use several times the memory and CPU).
	for _, s := range services {
		if !strings.HasSuffix(s.name, "-1") {
			continue
		}
		if rss, cpu, ok := s.usage(); ok {
			fmt.Printf("cluster: %s: peak RSS %d MiB, CPU %s over %s (%.0f millicores on average)%s\n", s.name, rss>>20, cpu.Round(10*time.Millisecond),
				time.Since(began).Round(time.Second), 1000*cpu.Seconds()/time.Since(began).Seconds(), map[bool]string{true: " [race detector]"}[raceEnabled])
		}
	}
	for _, n := range cluster.Nodes() {
		if rss, cpu, ok := n.Usage(); ok {
			fmt.Printf("cluster: NATS %s (restarted during the run): peak RSS %d MiB, CPU %s\n", n.Name, rss>>20, cpu.Round(10*time.Millisecond))
		}
	}
	fmt.Printf("cluster: %d attempts in the audit log, every one the partner saw (%d lost with a SIGKILLed dispatcher); Slack: %v\n",
		countRows(t, dbURL, "SELECT count(*) FROM attempts"), len(killedBeforeRecording), pages)
}

// clusterConfig is one process's configuration.
func clusterConfig(dir, name, natsURLs, dbURL, partnerURL, slackURL string, s *service) string {
	listen := ""
	switch s.kind {
	case "ingress":
		listen = fmt.Sprintf("ingress: {listen: %q, publish_timeout: 3s}\n", s.listen)
	case "auditor":
		listen = fmt.Sprintf("auditor: {listen: %q}\n", s.listen)
	}
	dest := func(d, breaker string) string {
		return fmt.Sprintf(`  - name: %s
    url: %q
    subjects: ["webhooks.shop.>", "events.order.>"]
    timeout: %s
    retry: {backoff: [1500ms, 3s, 5s], max_attempts: 30}
    concurrency: 16
    allow_private_network: true
    breaker: %s
`, d, partnerURL+"/"+d, destTimeout, breaker)
	}
	return fmt.Sprintf(`log: {format: json, level: info}
data_dir: %q
database_url: %q
nats: {url: %q, replicas: 3}
%ssources:
  - {name: shop, scheme: standard-webhooks, secrets: [%q], rate_limit: {unlimited: true}}
destinations:
%s%salerts:
  slack_webhook_url: %q
  group_wait: 500ms
  evaluation_interval: 500ms
  rules:
    partner_down: {resolve_after: 2s}
`, filepath.Join(dir, "data-"+name), dbURL, natsURLs, listen, vectorSecret,
		dest("a", "{disabled: true}"), dest("b", "{consecutive_failures: 5, cooldown: 1s, max_cooldown: 2s}"), slackURL)
}

// postUntilAccepted sends a webhook until it is answered 2xx, alternating
// between the ingress replicas, with a growing pause as partners do.
func (r *clusterRun) postUntilAccepted(ctx context.Context, client *http.Client, sw interface {
	Sign(id string, ts time.Time, body []byte) string
}, ingresses []string, ev *loadEvent) {
	webhookID := strings.TrimPrefix(ev.id, "shop:")
	r.untilIn(ctx, ev, func(k int) answer {
		i := (ev.n + k) % len(ingresses)
		sent := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ingresses[i]+"/webhooks/shop", strings.NewReader(string(ev.body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", webhookID)
		signed := sent.Add(ev.skew)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(signed.Unix(), 10))
		req.Header.Set("webhook-signature", sw.Sign(webhookID, signed, ev.body))
		a := answer{ingress: i + 1, sent: sent}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
		}
		a.answered = time.Now()
		return a
	})
}

// publishUntilAcked publishes an event straight to EVENTS until a PubAck
// comes.
func (r *clusterRun) publishUntilAcked(ctx context.Context, js jetstream.JetStream, ev *loadEvent) {
	r.untilIn(ctx, ev, func(int) answer {
		a := answer{direct: true, sent: time.Now()}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := events.Publish(pctx, js, events.Event{ID: ev.id, Type: "order.created", Data: ev.body})
		cancel()
		a.answered = time.Now()
		if err == nil {
			a.status = http.StatusAccepted
		}
		return a
	})
}

// untilIn makes attempt k = 0, 1, ... until one gets the event in, with a
// pause growing from 200 ms to 2 s between them, or ctx ends.
func (r *clusterRun) untilIn(ctx context.Context, ev *loadEvent, attempt func(k int) answer) {
	pause := 200 * time.Millisecond
	for k := 0; ctx.Err() == nil; k++ {
		if r.record(ev, attempt(k)) {
			return
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// record keeps an answer and reports whether the event is in.
func (r *clusterRun) record(ev *loadEvent, a answer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := a.status/100 == 2
	if !a.direct {
		r.answers = append(r.answers, a)
	}
	if ok && ev.accepted.IsZero() {
		ev.accepted = a.answered
	}
	if ok && a.direct && a.sent.After(r.lastDirectOK) {
		r.lastDirectOK = a.sent
	}
	if ok && !a.direct && a.sent.After(r.lastIngressOK) {
		r.lastIngressOK = a.sent
	}
	return ok
}

// recoveredSince reports whether, since t0, a webhook was accepted, a
// direct publish acknowledged, and an event accepted after t0 delivered to
// every destination.
func (r *clusterRun) recoveredSince(t0 time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lastIngressOK.After(t0) || !r.lastDirectOK.After(t0) {
		return false
	}
	for _, d := range clusterDestinations {
		if !r.latest[d].After(t0) {
			return false
		}
	}
	return true
}

// answersBetween returns the webhook answers to requests sent after from
// and answered before to.
func (r *clusterRun) answersBetween(from, to time.Time) []answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []answer
	for _, a := range r.answers {
		if a.sent.After(from) && a.answered.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

func (r *clusterRun) pendingSenders() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.accepted.IsZero() {
			n++
		}
	}
	return n
}

func (r *clusterRun) offered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *clusterRun) acceptedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, ev := range r.events {
		if !ev.accepted.IsZero() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// undelivered returns the accepted events that some destination has
// neither received nor dead-lettered.
func (r *clusterRun) undelivered(accepted []string, deadOnA map[string]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range accepted {
		_, onA := r.firstOK["a"][id]
		_, onB := r.firstOK["b"][id]
		if !onB || !onA && deadOnA[id] == "" {
			out = append(out, id)
		}
	}
	return out
}

func (r *clusterRun) delivered(dest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.firstOK[dest])
}

// duplicates counts, per destination, the deliveries answered 2xx after
// the first, and the requests whose Idempotency-Key or body is not an
// offered event's.
func (r *clusterRun) duplicates() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dups := map[string]int{}
	for d, counts := range r.okCount {
		for _, n := range counts {
			dups[d] += n - 1
		}
	}
	wrong := 0
	for _, q := range r.reqs {
		if ev := r.events[q.key]; ev == nil || string(ev.body) != string(q.body) {
			wrong++
		}
	}
	return dups, wrong
}

func (r *clusterRun) maxDeliveryDelay() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var worst time.Duration
	for _, byID := range r.firstOK {
		for id, at := range byID {
			if ev := r.events[id]; ev != nil && !ev.accepted.IsZero() {
				worst = max(worst, at.Sub(ev.accepted))
			}
		}
	}
	return worst
}

// unrecordedAttempts compares the partner's requests with the attempts
// table: it returns the requests with no attempt row, apart from those
// the partner received in the destination timeout before the dispatcher
// replica was killed (its attempt record died with it), returned second.
func (r *clusterRun) unrecordedAttempts(t *testing.T, dbURL string, killedAt time.Time) (missing, killed []partnerRequest) {
	t.Helper()
	ctx := context.Background()
	conn := auditDB(t, dbURL)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT event_id, destination, attempt FROM attempts")
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		id, dest string
		attempt  int
	}
	recorded := map[key]bool{}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.id, &k.dest, &k.attempt); err != nil {
			t.Fatal(err)
		}
		recorded[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.reqs {
		if recorded[key{q.key, q.dest, q.attempt}] {
			continue
		}
		if !q.at.Before(killedAt.Add(-destTimeout-time.Second)) && !q.at.After(killedAt) {
			killed = append(killed, q)
		} else {
			missing = append(missing, q)
		}
	}
	return missing, killed
}

// queryDeadLetters returns destination a's dead letters in the audit log:
// event id -> reason.
func queryDeadLetters(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn := auditDB(t, dbURL)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT event_id, reason FROM dead_letters WHERE destination = 'a'")
	if err != nil {
		return map[string]string{}
	}
	out := map[string]string{}
	for rows.Next() {
		var id, reason string
		if rows.Scan(&id, &reason) == nil {
			out[id] = reason
		}
	}
	return out
}

func deadLetteredOn(dest string, deadOnA map[string]string) int {
	if dest == "a" {
		return len(deadOnA)
	}
	return 0
}

func countRows(t *testing.T, dbURL, sql string) int {
	t.Helper()
	var n int
	if err := (&system{DatabaseURL: dbURL}).queryRow(t, sql, &n); err != nil {
		return -1
	}
	return n
}

// readyz asks a service's /readyz.
func readyz(s *service) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.ops + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitReady(t *testing.T, s *service) {
	t.Helper()
	waitfor.Within(t, 2*time.Minute, s.name+" ready", func() bool {
		if ex := s.exitedOnItsOwn(); len(ex) > 0 {
			t.Fatalf("%s exited: %v", s.name, ex)
		}
		code, _ := readyz(s)
		return code == http.StatusOK
	})
}

// slackPages returns, per alert ("PartnerDown b"), the kinds of the
// messages Slack accepted in order: [FIRING], [UPDATE], [STILL FIRING],
// [RESOLVED].
func slackPages(s *slacktest.Server) map[string][]string {
	out := map[string][]string{}
	for _, m := range s.Accepted() {
		kind := m.Text
		if i := strings.Index(kind, "]"); i >= 0 {
			kind = kind[:i+1]
		}
		var rule, subject string
		for _, f := range m.Fields {
			label, value, _ := strings.Cut(f, "\n")
			switch label {
			case "*Rule*":
				rule = value
			case "*Destination*", "*Source*":
				subject = value
			}
		}
		alert := strings.TrimSpace(rule + " " + subject)
		out[alert] = append(out[alert], kind)
	}
	return out
}

func countPages(s *slacktest.Server, rule, subject, kind string) int {
	n := 0
	for _, k := range slackPages(s)[rule+" "+subject] {
		if k == kind {
			n++
		}
	}
	return n
}
