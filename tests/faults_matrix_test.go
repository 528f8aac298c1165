//go:build chaos

package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestFaultMatrix is issue 17's fault matrix (`make chaos`): every
// scenario of faultMatrix on a fresh system with at least 10,000 events,
// then one table (and chaos.json: CHAOS_JSON, or the repository's root).
// One scenario: go test -tags chaos -run 'TestFaultMatrix/nats-restart'.
func TestFaultMatrix(t *testing.T) {
	path := os.Getenv("CHAOS_JSON")
	if path == "" {
		path = filepath.Join("..", "chaos.json")
	}
	runFaultMatrix(t, faultMatrix, path)
}

// matrixEvents, matrixRate: each scenario offers 10,000 events over 50 s.
const (
	matrixEvents = 10000
	matrixRate   = 200
)

// goneOn410 are the events the partner answers 410 Gone for good in the
// 429/410 scenario.
func goneOn410(n int) bool { return n%50 == 7 }

// faultMatrix is the matrix: one row per scenario. Faults are placed on the
// load's own clock (share of the events offered) and on conditions (a page
// seen), not on sleeps.
var faultMatrix = []faultScenario{
	{
		name:    "partner-5xx-down-twice",
		events:  matrixEvents,
		rate:    matrixRate,
		respond: failing(0.3),
		pages:   map[string]int{"PartnerDown erp": 2},
		check:   checkBreaker(2, 300),
		fault: func(f *faultRun) {
			for i := 1; i <= 2; i++ {
				f.afterOffered(0.1 + 0.4*float64(i-1))
				end := f.begin(fmt.Sprintf("partner down (connection refused) #%d", i))
				f.partner.down()
				t0 := time.Now()
				// Longer than a cooldown: the breaker opens, its probes fail.
				f.until("PartnerDown paged, the partner down for 3 cooldowns", func() bool {
					return f.pages("PartnerDown erp", "[FIRING]") >= i && time.Since(t0) >= 3*faultCooldown
				})
				f.partner.up()
				end()
				f.until("PartnerDown resolved", func() bool { return f.pages("PartnerDown erp", "[RESOLVED]") >= i })
			}
		},
	},
	{
		name:   "partner-hangs",
		events: matrixEvents,
		rate:   matrixRate,
		pages:  map[string]int{"PartnerDown erp": 1},
		check:  checkBreaker(1, 0),
		fault: func(f *faultRun) {
			f.afterOffered(0.2)
			end := f.begin("partner hangs (accepts, never answers)")
			f.partner.hanging.Store(true)
			t0 := time.Now()
			f.until("PartnerDown paged, the partner hanging for 10 s", func() bool {
				return f.pages("PartnerDown erp", "[FIRING]") >= 1 && time.Since(t0) >= 10*time.Second
			})
			f.partner.hanging.Store(false)
			end()
		},
	},
	{
		name:   "partner-429-410",
		events: matrixEvents,
		rate:   matrixRate,
		// One event in five is answered 429 with Retry-After: 3 (longer
		// than the first backoff step) on its first attempt; one in fifty
		// 410 Gone, for good.
		respond: func(c partnerCall) partnerReply {
			switch {
			case goneOn410(c.n):
				return partnerReply{status: http.StatusGone}
			case c.n%5 == 1 && c.attempt == 1:
				return partnerReply{status: http.StatusTooManyRequests, retryAfter: 3}
			}
			return partnerReply{status: http.StatusNoContent}
		},
		deadLetters: goneOn410,
		pages:       map[string]int{"DeliveryDeadLettered erp": 1},
		check:       checkRetryAfter,
	},
	{
		name:    "dispatcher-sigkill-twice",
		events:  matrixEvents,
		rate:    matrixRate,
		respond: failing(0.1),
		// Up to 200 ms per answer: about 20 requests in flight when a
		// dispatcher dies.
		latency: 200 * time.Millisecond,
		kills:   true,
		fault: func(f *faultRun) {
			f.killBetween("dispatcher-1", 0.25, 0.35)
			f.killBetween("dispatcher-2", 0.6, 0.7)
		},
	},
	{
		name:    "nats-restart",
		events:  matrixEvents,
		rate:    matrixRate,
		respond: failing(0.1),
		// SIGKILLed and started again on its store.
		fault: func(f *faultRun) { f.killBetween("nats", 0.3, 0.4) },
	},
	{
		name:    "combined",
		events:  matrixEvents,
		rate:    matrixRate,
		respond: failing(0.3),
		latency: 100 * time.Millisecond,
		kills:   true,
		pages:   map[string]int{"PartnerDown erp": 1},
		check:   checkBreaker(1, 300),
		fault: func(f *faultRun) {
			f.afterOffered(0.15)
			end := f.begin("partner down and dispatcher-1 SIGKILLed")
			f.partner.down()
			f.kill("dispatcher-1")
			t0 := time.Now()
			f.until("PartnerDown paged, the partner down for 3 cooldowns", func() bool {
				return f.pages("PartnerDown erp", "[FIRING]") >= 1 && time.Since(t0) >= 3*faultCooldown
			})
			f.start("dispatcher-1")
			f.partner.up()
			end()
			f.afterOffered(0.5)
			end = f.begin("NATS and dispatcher-2 SIGKILLed")
			f.kill("nats")
			f.kill("dispatcher-2")
			f.afterOffered(0.6)
			f.start("nats")
			f.start("dispatcher-2")
			end()
		},
	},
}

// checkRetryAfter: every retry of an event answered 429 came no sooner
// than its Retry-After, and every 410 event was attempted once.
func checkRetryAfter(f *faultRun) {
	f.run.mu.Lock()
	byKey := map[string][]partnerRequest{}
	for _, q := range f.run.reqs {
		byKey[q.key] = append(byKey[q.key], q)
	}
	f.run.mu.Unlock()
	honoured, early, goneTwice := 0, 0, 0
	for key, qs := range byKey {
		slices.SortFunc(qs, func(a, b partnerRequest) int { return a.at.Compare(b.at) })
		for i, q := range qs {
			if q.status != http.StatusTooManyRequests || i+1 == len(qs) {
				continue
			}
			if qs[i+1].at.Sub(q.at) < q.retryAfter {
				early++
			} else {
				honoured++
			}
		}
		if goneOn410(eventNumber(key)) && len(qs) != 1 {
			goneTwice++
		}
	}
	if early > 0 || honoured == 0 {
		f.broken("Retry-After: %d retries after a 429 came sooner than it asked, %d later", early, honoured)
	}
	if goneTwice > 0 {
		f.broken("%d events answered 410 Gone were attempted more than once", goneTwice)
	}
	f.t.Logf("Retry-After honoured on %d retries after a 429", honoured)
}

// checkBreaker: the breaker opened once per outage (closed -> open) and
// closed after each (-> closed), as its CircuitChanged records in the
// audit log show, and ends closed; with maxRefused > 0, it kept the
// attempts that found the partner's port closed under maxRefused per
// outage (without it, every event of a 6 s outage would be tried and
// refused again and again: thousands).
func checkBreaker(outages, maxRefused int) func(f *faultRun) {
	return func(f *faultRun) {
		ctx := context.Background()
		conn := auditDB(f.t, f.dbURL)
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SELECT from_state, to_state FROM circuit_changes WHERE destination = $1 ORDER BY at, id", faultDest)
		if err != nil {
			f.t.Fatalf("read circuit changes: %v", err)
		}
		var opened, closed int
		var changes []string
		last := "closed"
		for rows.Next() {
			var from, to string
			if err := rows.Scan(&from, &to); err != nil {
				f.t.Fatal(err)
			}
			if from == "closed" && to == "open" {
				opened++
			}
			if to == "closed" {
				closed++
			}
			changes = append(changes, from+"->"+to)
			last = to
		}
		if opened != outages || closed != outages || last != "closed" {
			f.broken("breaker: want %d openings from closed and %d closings, ending closed; the audit log has %v", outages, outages, changes)
		}
		if maxRefused > 0 && f.res.RefusedAttempts > outages*maxRefused {
			f.broken("breaker: %d attempts refused during %d outages; an open breaker makes none but its probes", f.res.RefusedAttempts, outages)
		}
		f.t.Logf("breaker: %v; %d attempts refused", changes, f.res.RefusedAttempts)
	}
}
