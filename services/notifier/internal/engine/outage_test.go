package engine

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// Slack's answers during an outage: rate limited first, then failing.
var slackOutage = []slacktest.Answer{
	{Status: http.StatusTooManyRequests, Text: "rate_limited", RetryAfter: "1"},
	{Status: http.StatusInternalServerError, Text: "internal_error"},
}

// waitRequests waits until Slack received n requests in all.
func (e *env) waitRequests(n int) {
	e.t.Helper()
	waitfor.True(e.t, "Slack asked again", func() bool { return len(e.slack.Messages()) >= n })
}

// Slack answers 429 with Retry-After, then 500, across a whole alert
// episode (it fires and resolves while Slack fails): once Slack answers
// again the page is sent once, then the resolved message once.
func TestSlackOutageAcrossAnEpisode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slackOutage...)
	e.start()
	e.emit(deadLetter("erp", 7))
	e.clock.Advance(30 * time.Second) // the group wait
	e.evaluate()
	e.waitRequests(3)
	// 30 minutes without a dead letter: resolved, its page still unsent.
	e.clock.Advance(31 * time.Minute)
	e.evaluate()
	e.waitRequests(len(e.slack.Messages()) + 1)
	if got := e.titles(); len(got) != 0 {
		t.Fatalf("Slack accepted %q during the outage", got)
	}

	e.slack.Script(slacktest.OK)
	e.settle()
	e.advance(time.Second)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp", "[RESOLVED][critical] DeliveryDeadLettered on erp resolved")
	msgs := e.slack.Messages()
	if msgs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("first answer %d, want the 429", msgs[0].Status)
	}
	if gap := msgs[1].At.Sub(msgs[0].At); gap < time.Second {
		t.Errorf("asked again %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
	recs := e.alertRecords()
	if len(recs) != 2 || !recs[0].Delivered || !recs[1].Delivered {
		t.Errorf("alert records = %v, want the page and the resolved message, delivered", recs)
	}
}

// Two episodes of an alert while Slack fails (it fires, resolves and fires
// again before Slack answers): each episode's page and the first one's
// resolved message, each once, in order.
func TestSlackOutageAcrossTwoEpisodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slackOutage...)
	e.start()
	e.emit(deadLetter("erp", 7))
	e.clock.Advance(30 * time.Second)
	e.evaluate()
	e.waitRequests(3)
	e.clock.Advance(31 * time.Minute)
	e.evaluate()
	e.publish(deadLetter("erp", 8))
	e.evaluate()
	e.clock.Advance(30 * time.Second)
	e.evaluate()
	e.waitRequests(len(e.slack.Messages()) + 1)

	e.slack.Script(slacktest.OK)
	e.settle()
	for range 3 {
		e.advance(time.Second)
	}
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp", "[RESOLVED][critical] DeliveryDeadLettered on erp resolved before it fired again at 2026-03-01 12:31:30 UTC",
		"[FIRING][critical] 1 delivery dead-lettered on erp")
	e.advance(31 * time.Minute)
	e.wantTitles("[FIRING]", "[RESOLVED]", "[FIRING]", "[RESOLVED]")
	recs := e.alertRecords()
	if len(recs) != 4 || recs[1].GetEpisode() != 1 || recs[3].GetEpisode() != 2 {
		t.Errorf("alert records = %v, want each episode's page and resolved message", recs)
	}
}
