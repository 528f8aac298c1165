//go:build chaos

package tests

// The fault matrix's rows about what Switchyard depends on besides the
// partner: Postgres cut and restarted, Slack failing, the NATS store out
// of room, and the senders' clocks skewed. They join faultMatrix at init.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
)

func init() { faultMatrix = append(faultMatrix, faultMatrixB...) }

// Standard Webhooks tolerance of the scenarios' source (the default) and
// the margin the skewed senders keep inside it.
const (
	faultTolerance  = 5 * time.Minute
	faultSkewMargin = 30 * time.Second
)

// skews are the webhook senders' clock offsets in the clock-skew row: up
// to the tolerance minus the margin, both ways.
var skews = []time.Duration{-(faultTolerance - faultSkewMargin), -2 * time.Minute, 0, 2 * time.Minute, faultTolerance - faultSkewMargin}

// slackFailing is Slack's answer during its outage: rate limited first
// (Retry-After: 2), then failing.
var slackFailing = []slacktest.Answer{
	{Status: http.StatusTooManyRequests, Text: "rate_limited", RetryAfter: "2"},
	{Status: http.StatusInternalServerError, Text: "internal_error"},
}

var faultMatrixB = []faultScenario{
	{
		name:   "postgres-cut-30s",
		events: matrixEvents,
		rate:   matrixRate,
		fault: func(f *faultRun) {
			f.afterOffered(0.3)
			end := f.begin("Postgres unreachable (proxy cut) for 30 s")
			f.db.Cut()
			t0 := time.Now()
			f.until("Postgres cut for 30 s", func() bool { return time.Since(t0) >= 30*time.Second })
			f.db.Restore()
			end()
		},
		check: checkDeliveryWentOn,
	},
	{
		name:            "postgres-restart",
		events:          matrixEvents,
		rate:            matrixRate,
		privatePostgres: true,
		fault: func(f *faultRun) {
			for i, at := range []float64{0.3, 0.6} {
				f.afterOffered(at)
				end := f.begin(fmt.Sprintf("Postgres restarted (fast shutdown: every connection ended) #%d", i+1))
				f.pg.restart(f.t)
				end()
			}
		},
		check: checkDeliveryWentOn,
	},
	{
		name:   "slack-429-500",
		events: matrixEvents,
		rate:   matrixRate,
		// Two PartnerDown episodes: the first fires and resolves while
		// Slack fails, the second fires while Slack fails and is still
		// firing when Slack answers again. Each is paged once and resolved
		// once, in order.
		pages: map[string]int{"PartnerDown erp": 2},
		fault: func(f *faultRun) {
			f.afterOffered(0.1)
			endSlack := f.begin("Slack answers 429 (Retry-After: 2), then 500")
			f.slack.Script(slackFailing...)
			end := f.begin("partner down #1 (an episode while Slack fails)")
			f.partner.down()
			t0 := time.Now()
			f.until("PartnerDown paged, Slack refusing the page", func() bool {
				return time.Since(t0) >= 3*faultCooldown && slackTried(f.slack, "[FIRING]", "PartnerDown")
			})
			f.partner.up()
			end()
			t1 := time.Now()
			// The breaker closes within a cooldown; the alert resolves 2 s
			// (resolve_after) later.
			f.until("PartnerDown resolved while Slack fails", func() bool { return time.Since(t1) >= 10*time.Second })
			f.afterOffered(0.4)
			end = f.begin("partner down #2 (an episode until Slack answers again)")
			f.partner.down()
			t2 := time.Now()
			// Its page waits behind the first one's: it is given the time
			// to fire.
			f.until("PartnerDown fired again", func() bool { return time.Since(t2) >= 3*faultCooldown+5*time.Second })
			f.slack.Script(slacktest.OK)
			endSlack()
			// The late page, its resolution, then the second page; the
			// notifier's next try may be a minute away after a long outage.
			f.until("both episodes paged", func() bool { return f.pages("PartnerDown erp", "[FIRING]") >= 2 })
			f.partner.up()
			end()
		},
		check: func(f *faultRun) {
			checkSlackRetryAfter(f)
			checkBreaker(2, 300)(f)
		},
	},
	{
		name:   "nats-store-full",
		events: matrixEvents,
		rate:   matrixRate,
		// A store of 128 MB, which the scenario fills with a ballast stream
		// until JetStream refuses to store (the disk close to full), then
		// deletes (space returns). The load's own data is a few MB.
		natsConfig: func(conf string) string {
			return strings.Replace(conf, "sync_interval: always\n", "sync_interval: always\n  max_file_store: 128MB\n", 1)
		},
		fault: func(f *faultRun) {
			f.afterOffered(0.3)
			end := f.begin("NATS store full (ballast stream up to max_file_store)")
			fillStore(f)
			t0 := time.Now()
			f.until("ingress refusing webhooks 503 for 10 s", func() bool {
				return time.Since(t0) >= 10*time.Second && countAnswers(f, t0, http.StatusServiceUnavailable) >= 20
			})
			if err := f.js.DeleteStream(context.Background(), "BALLAST"); err != nil {
				f.t.Fatalf("delete the ballast: %v", err)
			}
			end()
		},
		check: checkStoreFull,
	},
	{
		name:   "clock-skew",
		events: matrixEvents,
		rate:   matrixRate,
		skew:   func(n int) time.Duration { return skews[n%len(skews)] },
		// The refused webhooks page SignatureFailures once; a short window
		// lets it resolve within the scenario.
		config: func(conf string) string {
			// The last lines of the configuration are the rules'.
			return conf + "    signature_failures: {window: 10s, resolve_after: 2s}\n"
		},
		pages: map[string]int{"SignatureFailures shop": 1},
		fault: func(f *faultRun) {
			f.afterOffered(0.5)
			end := f.begin(fmt.Sprintf("webhooks signed %s outside the tolerance, both ways", faultSkewMargin))
			sendOutsideTolerance(f)
			end()
		},
		check: checkOutsideToleranceRejected,
	},
}

// checkDeliveryWentOn: delivery did not wait for the audit store. Of the
// events accepted during each fault, nearly all reached the partner
// before the fault ended (5 s of grace for those accepted at its end).
func checkDeliveryWentOn(f *faultRun) {
	f.mu.Lock()
	windows := append([]faultWindow(nil), f.windows...)
	f.mu.Unlock()
	f.run.mu.Lock()
	defer f.run.mu.Unlock()
	for _, w := range windows {
		in, on := 0, 0
		for id, ev := range f.run.events {
			if ev.accepted.IsZero() || ev.accepted.Before(w.from) || ev.accepted.After(w.to) {
				continue
			}
			in++
			if at, ok := f.run.firstOK[faultDest][id]; ok && at.Before(w.to.Add(5*time.Second)) {
				on++
			}
		}
		f.t.Logf("%s: %d of %d events accepted meanwhile delivered by its end + 5 s", w.what, on, in)
		if in > 0 && on*10 < in*9 {
			f.broken("%s: only %d of %d events accepted meanwhile were delivered by its end + 5 s: delivery waited for the audit store", w.what, on, in)
		}
	}
}

// slackTried reports whether Slack was sent a message of kind about rule,
// whatever it answered.
func slackTried(s *slacktest.Server, kind, rule string) bool {
	for _, m := range s.Messages() {
		if strings.HasPrefix(m.Text, kind) && slices.Contains(m.Fields, "*Rule*\n"+rule) {
			return true
		}
	}
	return false
}

// checkSlackRetryAfter: no request to Slack came sooner than a 429's
// Retry-After asked, and Slack did refuse some (the fault took).
func checkSlackRetryAfter(f *faultRun) {
	msgs := f.slack.Messages()
	refused, early := 0, 0
	for i, m := range msgs {
		if m.Status != http.StatusOK {
			refused++
		}
		if m.Status == http.StatusTooManyRequests && i+1 < len(msgs) && msgs[i+1].At.Sub(m.At) < 2*time.Second {
			early++
		}
	}
	f.t.Logf("Slack: %d requests, %d refused (429 or 500), %d accepted", len(msgs), refused, len(f.slack.Accepted()))
	if refused == 0 {
		f.broken("Slack refused nothing: the outage did not take")
	}
	if early > 0 {
		f.broken("%d requests to Slack came sooner than the Retry-After of the 429 before them", early)
	}
}

// fillStore fills the NATS store with a ballast stream until JetStream has
// no room for another small message.
func fillStore(f *faultRun) {
	ctx := context.Background()
	if _, err := f.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BALLAST", Subjects: []string{"ballast.>"}, Storage: jetstream.FileStorage}); err != nil {
		f.t.Fatalf("create the ballast stream: %v", err)
	}
	filled := 0
	for _, size := range []int{512 << 10, 16 << 10, 512} {
		data := make([]byte, size)
		for {
			_, err := f.js.Publish(ctx, "ballast.fill", data)
			if publish.NoRoom(err) {
				break
			}
			if err != nil {
				f.t.Fatalf("fill the store: %v", err)
			}
			filled += size
		}
	}
	f.t.Logf("ballast: %d MB stored until JetStream had no room", filled>>20)
}

// countAnswers counts the webhook answers of status to requests sent since
// t0.
func countAnswers(f *faultRun, t0 time.Time, status int) int {
	n := 0
	for _, a := range f.run.answersBetween(t0, time.Now()) {
		if a.status == status {
			n++
		}
	}
	return n
}

// checkStoreFull: while the store was full ingress answered 503 with
// Retry-After (and nothing but 2xx or 503 all along); what it accepted
// meanwhile is among what the invariants found delivered.
func checkStoreFull(f *faultRun) {
	f.mu.Lock()
	windows := append([]faultWindow(nil), f.windows...)
	f.mu.Unlock()
	f.run.mu.Lock()
	answers := append([]answer(nil), f.run.answers...)
	f.run.mu.Unlock()
	other := map[int]int{}
	for _, a := range answers {
		if a.status/100 != 2 && a.status != http.StatusServiceUnavailable {
			other[a.status]++
		}
	}
	if len(other) > 0 {
		f.broken("ingress answered other than 2xx or 503: %v (status: count; 0 is a network error)", other)
	}
	for _, w := range windows {
		unavailable, noRetryAfter, ok := 0, 0, 0
		for _, a := range f.run.answersBetween(w.from, w.to) {
			switch {
			case a.status == http.StatusServiceUnavailable:
				unavailable++
				if s, err := strconv.Atoi(a.retryAfter); err != nil || s <= 0 {
					noRetryAfter++
				}
			case a.status/100 == 2:
				ok++
			}
		}
		f.t.Logf("%s: %d webhooks answered 503, %d accepted (stored before the store filled up)", w.what, unavailable, ok)
		if unavailable == 0 {
			f.broken("%s: no webhook was answered 503", w.what)
		}
		if noRetryAfter > 0 {
			f.broken("%s: %d 503 answers without a Retry-After", w.what, noRetryAfter)
		}
	}
}

// outsideTolerance is how many webhooks the clock-skew row signs outside
// the tolerance (within the rejection audit's burst, so that each is
// recorded on its own).
const outsideTolerance = 40

// sendOutsideTolerance sends webhooks signed the tolerance plus the
// margin ahead and behind: each must be refused (never 2xx) and recorded
// as a stale-timestamp rejection.
func sendOutsideTolerance(f *faultRun) {
	sw := mustStandard(f.t)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range outsideTolerance {
		skew := faultTolerance + faultSkewMargin
		if i%2 == 1 {
			skew = -skew
		}
		id := fmt.Sprintf("skewed-%d", i)
		body := fmt.Appendf(nil, `{"type":"order.created","skewed":%d}`, i)
		signed := time.Now().Add(skew)
		req, _ := http.NewRequest(http.MethodPost, "http://"+f.ingress+"/webhooks/shop", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(signed.Unix(), 10))
		req.Header.Set("webhook-signature", sw.Sign(id, signed, body))
		resp, err := client.Do(req)
		if err != nil {
			f.broken("webhook %s: %v", id, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 4 {
			f.broken("webhook %s signed %s off: answered %d, want a refusal (4xx)", id, skew, resp.StatusCode)
		}
	}
}

// checkOutsideToleranceRejected: every webhook signed outside the
// tolerance is in the audit log as a stale-timestamp rejection, and none
// became an event or reached the partner.
func checkOutsideToleranceRejected(f *faultRun) {
	var rejected, stored int
	ok, why := f.settle(time.Minute, func() (bool, string) {
		rejected = countRows(f.t, f.dbURL, "SELECT count(*) FROM rejections WHERE reason = 'stale_timestamp' AND event_id LIKE 'shop:skewed-%'")
		return rejected == outsideTolerance, fmt.Sprintf("%d of %d recorded", rejected, outsideTolerance)
	})
	if !ok {
		f.broken("webhooks signed outside the tolerance not recorded as stale-timestamp rejections: %s", why)
	}
	stored = countRows(f.t, f.dbURL, "SELECT count(*) FROM events WHERE id LIKE 'shop:skewed-%'")
	if stored > 0 {
		f.broken("%d webhooks signed outside the tolerance were stored as events", stored)
	}
	f.run.mu.Lock()
	reached := 0
	for _, q := range f.run.reqs {
		if strings.Contains(string(q.body), `"skewed"`) {
			reached++
		}
	}
	f.run.mu.Unlock()
	if reached > 0 {
		f.broken("%d requests for webhooks signed outside the tolerance reached the partner", reached)
	}
	f.t.Logf("clock skew: senders up to %s ahead and behind accepted; %d signed %s outside refused and recorded", faultTolerance-faultSkewMargin, rejected, faultSkewMargin)
}
