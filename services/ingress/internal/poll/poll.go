// Package poll polls the APIs of partners that send no webhooks. Each
// polled source is a loop: hold the source's lease (one replica polls it),
// read its cursor, ask the partner for the page after it, store every item
// as an event through ingress's store path (the same idempotency record
// and Nats-Msg-Id as a webhook, so an item seen twice is one event), and
// only once every item of the page has its PubAck move the cursor by
// compare-and-set. A crash anywhere in between re-reads the page and
// stores nothing twice; a replica that lost its lease cannot move the
// cursor back.
package poll

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/jsonexpr"
	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/topology"
)

// Store stores one polled item as ingress stores a webhook: check the
// source's contract, look up the idempotency record, publish with
// Nats-Msg-Id <source>:<item id>, wait for the PubAck, then write the
// record. It reports the event id, whether the item was stored (or
// quarantined) before, and whether it broke the source's contract and is
// kept in QUARANTINE, not delivered, until it is released. An error means
// the item is not stored.
type Store interface {
	StorePolled(ctx context.Context, source, itemID, eventType string, body []byte, receivedAt time.Time) (eventID string, duplicate, quarantined bool, err error)
}

// Status is how a round ended.
type Status string

// Round statuses. OK is a round that read the partner's answer and stored
// what it found; interrupted ones (shutdown, a lost lease) say nothing
// about the partner; every other status is the partner failing, or its
// answer, or storing.
const (
	StatusOK          Status = "ok"
	StatusTimeout     Status = "timeout"
	StatusUnavailable Status = "unavailable"
	StatusRateLimited Status = "rate_limited"
	StatusCredentials Status = "credentials"
	StatusRejected    Status = "rejected"
	StatusBadAnswer   Status = "bad_answer"
	StatusStoreFailed Status = "store_failed"
	StatusInterrupted Status = "interrupted"
)

// Statuses lists every round status.
var Statuses = []Status{StatusOK, StatusTimeout, StatusUnavailable, StatusRateLimited, StatusCredentials,
	StatusRejected, StatusBadAnswer, StatusStoreFailed, StatusInterrupted}

// PartnerFailure reports whether a round with this status means the partner
// (or Switchyard's way of reading it) is failing: the rounds that count
// against the source in the PartnerDown alert.
func (s Status) PartnerFailure() bool {
	return s != StatusOK && s != StatusInterrupted && s != StatusStoreFailed
}

// Round is what one poll round did: the audit record's content.
type Round struct {
	Source  string
	Started time.Time
	Took    time.Duration
	Status  Status
	// StatusCode is the partner's last HTTP status; 0 without an answer.
	StatusCode int
	// Error says what failed; "" when OK. It never holds the URL (which
	// may carry a key) or a secret.
	Error string
	// Snippet is the start of a failed answer's body.
	Snippet string
	// RetryAfter is what the partner asked for (429, 503).
	RetryAfter time.Duration
	// Pages read, items found, of which New stored, Duplicates already
	// stored before, and Quarantined kept in QUARANTINE for breaking the
	// source's contract (new ones; a quarantined item found again is a
	// duplicate).
	Pages, Items, New, Duplicates, Quarantined int
	// CursorBefore and CursorAfter are where the round started and where
	// the next one starts.
	CursorBefore, CursorAfter string
	// Exhausted is true when the partner had no further page; false when
	// max_pages ended the round, or a failure did.
	Exhausted bool
}

// Config configures a Poller.
type Config struct {
	// Sources are the configured sources; the polled ones (Poll set, with
	// defaults applied and validated) are polled.
	Sources []config.Source
	// LeaseTTL is how long a replica's lease on a source lasts without
	// renewal: how long a source goes unpolled after its replica dies. It
	// is renewed every third of it (ingress.poll_lease_ttl).
	LeaseTTL time.Duration
	// Topology sizes the cursor and lease buckets (nats.replicas).
	Topology topology.Topology
	// Instance names this replica in the leases. Default host/pid/random.
	Instance string
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil for none.
	Registerer prometheus.Registerer
	// OnRound is called after every round (the audit record); nil for
	// nothing.
	OnRound func(context.Context, Round)

	// beforeCursor, in tests, runs after a page's items are stored and
	// before the cursor moves.
	beforeCursor func(source string, page int)
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	c.LeaseTTL = cmp.Or(c.LeaseTTL, config.Defaults().Ingress.PollLeaseTTL.D())
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = host + "/" + strconv.Itoa(os.Getpid()) + "/" + nuid.Next()[:8]
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("poll: Config.Logger is required")
	}
	if c.LeaseTTL < 100*time.Millisecond {
		return fmt.Errorf("poll: Config.LeaseTTL (%s) must be at least 100ms", c.LeaseTTL)
	}
	return c.Topology.Validate()
}

// Poller polls every polled source.
type Poller struct {
	cfg     Config
	js      jetstream.JetStream
	store   Store
	sources []*source
	metrics *metrics

	mu      sync.Mutex
	cursors Cursors
	leases  jetstream.KeyValue
}

// New builds a Poller; Provision declares its buckets, Run polls.
func New(js jetstream.JetStream, store Store, cfg Config) (*Poller, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Poller{cfg: cfg, js: js, store: store}
	var names []string
	for _, sc := range cfg.Sources {
		if sc.Poll == nil {
			continue
		}
		s, err := newSource(sc, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("poll: %w", err)
		}
		p.sources = append(p.sources, s)
		names = append(names, sc.Name)
	}
	p.metrics = newMetrics(cfg.Registerer, names)
	return p, nil
}

// Sources names the polled sources.
func (p *Poller) Sources() []string {
	names := make([]string, len(p.sources))
	for i, s := range p.sources {
		names[i] = s.name
	}
	return names
}

// Provision declares the cursor and lease buckets.
func (p *Poller) Provision(ctx context.Context) error {
	if len(p.sources) == 0 {
		return nil
	}
	var kvs []jetstream.KeyValue
	for _, b := range []topology.Bucket{p.cfg.Topology.PollCursors(), p.cfg.Topology.PollLeases(p.cfg.LeaseTTL)} {
		bc := b.Config
		kv, err := p.js.CreateOrUpdateKeyValue(ctx, bc)
		if err != nil {
			return fmt.Errorf("poll: declare KV bucket %s: %w", bc.Bucket, err)
		}
		kvs = append(kvs, kv)
	}
	p.mu.Lock()
	p.cursors, p.leases = kvCursors{kvs[0]}, kvs[1]
	p.mu.Unlock()
	return nil
}

// Run polls every source until ctx ends, then gives its leases up.
func (p *Poller) Run(ctx context.Context) error {
	if len(p.sources) == 0 {
		return nil
	}
	if err := p.Provision(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range p.sources {
		wg.Go(func() { p.runSource(ctx, s) })
	}
	wg.Wait()
	return nil
}

// runSource takes the source's lease whenever nobody holds it, and polls
// while it holds it.
func (p *Poller) runSource(ctx context.Context, s *source) {
	l := &lease{kv: p.leases, source: s.name, holder: p.cfg.Instance}
	retry := p.cfg.LeaseTTL / 3
	var lastHolder string
	for ctx.Err() == nil {
		ok, holder, err := l.acquire(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "the lease of the polled source cannot be read; trying again", slog.Any("error", err))
		case !ok && holder != lastHolder:
			s.log.InfoContext(ctx, "another replica polls this source", slog.String("holder", holder))
			lastHolder = holder
		}
		if !ok {
			sleep(ctx, retry+jitter(retry/3))
			continue
		}
		lastHolder = ""
		s.log.InfoContext(ctx, "polling the source: this replica holds its lease", slog.String("holder", p.cfg.Instance))
		p.metrics.leaseHeld.WithLabelValues(s.name).Set(1)
		hctx, cancel := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			p.keepLease(hctx, cancel, l, s)
		}()
		p.pollWhileHolding(hctx, s)
		cancel()
		<-renewed
		p.metrics.leaseHeld.WithLabelValues(s.name).Set(0)
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := l.release(rctx); err != nil {
				s.log.Warn("the lease was not given up; another replica takes over when it expires", slog.Any("error", err))
			}
			rcancel()
			return
		}
		s.log.WarnContext(ctx, "lost the lease of the polled source; another replica polls it now")
	}
}

// keepLease renews the lease every third of its TTL, and ends the holding
// (cancel) when it was lost, or could not be renewed for so long that
// another replica may have taken it.
func (p *Poller) keepLease(ctx context.Context, cancel context.CancelFunc, l *lease, s *source) {
	ttl := p.cfg.LeaseTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := l.renew(ctx)
		switch {
		case err == nil:
			last = time.Now()
		case errors.Is(err, ErrConflict):
			cancel()
			return
		case ctx.Err() != nil:
			return
		default:
			s.log.WarnContext(ctx, "the lease could not be renewed", slog.Any("error", err))
			if time.Since(last) > ttl*5/6 {
				cancel()
				return
			}
		}
	}
}

// pollWhileHolding runs rounds until ctx ends: the interval (with jitter)
// after a round that succeeded, a growing backoff (or the partner's
// Retry-After, if longer) after one that failed.
func (p *Poller) pollWhileHolding(ctx context.Context, s *source) {
	p.mu.Lock()
	cursors := p.cursors
	p.mu.Unlock()
	failures := 0
	for ctx.Err() == nil {
		r := s.round(ctx, p.store, cursors, p.cfg.beforeCursor)
		if r.Status == StatusInterrupted && ctx.Err() != nil {
			return
		}
		p.report(ctx, s, r)
		if r.Status != StatusOK {
			failures++
		} else {
			failures = 0
		}
		sleep(ctx, nextWait(r, failures, s.interval, jitter(s.jitter)))
	}
}

// nextWait is the wait after round r, the failures-th failed round in a
// row (0 after a success): the interval and jitter after a success; the
// backoff, or the partner's Retry-After if longer, after a failure.
func nextWait(r Round, failures int, interval, jitter time.Duration) time.Duration {
	if r.Status == StatusOK {
		return interval + jitter
	}
	return max(backoff(interval, failures), r.RetryAfter)
}

// backoff is the wait after n failed rounds in a row: the interval, then
// doubling, up to max(interval, 5m).
func backoff(interval time.Duration, n int) time.Duration {
	limit := max(interval, 5*time.Minute)
	d := interval
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (p *Poller) report(ctx context.Context, s *source, r Round) {
	p.metrics.observe(r)
	attrs := []any{slog.String("status", string(r.Status)), slog.Int("pages", r.Pages), slog.Int("items", r.Items),
		slog.Int("new", r.New), slog.Int("duplicates", r.Duplicates), slog.Int("quarantined", r.Quarantined), slog.Duration("took", r.Took)}
	switch {
	case r.Status == StatusOK:
		s.log.DebugContext(ctx, "poll round", attrs...)
	default:
		attrs = append(attrs, slog.Int("status_code", r.StatusCode), slog.String("error", r.Error))
		s.log.WarnContext(ctx, "poll round failed", attrs...)
	}
	if p.cfg.OnRound != nil {
		p.cfg.OnRound(ctx, r)
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// source is a polled source ready to poll.
type source struct {
	cfg      config.Source
	poll     config.SourcePoll
	name     string
	interval time.Duration
	jitter   time.Duration
	// base is the configured URL without the cursor: a next-page link must
	// stay on its scheme and host.
	base                       *url.URL
	items, id, typ, cursorPath *jsonexpr.Expr
	client                     *outbound.Client
	log                        *slog.Logger
}

func newSource(sc config.Source, log *slog.Logger) (*source, error) {
	pc := *sc.Poll
	s := &source{cfg: sc, poll: pc, name: sc.Name, interval: pc.Interval.D(), jitter: pc.Jitter.D(),
		log: log.With(slog.String("source", sc.Name))}
	base, err := url.Parse(strings.ReplaceAll(pc.URL, "{cursor}", ""))
	if err != nil {
		return nil, fmt.Errorf("source %q: poll.url: %w", sc.Name, err)
	}
	s.base = base
	compile := func(field, src string) (*jsonexpr.Expr, error) {
		if src == "" {
			return nil, nil
		}
		e, err := jsonexpr.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("source %q: poll.%s: %w", sc.Name, field, err)
		}
		return e, nil
	}
	if s.items, err = compile("items", pc.Items); err != nil {
		return nil, err
	}
	if s.id, err = compile("id", pc.ID); err != nil {
		return nil, err
	}
	if s.typ, err = compile("type", pc.Type); err != nil {
		return nil, err
	}
	if s.cursorPath, err = compile("cursor.path", pc.Cursor.Path); err != nil {
		return nil, err
	}
	if s.items == nil || s.id == nil {
		return nil, fmt.Errorf("source %q: poll.items and poll.id are required", sc.Name)
	}
	hc := outbound.NewHTTPClient(outbound.HTTPConfig{Timeout: pc.Timeout.D(), MaxConns: 2, AllowPrivateNetwork: pc.AllowPrivateNetwork})
	s.client = &outbound.Client{
		HTTP:    hc,
		Headers: outbound.RevealHeaders(pc.Headers),
		Auth:    outbound.FromConfig(pc.Auth, hc),
		// Partners answer an expired token with either.
		RenewOn: []int{401, 403},
	}
	return s, nil
}

// DryRun runs one round of the polled source src against its real API as
// the poller would, except that the cursor never moves: cursors gives the
// round's starting cursor (its Put is not called), and store is told each
// item instead of storing it, to say what would be stored.
func DryRun(ctx context.Context, src config.Source, cursors Cursors, store Store, log *slog.Logger) (Round, error) {
	if src.Poll == nil {
		return Round{}, fmt.Errorf("source %q is not polled (it has no poll block)", src.Name)
	}
	s, err := newSource(src, log)
	if err != nil {
		return Round{}, err
	}
	return s.round(ctx, store, &readOnlyCursors{Cursors: cursors}, nil), nil
}

// readOnlyCursors reads the stored cursor and keeps the ones a dry run
// would write to itself.
type readOnlyCursors struct {
	Cursors
	mu   sync.Mutex
	kept map[string]string
}

func (c *readOnlyCursors) Get(ctx context.Context, source string) (string, uint64, error) {
	if c.Cursors == nil {
		return "", 0, nil
	}
	return c.Cursors.Get(ctx, source)
}

func (c *readOnlyCursors) Put(_ context.Context, source, cursor string, rev uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kept == nil {
		c.kept = map[string]string{}
	}
	c.kept[source] = cursor
	return rev + 1, nil
}

// OpenCursors reads the cursors of an existing cursor bucket without
// declaring it; ErrNoCursors when there is none yet.
func OpenCursors(ctx context.Context, js jetstream.JetStream) (Cursors, error) {
	kv, err := js.KeyValue(ctx, topology.PollCursorBucket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoCursors, err)
	}
	return kvCursors{kv}, nil
}

// ErrNoCursors is returned (wrapped) when the cursor bucket cannot be read.
var ErrNoCursors = errors.New("no cursor bucket")
