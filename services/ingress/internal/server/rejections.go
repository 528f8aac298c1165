package server

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/pkg/config"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// unknownSource names, in summaries and metrics, every request to a source
// that is not configured: the names are the caller's, so they share one
// limit and one series.
const unknownSource = "_unknown"

// rejectionGate bounds the audit records of one source's refused requests
// (or the publish API's, or all unknown sources'). Anyone can cause a
// refusal without a key or a signature, so without it a flood becomes an
// audit record and a database row per request. Within the token bucket
// each refusal is recorded as before; over it, refusals are counted per
// reason and summarised once per interval. The answer to the request is
// never affected.
type rejectionGate struct {
	name      string
	limit     config.RejectionAudit
	limiter   *rate.Limiter
	unaudited prometheus.Counter

	mu    sync.Mutex
	since time.Time // start of the interval being counted
	held  map[switchyardv1.RejectReason]*heldRejections
}

// heldRejections counts one reason's refusals over the limit and keeps the
// last one's details for the summary.
type heldRejections struct {
	count int64
	last  *switchyardv1.WebhookRejected
}

func newRejectionGate(name string, limit config.RejectionAudit, m *metrics, now time.Time) *rejectionGate {
	return &rejectionGate{
		name:      name,
		limit:     limit,
		limiter:   rate.NewLimiter(rate.Limit(limit.PerSecond), limit.Burst),
		unaudited: m.unaudited.WithLabelValues(name),
		since:     now,
		held:      map[switchyardv1.RejectReason]*heldRejections{},
	}
}

// admit reports whether rec may be audited on its own; if not, it is
// counted towards the next summary.
func (g *rejectionGate) admit(rec *switchyardv1.WebhookRejected, now time.Time) bool {
	if g.limiter.AllowN(now, 1) {
		return true
	}
	g.unaudited.Inc()
	g.mu.Lock()
	h := g.held[rec.Reason]
	if h == nil {
		h = &heldRejections{}
		g.held[rec.Reason] = h
	}
	h.count++
	h.last = rec
	g.mu.Unlock()
	return false
}

// summaries returns one summary record per reason counted since the last
// call, and starts a new interval.
func (g *rejectionGate) summaries(now time.Time) []*switchyardv1.WebhookRejected {
	g.mu.Lock()
	held, since := g.held, g.since
	if len(held) > 0 {
		g.held = map[switchyardv1.RejectReason]*heldRejections{}
	} else {
		// Nothing held: the map stays the gate's, and admit may write to
		// it as soon as the lock is released.
		held = nil
	}
	g.since = now
	g.mu.Unlock()

	out := make([]*switchyardv1.WebhookRejected, 0, len(held))
	for reason, h := range held {
		last := h.last
		out = append(out, &switchyardv1.WebhookRejected{
			Source: g.name, Reason: reason, StatusCode: last.StatusCode,
			RemoteAddr: last.RemoteAddr, UserAgent: last.UserAgent, ApiKey: last.ApiKey,
			Summarized: h.count,
			Detail: fmt.Sprintf("%d %s rejections between %s and %s were not recorded one by one: over ingress.rejection_audit (%g per second, burst %d); the last one: %s",
				h.count, reasonName(reason), since.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339),
				g.limit.PerSecond, g.limit.Burst, last.Detail),
		})
	}
	return out
}

func reasonName(r switchyardv1.RejectReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "REJECT_REASON_"))
}

// summarizeRejections emits the summaries every interval until done is
// closed.
func (s *Server) summarizeRejections(done <-chan struct{}) {
	t := time.NewTicker(s.cfg.RejectionAudit.SummaryInterval.D())
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.flushSummaries(now)
		}
	}
}

func (s *Server) flushSummaries(now time.Time) {
	for _, g := range s.gates {
		for _, rec := range g.summaries(now) {
			s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: rec}})
		}
	}
}
