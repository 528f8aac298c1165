package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

// store is the notifier's view of the state bucket: a local copy kept
// current by a watch (so evaluating every rule reads no KV), and writes that
// are compare-and-set on the key's revision, so that replicas never
// overwrite each other's changes.
type store struct {
	kv jetstream.KeyValue
	m  *metrics

	mu      sync.RWMutex
	entries map[string]entry
}

// entry is one key's latest known value; a deleted key keeps its revision
// with no value.
type entry struct {
	rev    uint64
	series *switchyardv1.Series
	alert  *switchyardv1.Alert
}

func openStore(ctx context.Context, js jetstream.JetStream, bucket jetstream.KeyValueConfig, m *metrics) (*store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("notifier: open KV bucket %s: %w", bucket.Bucket, err)
	}
	return &store{kv: kv, m: m, entries: map[string]entry{}}, nil
}

// watch loads the bucket and keeps the copy current until ctx ends,
// watching again whenever the watch stops (a NATS reconnect or server
// restart can stop it). It returns once the current values are loaded.
func (s *store) watch(ctx context.Context, log *slog.Logger) error {
	err := natsx.WatchKV(ctx, s.kv, natsx.KVWatch{Logger: log, Apply: func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			s.set(e.Key(), e.Revision(), nil)
			return
		}
		msg, err := decode(e.Key(), e.Value())
		if err != nil {
			return // not written by a notifier; nothing reads it
		}
		s.set(e.Key(), e.Revision(), msg)
	}})
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	return nil
}

func decode(key string, data []byte) (proto.Message, error) {
	var msg proto.Message
	switch {
	case strings.HasPrefix(key, series.KeyPrefix):
		msg = &switchyardv1.Series{}
	case strings.HasPrefix(key, alerting.KeyPrefix):
		msg = &switchyardv1.Alert{}
	default:
		return nil, fmt.Errorf("unknown key %q", key)
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// set records a key's value at rev unless a newer one is known: the watch
// and this replica's own writes both feed it, in either order.
func (s *store) set(key string, rev uint64, msg proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.entries[key]; ok && cur.rev >= rev {
		return
	}
	e := entry{rev: rev}
	switch v := msg.(type) {
	case *switchyardv1.Series:
		e.series = v
	case *switchyardv1.Alert:
		e.alert = v
	}
	s.entries[key] = e
}

func (s *store) get(key string) (proto.Message, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.entries[key]
	switch {
	case e.series != nil:
		return e.series, e.rev
	case e.alert != nil:
		return e.alert, e.rev
	}
	return nil, e.rev
}

// alert returns the known state of an alert, or nil. Values in the copy
// are never changed in place: writers change a clone.
func (s *store) alert(fingerprint string) *switchyardv1.Alert {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries[alerting.Key(fingerprint)].alert
}

// snapshot returns every series and alert.
func (s *store) snapshot() ([]*switchyardv1.Series, []*switchyardv1.Alert) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ss []*switchyardv1.Series
	var as []*switchyardv1.Alert
	for _, e := range s.entries {
		if e.series != nil {
			ss = append(ss, e.series)
		}
		if e.alert != nil {
			as = append(as, e.alert)
		}
	}
	return ss, as
}

// fetch reads a key from KV (not the copy) and records it.
func (s *store) fetch(ctx context.Context, key string) (proto.Message, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", key, err)
	}
	msg, err := decode(key, e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	s.set(key, e.Revision(), msg)
	return msg, e.Revision(), nil
}

// maxConflicts bounds the compare-and-set retries of one update.
const maxConflicts = 50

// errTooManyConflicts means other replicas kept changing a key.
var errTooManyConflicts = errors.New("the key kept changing under this update")

// update changes key with mutate, compare-and-set on the revision mutate
// saw. mutate gets a clone of the current value (nil if none) and returns
// the new value (nil deletes the key) and whether to write at all; on a
// conflict it runs again on the fresher value. update returns the value
// written, or the current one if mutate wrote nothing.
func update[T interface {
	*switchyardv1.Series | *switchyardv1.Alert
	proto.Message
}](ctx context.Context, s *store, key string, mutate func(cur T) (T, bool)) (T, bool, error) {
	msg, rev := s.get(key)
	for range maxConflicts {
		var cur T
		if msg != nil {
			cur = proto.Clone(msg).(T)
		}
		next, write := mutate(cur)
		if !write {
			if msg == nil {
				return cur, false, nil
			}
			return msg.(T), false, nil
		}
		var err error
		var newRev uint64
		switch {
		case !next.ProtoReflect().IsValid():
			if msg == nil {
				return next, false, nil
			}
			err = s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		default:
			data, merr := proto.Marshal(next)
			if merr != nil {
				return next, false, merr
			}
			if msg == nil {
				newRev, err = s.kv.Create(ctx, key, data)
			} else {
				newRev, err = s.kv.Update(ctx, key, data, rev)
			}
		}
		if err == nil {
			if next.ProtoReflect().IsValid() {
				s.set(key, newRev, next)
			}
			s.m.stateWrites.WithLabelValues("ok").Inc()
			return next, true, nil
		}
		if !conflict(err) {
			s.m.stateWrites.WithLabelValues("error").Inc()
			return next, false, fmt.Errorf("write %s: %w", key, err)
		}
		s.m.stateWrites.WithLabelValues("conflict").Inc()
		if msg, rev, err = s.fetch(ctx, key); err != nil {
			return next, false, err
		}
	}
	var zero T
	return zero, false, fmt.Errorf("write %s: %w", key, errTooManyConflicts)
}

// conflict reports whether err is a failed compare-and-set.
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
