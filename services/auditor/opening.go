package auditor

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// openingStore is the audit store while it is being opened: Postgres is
// connected to and migrated in the background, retried with backoff for as
// long as it takes, so that an auditor (re)started during a database outage
// runs: it reads nothing it cannot write (the writer retries, records wait in
// JetStream), reports its lag, answers the API with 503 and says why, and
// goes on by itself once the database is back. Until then every method
// returns an error wrapping store.ErrNotReady (and store.ErrUnavailable).
type openingStore struct {
	ready chan struct{} // closed once st is set

	mu      sync.Mutex
	st      store.Store
	since   time.Time // when opening started
	lastErr error
	closed  bool

	cancel context.CancelFunc
	done   chan struct{} // closed when the opening goroutine has returned
}

var _ store.Store = (*openingStore)(nil)

// openRetryMax caps the wait between two tries to open the store.
const openRetryMax = 15 * time.Second

// openInBackground starts opening the store with open, retrying until it
// succeeds or Close is called.
func openInBackground(open func(ctx context.Context) (store.Store, error), now func() time.Time, log *slog.Logger) *openingStore {
	ctx, cancel := context.WithCancel(context.Background())
	o := &openingStore{ready: make(chan struct{}), since: now(), cancel: cancel, done: make(chan struct{})}
	go o.run(ctx, open, log)
	return o
}

// opened wraps a store that is open already.
func opened(st store.Store) *openingStore {
	o := &openingStore{ready: make(chan struct{}), st: st, cancel: func() {}, done: make(chan struct{})}
	close(o.ready)
	close(o.done)
	return o
}

func (o *openingStore) run(ctx context.Context, open func(ctx context.Context) (store.Store, error), log *slog.Logger) {
	defer close(o.done)
	wait := 500 * time.Millisecond
	for tries := 1; ; tries++ {
		st, err := open(ctx)
		if err == nil {
			o.mu.Lock()
			if o.closed {
				o.mu.Unlock()
				st.Close()
				return
			}
			o.st = st
			o.mu.Unlock()
			close(o.ready)
			if tries > 1 {
				log.InfoContext(ctx, "audit store open and migrated; writing what waited", slog.Int("tries", tries))
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		o.mu.Lock()
		o.lastErr = err
		o.mu.Unlock()
		log.WarnContext(ctx, "audit store not open yet; records wait in JetStream, retrying",
			slog.Any("error", err), slog.Int("tries", tries), slog.Duration("retry_in", wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(wait*2, openRetryMax)
	}
}

// state is the writer's view: since when the store could not be used (zero
// once it is open) and why.
func (o *openingStore) state() (time.Time, error) {
	if err := o.notReady(); err != nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.since, err
	}
	return time.Time{}, nil
}

// notReady returns nil once the store is open, else why it is not.
func (o *openingStore) notReady() error {
	select {
	case <-o.ready:
		return nil
	default:
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return store.NotReady(o.since, o.lastErr)
}

func (o *openingStore) get() (store.Store, error) {
	if err := o.notReady(); err != nil {
		return nil, err
	}
	return o.st, nil
}

// Close stops opening and closes the store if it was opened.
func (o *openingStore) Close() error {
	o.cancel()
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.st == nil {
		o.closed = true
		return nil
	}
	o.closed = true
	return o.st.Close()
}

// The store.Store methods: the open store's, or the reason it is not open.

func (o *openingStore) Migrate(ctx context.Context) error {
	st, err := o.get()
	if err != nil {
		return err
	}
	return st.Migrate(ctx)
}

func (o *openingStore) Write(ctx context.Context, b store.Batch) error {
	st, err := o.get()
	if err != nil {
		return err
	}
	return st.Write(ctx, b)
}

func (o *openingStore) Park(ctx context.Context, ps []store.Parked) error {
	st, err := o.get()
	if err != nil {
		return err
	}
	return st.Park(ctx, ps)
}

func (o *openingStore) GetEvent(ctx context.Context, id string) (store.EventDetail, error) {
	st, err := o.get()
	if err != nil {
		return store.EventDetail{}, err
	}
	return st.GetEvent(ctx, id)
}

func (o *openingStore) ListEvents(ctx context.Context, f store.EventFilter, p store.Page) ([]store.Event, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListEvents(ctx, f, p)
}

func (o *openingStore) ListDeliveries(ctx context.Context, f store.DeliveryFilter, p store.Page) ([]store.Delivery, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListDeliveries(ctx, f, p)
}

func (o *openingStore) ListDeadLetters(ctx context.Context, f store.DeadLetterFilter, p store.Page) ([]store.DeadLetter, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListDeadLetters(ctx, f, p)
}

func (o *openingStore) GetDeadLetter(ctx context.Context, id string) (store.DeadLetter, error) {
	st, err := o.get()
	if err != nil {
		return store.DeadLetter{}, err
	}
	return st.GetDeadLetter(ctx, id)
}

func (o *openingStore) ListRejections(ctx context.Context, f store.RejectionFilter, p store.Page) ([]store.Rejection, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListRejections(ctx, f, p)
}

func (o *openingStore) ListAlerts(ctx context.Context, f store.AlertFilter, p store.Page) ([]store.Alert, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListAlerts(ctx, f, p)
}

func (o *openingStore) ListRecords(ctx context.Context, f store.RecordFilter, p store.Page) ([]store.Record, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListRecords(ctx, f, p)
}

func (o *openingStore) ListParked(ctx context.Context, p store.Page) ([]store.Parked, string, error) {
	st, err := o.get()
	if err != nil {
		return nil, "", err
	}
	return st.ListParked(ctx, p)
}

func (o *openingStore) Destinations(ctx context.Context) ([]string, error) {
	st, err := o.get()
	if err != nil {
		return nil, err
	}
	return st.Destinations(ctx)
}

func (o *openingStore) DestinationStatus(ctx context.Context, name string, since time.Time) (store.DestinationStatus, error) {
	st, err := o.get()
	if err != nil {
		return store.DestinationStatus{}, err
	}
	return st.DestinationStatus(ctx, name, since)
}

func (o *openingStore) DropPayloads(ctx context.Context, cutoff, now time.Time, limit int) (int, error) {
	st, err := o.get()
	if err != nil {
		return 0, err
	}
	return st.DropPayloads(ctx, cutoff, now, limit)
}

func (o *openingStore) DeleteBefore(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	st, err := o.get()
	if err != nil {
		return 0, err
	}
	return st.DeleteBefore(ctx, cutoff, limit)
}

func (o *openingStore) AttemptsOverTime(ctx context.Context, destination string, since, until time.Time, step time.Duration) ([]store.AttemptBucket, error) {
	st, err := o.get()
	if err != nil {
		return nil, err
	}
	return st.AttemptsOverTime(ctx, destination, since, until, step)
}

func (o *openingStore) Activity(ctx context.Context, since time.Time) (store.Activity, error) {
	st, err := o.get()
	if err != nil {
		return store.Activity{}, err
	}
	return st.Activity(ctx, since)
}
