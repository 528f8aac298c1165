package natsx

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The pause before a stopped KV watch starts again: it doubles from the
// first to the second after each failed start.
const (
	kvWatchFirstWait = 100 * time.Millisecond
	kvWatchMaxWait   = 10 * time.Second
)

// KVWatch says what WatchKV does with a bucket's entries.
type KVWatch struct {
	// Apply receives every entry: the bucket's current values each time a
	// watch starts (a deleted key's marker included, so a key deleted
	// while no watch ran is deleted in the view too), then every change.
	// Calls come from one goroutine, one at a time. Required.
	Apply func(jetstream.KeyValueEntry)
	// Logger hears when a watch stops and starts again; nil logs nothing.
	Logger *slog.Logger
}

// WatchKV keeps a view of the bucket kv current until ctx is done: it
// watches every key and hands each entry to w.Apply. When the watch stops
// (its updates channel closes: a NATS reconnect or server restart can do
// that) it starts a new one, after a pause that grows while starting fails,
// and the new watch delivers the current values again. WatchKV returns once
// the first watch delivered the bucket's current values, or with the error
// of the first attempt to watch, or with ctx's error.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, w KVWatch) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	watcher, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch KV bucket %s: %w", kv.Bucket(), err)
	}
	ready := make(chan struct{})
	var once sync.Once
	loaded := func() { once.Do(func() { close(ready) }) }
	go func() {
		wait := kvWatchFirstWait
		for {
			if followKV(ctx, watcher, w.Apply, loaded) {
				wait = kvWatchFirstWait
			}
			_ = watcher.Stop()
			if ctx.Err() != nil {
				return
			}
			log.WarnContext(ctx, "KV watch stopped; starting it again", slog.String("bucket", kv.Bucket()), slog.Duration("retry_in", wait))
			for {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
				wait = min(wait*2, kvWatchMaxWait)
				if watcher, err = kv.WatchAll(ctx); err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				log.WarnContext(ctx, "KV watch not started; will retry", slog.String("bucket", kv.Bucket()),
					slog.Duration("retry_in", wait), slog.Any("error", err))
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// followKV applies a watcher's entries until its updates close or ctx is
// done, and reports whether it delivered all the current values.
func followKV(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry), loaded func()) bool {
	synced := false
	for {
		select {
		case <-ctx.Done():
			return synced
		case e, ok := <-w.Updates():
			if !ok {
				return synced
			}
			if e == nil { // the end of the current values
				synced = true
				loaded()
				continue
			}
			apply(e)
		}
	}
}
