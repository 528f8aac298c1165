// Package ids makes the deterministic ids of delivery attempts and dead
// letters, and keeps track of the incarnation of the EVENTS stream they
// name.
package ids

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
)

// Attempt and dead-letter ids are made of the EVENTS stream sequence, so
// that the same delivery gives the same id whoever records it (the
// dispatcher, a replica after a crash, the reconciler), and DEAD_LETTERS
// and the audit log drop the second copy. A sequence alone is not unique
// for ever: a deleted and recreated EVENTS numbers from 1 again, and the
// audit log (which keeps the first row of an id) would drop every new
// attempt and dead letter whose id an old one had, and a replay of the new
// dead letter would send the old payload. So the ids name the stream's
// incarnation too: its creation time, which the server keeps with the
// stream (restarts, leader changes and backups do not change it).

// Incarnation is the EVENTS stream this dispatcher works on. The zero
// value is ready; Read fills it.
type Incarnation struct {
	mu      sync.RWMutex
	created time.Time
	token   string
}

// StreamIncarnation is the id token of a stream created at created: its
// creation time in Unix milliseconds, base 36 (8 characters).
func StreamIncarnation(created time.Time) string {
	return strconv.FormatInt(created.UnixMilli(), 36)
}

// StreamRef names a message's stream in ids: EVENTS@<incarnation>.
func StreamRef(incarnation string) string { return natsx.StreamEvents + "@" + incarnation }

// DeadLetterID is the dead letter's id and Nats-Msg-Id:
// EVENTS@<incarnation>:<seq>:<destination>. One per stream message and
// destination, so the dispatcher and the advisory reconciler cannot both
// create one.
func DeadLetterID(incarnation string, seq uint64, destination string) string {
	return fmt.Sprintf("%s:%d:%s", StreamRef(incarnation), seq, destination)
}

// FilteredID is the id of the audit record saying a destination's filter
// left a stream message out: one per message and destination.
func FilteredID(incarnation string, seq uint64, destination string) string {
	return fmt.Sprintf("filtered:%s:%d:%s", StreamRef(incarnation), seq, destination)
}

// AttemptID is the id of the audit record of delivery number attempt of a
// stream message to a destination.
func AttemptID(incarnation string, seq uint64, destination string, attempt int) string {
	return fmt.Sprintf("attempt:%s:%d:%s:%d", StreamRef(incarnation), seq, destination, attempt)
}

// Get returns the incarnation's id token and the stream's creation time.
func (i *Incarnation) Get() (token string, created time.Time) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.token, i.created
}

// Read reads EVENTS' creation time. It reports whether the stream is
// another one than the one read before (it was recreated), which it logs.
func (i *Incarnation) Read(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (changed bool, err error) {
	stream, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return false, fmt.Errorf("open stream %s: %w", natsx.StreamEvents, err)
	}
	created := stream.CachedInfo().Created
	i.mu.Lock()
	defer i.mu.Unlock()
	if created.Equal(i.created) {
		return false, nil
	}
	changed = !i.created.IsZero()
	if changed {
		log.ErrorContext(ctx, "stream EVENTS was recreated: new attempt and dead-letter ids name the new stream",
			slog.Time("was_created", i.created), slog.Time("created", created))
	}
	i.created, i.token = created, StreamIncarnation(created)
	return changed, nil
}

// UnknownEventID stands for the id of the EVENTS message at seq in a dead
// letter the reconciler writes after EVENTS no longer holds the event: the
// advisory names the sequence only. The audit log's attempt records for the
// same stream_seq and destination carry the real id.
func UnknownEventID(seq uint64) string {
	return fmt.Sprintf("unknown:%s:%d", natsx.StreamEvents, seq)
}
