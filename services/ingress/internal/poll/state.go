package poll

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict is a compare-and-set that lost: another replica changed the
// cursor or took the lease.
var ErrConflict = errors.New("changed by another replica")

// Cursors reads and writes cursors.
type Cursors interface {
	// Get returns the source's cursor and its revision; 0 and "" when it
	// has none.
	Get(ctx context.Context, source string) (string, uint64, error)
	// Put sets the cursor if its revision is still rev (0: none yet) and
	// returns the new revision; ErrConflict when it changed meanwhile.
	Put(ctx context.Context, source, cursor string, rev uint64) (uint64, error)
}

// kvCursors keeps cursors in CursorBucket.
type kvCursors struct{ kv jetstream.KeyValue }

func (c kvCursors) Get(ctx context.Context, source string) (string, uint64, error) {
	e, err := c.kv.Get(ctx, source)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return "", 0, nil
	case err != nil:
		return "", 0, fmt.Errorf("read the cursor of %s: %w", source, err)
	}
	return string(e.Value()), e.Revision(), nil
}

func (c kvCursors) Put(ctx context.Context, source, cursor string, rev uint64) (uint64, error) {
	var n uint64
	var err error
	if rev == 0 {
		n, err = c.kv.Create(ctx, source, []byte(cursor))
	} else {
		n, err = c.kv.Update(ctx, source, []byte(cursor), rev)
	}
	if err != nil {
		if isConflict(err) {
			return 0, fmt.Errorf("store the cursor of %s: %w", source, ErrConflict)
		}
		return 0, fmt.Errorf("store the cursor of %s: %w", source, err)
	}
	return n, nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// lease is one source's lease in LeaseBucket: the holder writes its name
// with Create (only when nobody holds it) and renews it by compare-and-set
// well within the bucket's TTL; a holder that dies stops renewing, its entry
// expires, and another replica's Create succeeds.
type lease struct {
	kv     jetstream.KeyValue
	source string
	holder string
	rev    uint64
}

// acquire takes the lease if nobody holds it. It reports the holder.
func (l *lease) acquire(ctx context.Context) (bool, string, error) {
	rev, err := l.kv.Create(ctx, l.source, []byte(l.holder))
	if err == nil {
		l.rev = rev
		return true, l.holder, nil
	}
	if !isConflict(err) {
		return false, "", fmt.Errorf("take the lease of %s: %w", l.source, err)
	}
	e, gerr := l.kv.Get(ctx, l.source)
	if gerr != nil {
		return false, "", nil // expired between the two: next try
	}
	return false, string(e.Value()), nil
}

// renew extends the lease; ErrConflict when it was lost.
func (l *lease) renew(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, l.source, []byte(l.holder), l.rev)
	if err != nil {
		if isConflict(err) {
			return fmt.Errorf("renew the lease of %s: %w", l.source, ErrConflict)
		}
		return fmt.Errorf("renew the lease of %s: %w", l.source, err)
	}
	l.rev = rev
	return nil
}

// release gives the lease up so that another replica need not wait for it
// to expire.
func (l *lease) release(ctx context.Context) error {
	return l.kv.Delete(ctx, l.source, jetstream.LastRevision(l.rev))
}
