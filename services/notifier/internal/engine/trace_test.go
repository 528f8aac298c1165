package engine

import (
	"strings"
	"testing"
	"time"
)

// A dead letter whose last attempt was traced: the page carries the trace
// id, so that on-call can open the trace from the alert.
func TestDeadLetterPageCarriesTheTraceID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	dl := deadLetter("erp", 1)
	dl.GetDeadLettered().TraceId = "4bf92f3577b34da6a3ce929d0e0e4736"
	bad := deadLetter("crm", 2)
	bad.GetDeadLettered().TraceId = "*not* a trace `id`"
	e.emit(dl, bad)
	e.settle()
	e.advance(30 * time.Second)
	// Two alerts, sent in no particular order.
	e.wantAll("[FIRING][critical] 1 delivery dead-lettered on crm", "[FIRING][critical] 1 delivery dead-lettered on erp")
	var traced, untraced int
	for _, page := range e.slack.Accepted() {
		all := page.Text + "\n" + strings.Join(page.Fields, "\n")
		switch {
		case strings.Contains(all, "*Destination*\nerp"):
			traced++
			if !strings.Contains(all, "*Trace*\n`4bf92f3577b34da6a3ce929d0e0e4736`") {
				t.Errorf("the erp page lacks the trace id:\n%s", all)
			}
		case strings.Contains(all, "*Destination*\ncrm"):
			untraced++
			if strings.Contains(all, "Trace") {
				t.Errorf("the crm page shows what is not a trace id:\n%s", all)
			}
		}
	}
	if traced != 1 || untraced != 1 {
		t.Errorf("pages: %d for erp, %d for crm; want one each", traced, untraced)
	}
}
