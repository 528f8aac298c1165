package poll

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
)

// order is one item of the fake partner's API.
type order struct {
	ID        int    `json:"id"`
	Type      string `json:"type"`
	UpdatedAt string `json:"updated_at"`
}

// fakePartner is a partner API without webhooks: a growing list of orders,
// served in pages after a cursor. It can rate-limit, fail, block, and
// check OAuth2 tokens, and it records who asked for what.
type fakePartner struct {
	*httptest.Server
	t *testing.T

	mu     sync.Mutex
	orders []order
	// pageSize is how many orders one page holds.
	pageSize int
	// status, when not 0, is answered to every request (an outage).
	status int
	// every429, when not 0, answers every n-th request 429 Retry-After 1.
	every429 int
	// tokens, when set, must have issued the request's bearer token;
	// refuse is the status of a refusal (401 or 403).
	tokens *oauthtest.Server
	refuse int
	// block, when set, holds requests for a page after a cursor in it
	// until the channel is closed.
	block map[string]chan struct{}
	// requests counts requests; byReplica by their X-Replica header.
	requests  int
	byReplica map[string]int
	// log is every request's cursor, in order.
	log []string
}

func newFakePartner(t *testing.T, n, pageSize int) *fakePartner {
	t.Helper()
	p := &fakePartner{t: t, pageSize: pageSize, byReplica: map[string]int{}, block: map[string]chan struct{}{}}
	p.add(n)
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

// add appends n orders.
func (p *fakePartner) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range n {
		id := len(p.orders) + 1
		typ := "order.created"
		if id%3 == 0 {
			typ = "order.paid"
		}
		p.orders = append(p.orders, order{ID: id, Type: typ, UpdatedAt: base.Add(time.Duration(id) * time.Second).Format(time.RFC3339)})
	}
}

func (p *fakePartner) set(f func(p *fakePartner)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *fakePartner) serve(w http.ResponseWriter, r *http.Request) {
	after := r.URL.Query().Get("after")
	since := r.URL.Query().Get("since")
	p.mu.Lock()
	p.requests++
	p.byReplica[r.Header.Get("X-Replica")]++
	p.log = append(p.log, after+since)
	n := p.requests
	gate := p.block[after]
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	p.mu.Lock()
	status, every429, tokens, refuse := p.status, p.every429, p.tokens, p.refuse
	p.mu.Unlock()
	switch {
	case status != 0:
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"down for maintenance"}`))
		return
	case every429 > 0 && n%every429 == 0:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case tokens != nil && !tokens.Valid(r.Header.Get("Authorization")):
		w.WriteHeader(refuse)
		return
	}

	p.mu.Lock()
	var page []order
	start := 0
	if after != "" {
		a, err := strconv.Atoi(after)
		if err != nil {
			p.mu.Unlock()
			http.Error(w, "bad cursor", http.StatusBadRequest)
			return
		}
		start = a
	}
	if since != "" {
		ts, err := time.Parse(time.RFC3339, since)
		if err != nil {
			p.mu.Unlock()
			http.Error(w, "bad since", http.StatusBadRequest)
			return
		}
		// Inclusive, as such parameters usually are.
		for start < len(p.orders) {
			u, _ := time.Parse(time.RFC3339, p.orders[start].UpdatedAt)
			if !u.Before(ts) {
				break
			}
			start++
		}
	}
	start = min(start, len(p.orders))
	end := min(start+p.pageSize, len(p.orders))
	page = append(page, p.orders[start:end]...)
	more := end < len(p.orders)
	p.mu.Unlock()

	answer := map[string]any{"data": map[string]any{"orders": page}}
	if more {
		answer["next"] = strconv.Itoa(end)
		next := *r.URL
		q := next.Query()
		q.Set("after", strconv.Itoa(end))
		next.RawQuery = q.Encode()
		w.Header().Add("Link", fmt.Sprintf(`<%s>; rel="next", <%s?after=0>; rel="first"`, next.RequestURI(), r.URL.Path))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// counts returns the requests made so far, in all and by replica.
func (p *fakePartner) counts() (int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	by := map[string]int{}
	for k, v := range p.byReplica {
		by[k] = v
	}
	return p.requests, by
}

func (p *fakePartner) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.orders)
}
