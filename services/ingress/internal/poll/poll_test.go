package poll

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/ingress/internal/server"
)

// harness is an embedded NATS server with ingress's store path (the real
// server: idempotency records, PubAck) for pollers to store into.
type harness struct {
	t   *testing.T
	ns  *natstest.Server
	js  jetstream.JetStream
	srv *server.Server
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, server.Config{})
}

// newHarnessWith is newHarness with ingress's server configured by cfg
// (its logger set here).
func newHarnessWith(t *testing.T, cfg server.Config) *harness {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	cfg.Logger = natstest.Logger(t)
	srv, err := server.New(js, auditlog.NewEmitter(js, "ingress"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return &harness{t: t, ns: ns, js: js, srv: srv}
}

// source is a valid polled source named shop reading p, its defaults
// applied, changed by mutate.
func pollSource(t *testing.T, p *fakePartner, mutate func(*config.SourcePoll)) config.Source {
	t.Helper()
	sp := &config.SourcePoll{
		URL:                 p.URL + "/orders",
		Query:               map[string]string{"after": "{cursor}"},
		Interval:            config.Duration(time.Second),
		Jitter:              config.Duration(time.Millisecond),
		Timeout:             config.Duration(5 * time.Second),
		AllowPrivateNetwork: true,
		Items:               "$.data.orders",
		ID:                  "$.id",
		Type:                ".type",
		Cursor:              config.PollCursor{Mode: config.CursorResponse, Path: "$.next"},
	}
	if mutate != nil {
		mutate(sp)
	}
	c := config.Config{Sources: []config.Source{{Name: "shop", Poll: sp}}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("the test's source is not valid: %v", err)
	}
	return c.Sources[0]
}

// newPoller builds a Poller for sources on js, with its buckets declared.
func (h *harness) newPoller(js jetstream.JetStream, srv Store, cfg Config) *Poller {
	h.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = natstest.Logger(h.t)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = time.Second
	}
	p, err := New(js, srv, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Provision(ctx); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// stored counts the events of source in EVENTS by event id.
func (h *harness) stored(source string) map[string]int {
	h.t.Helper()
	n := map[string]int{}
	for _, m := range natstest.StreamMsgs(h.t, h.js, "EVENTS", "webhooks."+source+".>") {
		n[m.Header.Get(events.HeaderEventID)]++
	}
	return n
}

// checkOnce fails unless every one of the partner's first n orders is
// stored exactly once, and nothing else.
func (h *harness) checkOnce(source string, n int) {
	h.t.Helper()
	got := h.stored(source)
	for i := 1; i <= n; i++ {
		id := source + ":" + strconv.Itoa(i)
		if got[id] != 1 {
			h.t.Errorf("order %d stored %d times, want once", i, got[id])
		}
	}
	if len(got) != n {
		h.t.Errorf("%d events stored, want %d", len(got), n)
	}
}

func (h *harness) cursor(p *Poller, source string) string {
	h.t.Helper()
	c, _, err := p.cursors.Get(context.Background(), source)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// roundsUntil runs rounds of s until done says so, at most 50.
func roundsUntil(t *testing.T, p *Poller, s *source, done func(Round) bool) []Round {
	t.Helper()
	var rs []Round
	for range 50 {
		r := s.round(context.Background(), p.store, p.cursors, p.cfg.beforeCursor)
		rs = append(rs, r)
		if done(r) {
			return rs
		}
	}
	t.Fatalf("not done after 50 rounds; the last: %+v", rs[len(rs)-1])
	return nil
}

func exhausted(r Round) bool { return r.Status == StatusOK && r.Exhausted }

func TestRoundStoresEveryItemOnceAndMovesTheCursor(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 25, 10)
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, func(sp *config.SourcePoll) { sp.MaxPages = 2 })}})
	s := p.sources[0]

	// 25 orders in pages of 10, two pages a round: the first round stops
	// at max_pages with the cursor after order 20.
	r := s.round(context.Background(), p.store, p.cursors, nil)
	if r.Status != StatusOK || r.Exhausted || r.Pages != 2 || r.New != 20 || r.CursorBefore != "" || r.CursorAfter != "20" {
		t.Fatalf("first round %+v, want 2 pages, 20 new, cursor 20, not exhausted", r)
	}
	r = s.round(context.Background(), p.store, p.cursors, nil)
	if r.Status != StatusOK || !r.Exhausted || r.New != 5 || r.CursorAfter != "20" {
		t.Fatalf("second round %+v, want the last 5 and the partner exhausted", r)
	}
	h.checkOnce("shop", 25)

	// The last page is read again each round (its cursor does not move
	// until the partner gives a next one): its items are duplicates.
	r = s.round(context.Background(), p.store, p.cursors, nil)
	if r.New != 0 || r.Duplicates != 5 {
		t.Errorf("a round with nothing new: %+v, want 5 duplicates", r)
	}
	partner.add(7)
	roundsUntil(t, p, s, exhausted)
	h.checkOnce("shop", 32)
	if c := h.cursor(p, "shop"); c != "30" {
		t.Errorf("cursor %q, want 30", c)
	}

	// Stored as webhooks are: subject by type, the source and type headers.
	for _, m := range natstest.StreamMsgs(t, h.js, "EVENTS", "webhooks.shop.order_paid") {
		if m.Header.Get(events.HeaderSource) != "shop" || m.Header.Get(events.HeaderEventType) != "order.paid" || m.Header.Get(events.HeaderContentType) != "application/json" {
			t.Errorf("stored headers %v", m.Header)
		}
	}
	if n := natstest.Count(t, h.js, "EVENTS", "webhooks.shop.order_paid"); n != 10 {
		t.Errorf("%d order.paid events, want 10 (every third of 32)", n)
	}
}

func TestRoundCursorModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mutate     func(*config.SourcePoll)
		wantCursor func(p *fakePartner) string
	}{
		{"response", nil, func(*fakePartner) string { return "20" }},
		{"last_item", func(sp *config.SourcePoll) {
			sp.Cursor = config.PollCursor{Mode: config.CursorLastItem, Path: "$.id"}
		}, func(*fakePartner) string { return "23" }},
		{"link", func(sp *config.SourcePoll) {
			sp.Query = nil
			sp.Cursor = config.PollCursor{Mode: config.CursorLink}
		}, func(p *fakePartner) string { return p.URL + "/orders?after=20" }},
		{"timestamp", func(sp *config.SourcePoll) {
			sp.Query = map[string]string{"since": "{cursor}"}
			sp.Cursor = config.PollCursor{Mode: config.CursorTimestamp, Path: "$.updated_at"}
		}, func(*fakePartner) string { return "2026-01-01T00:00:23Z" }},
		{"gojq items", func(sp *config.SourcePoll) {
			sp.Items = ".data.orders[] | select(.id > 0)"
			sp.ID = `"\(.id)"`
			sp.Type = "$.type"
		}, func(*fakePartner) string { return "20" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			partner := newFakePartner(t, 23, 10)
			p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, tt.mutate)}})
			s := p.sources[0]
			roundsUntil(t, p, s, exhausted)
			h.checkOnce("shop", 23)
			if c := h.cursor(p, "shop"); c != tt.wantCursor(partner) {
				t.Errorf("cursor %q, want %q", c, tt.wantCursor(partner))
			}
			// New orders after the cursor: found, once each.
			partner.add(4)
			roundsUntil(t, p, s, exhausted)
			h.checkOnce("shop", 27)
		})
	}
}

func TestRoundMode_None(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 6, 10)
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, func(sp *config.SourcePoll) {
		sp.Query = nil
		sp.Cursor = config.PollCursor{}
	})}})
	s := p.sources[0]
	for range 3 {
		if r := s.round(context.Background(), p.store, p.cursors, nil); r.Status != StatusOK || r.Pages != 1 || !r.Exhausted {
			t.Fatalf("round %+v", r)
		}
	}
	h.checkOnce("shop", 6)
	if c, rev, _ := p.cursors.Get(context.Background(), "shop"); c != "" || rev != 0 {
		t.Errorf("mode none stored a cursor %q", c)
	}
}

// failingCursors fails the next Put: a crash after the page's items were
// stored and before the cursor moved.
type failingCursors struct {
	Cursors
	mu   sync.Mutex
	fail int
}

func (f *failingCursors) Put(ctx context.Context, source, cursor string, rev uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return 0, errors.New("NATS went away")
	}
	return f.Cursors.Put(ctx, source, cursor, rev)
}

func TestRoundCrashBeforeTheCursorStoresNothingTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 25, 10)
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, nil)}})
	s := p.sources[0]
	fc := &failingCursors{Cursors: p.cursors, fail: 1}
	r := s.round(context.Background(), p.store, fc, nil)
	if r.Status != StatusStoreFailed || r.New != 10 || r.CursorAfter != "" {
		t.Fatalf("round %+v, want the first page stored and the cursor not moved", r)
	}
	r = s.round(context.Background(), p.store, fc, nil)
	if r.Status != StatusOK || r.Duplicates != 10 || r.New != 15 {
		t.Fatalf("round after the crash %+v, want the page read again (10 duplicates) and the rest new", r)
	}
	h.checkOnce("shop", 25)
}

func TestRoundFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 25, 10)
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, nil)}})
	s := p.sources[0]

	// An outage after the first page: the cursor stays after what was
	// stored, and the round after the outage goes on from there.
	gate := make(chan struct{})
	partner.set(func(p *fakePartner) { p.block["10"] = gate })
	done := make(chan Round)
	go func() { done <- s.round(context.Background(), p.store, p.cursors, nil) }()
	waitfor.True(t, "the round to ask for the second page", func() bool { n, _ := partner.counts(); return n == 2 })
	partner.set(func(p *fakePartner) { p.status = http.StatusServiceUnavailable })
	close(gate)
	r := <-done
	if r.Status != StatusUnavailable || r.StatusCode != 503 || r.CursorAfter != "10" || r.Snippet == "" {
		t.Fatalf("round in the outage %+v, want unavailable with the cursor after page 1", r)
	}
	for _, tt := range []struct {
		status     int
		want       Status
		retryAfter time.Duration
	}{
		{http.StatusTooManyRequests, StatusRateLimited, time.Second},
		{http.StatusGatewayTimeout, StatusTimeout, 0},
		{http.StatusBadRequest, StatusRejected, 0},
		{http.StatusInternalServerError, StatusUnavailable, 0},
	} {
		partner.set(func(p *fakePartner) { p.status = 0; p.every429 = 0 })
		if tt.status == http.StatusTooManyRequests {
			partner.set(func(p *fakePartner) { p.every429 = 1 })
		} else {
			partner.set(func(p *fakePartner) { p.status = tt.status })
		}
		r := s.round(context.Background(), p.store, p.cursors, nil)
		if r.Status != tt.want || r.StatusCode != tt.status || r.RetryAfter != tt.retryAfter {
			t.Errorf("HTTP %d: round %+v, want %s retry-after %v", tt.status, r, tt.want, tt.retryAfter)
		}
	}
	partner.set(func(p *fakePartner) { p.status, p.every429 = 0, 0 })
	roundsUntil(t, p, s, exhausted)
	h.checkOnce("shop", 25)

	// An answer the configuration cannot read fails the page before
	// anything of it is stored.
	bad := newFakePartner(t, 3, 10)
	noID := pollSource(t, bad, func(sp *config.SourcePoll) { sp.ID = "$.missing" })
	noID.Name = "no-id"
	p2 := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{noID}})
	if r := p2.sources[0].round(context.Background(), p2.store, p2.cursors, nil); r.Status != StatusBadAnswer || r.New != 0 {
		t.Errorf("items without ids: %+v, want bad_answer and nothing stored", r)
	}
	// Time out.
	slow := newFakePartner(t, 3, 10)
	slow.set(func(p *fakePartner) { p.block[""] = make(chan struct{}) })
	quiet := pollSource(t, slow, func(sp *config.SourcePoll) { sp.Timeout = config.Duration(100 * time.Millisecond) })
	quiet.Name = "quiet"
	p3 := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{quiet}})
	if r := p3.sources[0].round(context.Background(), p3.store, p3.cursors, nil); r.Status != StatusTimeout {
		t.Errorf("a partner that does not answer: %+v, want timeout", r)
	}
}

func TestRoundOAuth2TokensExpireAndAreRevoked(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, refuse := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(strconv.Itoa(refuse), func(t *testing.T) {
			ts := oauthtest.Start(t, "switchyard", "s3cret", time.Second)
			partner := newFakePartner(t, 40, 5)
			partner.set(func(p *fakePartner) { p.tokens, p.refuse = ts, refuse })
			auth := config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: ts.URL, ClientID: "switchyard", ClientSecret: "s3cret"}
			name := "shop" + strconv.Itoa(refuse)
			src := pollSource(t, partner, func(sp *config.SourcePoll) { sp.Auth = auth; sp.MaxPages = 1 })
			src.Name = name
			p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{src}})
			s := p.sources[0]
			// One page a round, paced, across several 1s token lifetimes,
			// with the tokens revoked halfway: every round succeeds.
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				r := s.round(context.Background(), p.store, p.cursors, nil)
				if r.Status != StatusOK {
					t.Fatalf("round %d: %+v", i, r)
				}
				if i == 3 {
					ts.RevokeAll()
				}
				if r.Exhausted && ts.Requests() >= 3 {
					break
				}
				<-tick.C
			}
			h.checkOnce(name, 40)

			// The client is refused by the token endpoint: a credentials
			// failure.
			bad := pollSource(t, partner, func(sp *config.SourcePoll) {
				sp.Auth = auth
				sp.Auth.ClientSecret = "wrong"
			})
			bad.Name = name + "-bad"
			p2 := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{bad}})
			if r := p2.sources[0].round(context.Background(), p2.store, p2.cursors, nil); r.Status != StatusCredentials || r.StatusCode != 0 {
				t.Errorf("refused client: %+v, want a credentials failure without a request", r)
			}
		})
	}
	// Static credentials the partner refuses: one request, a credentials
	// failure.
	ts := oauthtest.Start(t, "switchyard", "s3cret", time.Hour)
	partner := newFakePartner(t, 3, 5)
	partner.set(func(p *fakePartner) { p.tokens, p.refuse = ts, http.StatusForbidden })
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{pollSource(t, partner, func(sp *config.SourcePoll) {
		sp.Auth = config.Auth{Type: config.AuthBearer, Token: "not-issued"}
	})}})
	r := p.sources[0].round(context.Background(), p.store, p.cursors, nil)
	if n, _ := partner.counts(); r.Status != StatusCredentials || r.StatusCode != 403 || n != 1 {
		t.Errorf("static token refused: %+v after %d requests, want one request and a credentials failure", r, n)
	}
}

func TestPollerBacksOffAndRecovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 30, 10)
	partner.set(func(p *fakePartner) { p.status = http.StatusBadGateway })
	var mu sync.Mutex
	var rounds []Round
	p := h.newPoller(h.js, h.srv, Config{
		Sources: []config.Source{pollSource(t, partner, func(sp *config.SourcePoll) { sp.MaxPages = 1 })},
		OnRound: func(_ context.Context, r Round) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() },
	})
	natstest.Go(t, "poller", p.Run)
	seen := func() []Round { mu.Lock(); defer mu.Unlock(); return append([]Round(nil), rounds...) }
	waitfor.True(t, "two failed rounds", func() bool { return len(seen()) >= 2 })
	partner.set(func(p *fakePartner) { p.status, p.every429 = 0, 4 })
	waitfor.True(t, "every order stored", func() bool { return len(h.stored("shop")) == 30 })
	h.checkOnce("shop", 30)
	rs := seen()
	var limited, unavailable int
	for _, r := range rs {
		switch r.Status {
		case StatusRateLimited:
			limited++
			if r.RetryAfter != time.Second {
				t.Errorf("a 429 round records Retry-After %v, want 1s", r.RetryAfter)
			}
		case StatusUnavailable:
			unavailable++
		}
	}
	if unavailable < 2 || limited == 0 {
		t.Errorf("rounds %v: want the outage's and the rate limit's failures recorded", statuses(rs))
	}
}

func TestNextWait(t *testing.T) {
	t.Parallel()
	ok := Round{Status: StatusOK}
	down := Round{Status: StatusUnavailable}
	limited := Round{Status: StatusRateLimited, RetryAfter: 2 * time.Minute}
	for _, tt := range []struct {
		r        Round
		failures int
		want     time.Duration
	}{
		{ok, 0, time.Minute + time.Second}, // the interval and its jitter
		{down, 1, time.Minute},             // the interval, no jitter
		{down, 2, 2 * time.Minute},         // doubling
		{down, 9, 5 * time.Minute},         // capped
		{limited, 1, 2 * time.Minute},      // the partner asked for longer
		{Round{Status: StatusRateLimited, RetryAfter: time.Second}, 3, 4 * time.Minute}, // the backoff is longer
	} {
		if got := nextWait(tt.r, tt.failures, time.Minute, time.Second); got != tt.want {
			t.Errorf("nextWait(%s, %d) = %v, want %v", tt.r.Status, tt.failures, got, tt.want)
		}
	}
}

func statuses(rs []Round) []Status {
	s := make([]Status, len(rs))
	for i, r := range rs {
		s[i] = r.Status
	}
	return s
}

func TestLeaseOneReplicaPollsAndATakeoverAfterItDies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	partner := newFakePartner(t, 30, 10)
	// Replica a stops inside its round, asking for the page after order 10.
	gate := make(chan struct{})
	partner.set(func(p *fakePartner) { p.block["10"] = gate })

	replica := func(name string) (*Poller, context.CancelFunc, func()) {
		nc, js := h.ns.Connect(t)
		src := pollSource(t, partner, func(sp *config.SourcePoll) {
			sp.Headers = map[string]config.Secret{"X-Replica": config.Secret(name)}
		})
		// Each replica stores through its own ingress, on its own
		// connection.
		srv, err := server.New(js, auditlog.NewEmitter(js, "ingress"), server.Config{Logger: natstest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Provision(context.Background()); err != nil {
			t.Fatal(err)
		}
		p := h.newPoller(js, srv, Config{Sources: []config.Source{src}, Instance: name, LeaseTTL: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { defer close(stopped); _ = p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-stopped; _ = srv.Close(context.Background()) })
		return p, cancel, nc.Close
	}
	a, killA, closeA := replica("a")
	waitfor.True(t, "replica a to hold the lease and ask for page 2", func() bool {
		_, by := partner.counts()
		return by["a"] >= 2
	})
	b, _, _ := replica("b")
	// b runs for a while and must not poll while a holds the lease.
	waitfor.True(t, "replica b to try the lease", func() bool {
		e, err := b.leases.Get(context.Background(), "shop")
		return err == nil && string(e.Value()) == "a"
	})
	if _, by := partner.counts(); by["b"] != 0 {
		t.Fatalf("replica b polled %d times while a held the lease", by["b"])
	}

	// a dies mid-round: its connection goes, so it can neither store nor
	// give the lease up. b takes over once the lease expires, and goes on
	// from the cursor a stored (after page 1).
	closeA()
	killA()
	close(gate)
	waitfor.True(t, "replica b to store every order", func() bool { return len(h.stored("shop")) == 30 })
	h.checkOnce("shop", 30)
	_, by := partner.counts()
	if by["b"] == 0 {
		t.Error("replica b never polled")
	}
	if c := h.cursor(b, "shop"); c != "20" {
		t.Errorf("cursor %q, want 20", c)
	}
	e, err := b.leases.Get(context.Background(), "shop")
	if err != nil || string(e.Value()) != "b" {
		t.Errorf("lease holder %v %v, want b", e, err)
	}
	if _, by := partner.counts(); by["a"] != 2 {
		t.Errorf("replica a made %d requests, want the 2 before it died", by["a"])
	}
	if a.metrics.leaseHeld.WithLabelValues("shop") == nil {
		t.Error("no lease gauge")
	}
}

// A polled source's items are checked against its contract as webhooks
// are: an item that breaks it is kept in QUARANTINE with its violations
// and audited, not stored in EVENTS (no destination gets it), the round
// counts it, and finding it again is a
// duplicate.
func TestRoundQuarantinesItemsThatBreakTheContract(t *testing.T) {
	t.Parallel()
	schema := filepath.Join(t.TempDir(), "paid.schema.json")
	if err := os.WriteFile(schema, []byte(`{"type": "object", "required": ["paid_at"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	partner := newFakePartner(t, 9, 10)
	src := pollSource(t, partner, nil)
	src.Contract = &config.Contract{Schemas: map[string]string{"order.paid": schema}, OnInvalid: config.OnInvalidQuarantine}
	set, err := contracts.Compile(config.Config{Sources: []config.Source{src}})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, server.Config{Sources: []config.Source{src}, Contracts: set})
	js, srv := h.js, h.srv
	p := h.newPoller(js, srv, Config{Sources: []config.Source{src}})
	s := p.sources[0]

	// Orders 3, 6 and 9 are order.paid without the paid_at the schema
	// requires.
	r := s.round(context.Background(), p.store, p.cursors, nil)
	if r.Status != StatusOK || r.Items != 9 || r.New != 6 || r.Quarantined != 3 || r.Duplicates != 0 {
		t.Fatalf("round %+v, want 9 items: 6 new, 3 quarantined", r)
	}
	if n := natstest.Count(t, js, "EVENTS", "webhooks.shop.order_paid"); n != 0 {
		t.Errorf("%d order.paid events in EVENTS, want none: they break the contract", n)
	}
	if n := natstest.Count(t, js, "EVENTS", "webhooks.shop.>"); n != 6 {
		t.Errorf("%d events in EVENTS, want the 6 valid ones", n)
	}
	held := natstest.StreamMsgs(t, js, "QUARANTINE", contracts.QuarantineSubject(contracts.Source("shop"), "webhooks.shop.>"))
	if len(held) != 3 {
		t.Fatalf("%d items in QUARANTINE, want 3", len(held))
	}
	for _, m := range held {
		vs := contracts.DecodeViolations(m.Header.Get(contracts.HeaderViolations))
		if len(vs) == 0 || !strings.Contains(vs[0].Message, "paid_at") || m.Header.Get(contracts.HeaderSubject) != "webhooks.shop.order_paid" {
			t.Errorf("quarantined %s with violations %v and subject %q, want the missing paid_at and the EVENTS subject", m.Header.Get(events.HeaderEventID), vs, m.Header.Get(contracts.HeaderSubject))
		}
	}
	// Audited as a quarantined webhook is (the emitter publishes in the
	// background).
	var audited []*jetstream.RawStreamMsg
	waitfor.True(t, "3 PayloadQuarantined records", func() bool {
		audited = natstest.StreamMsgs(t, js, natsx.StreamAudit, "audit.quarantined.shop")
		return len(audited) >= 3
	})
	for _, m := range audited {
		rec, err := auditlog.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if q := rec.GetPayloadQuarantined(); q.GetSource() != "shop" || q.GetQuarantineSeq() == 0 || q.GetRejected() || len(q.GetViolations()) == 0 {
			t.Errorf("audit record %v, want a PayloadQuarantined of source shop with its QUARANTINE sequence and violations", rec)
		}
	}

	// The last page is read again: every item on it, quarantined or not, is
	// a duplicate.
	r = s.round(context.Background(), p.store, p.cursors, nil)
	if r.Duplicates != 9 || r.New != 0 || r.Quarantined != 0 {
		t.Errorf("the page read again: %+v, want 9 duplicates", r)
	}
	if n := natstest.Count(t, js, "QUARANTINE", ">"); n != 3 {
		t.Errorf("%d items in QUARANTINE after reading the page again, want still 3", n)
	}
}
