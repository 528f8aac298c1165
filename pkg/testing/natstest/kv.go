package natstest

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// ClosableKV is a KV bucket whose watches a test can close, as a NATS
// reconnect or a server restart can: the watcher's updates channel closes.
// Give it to code under test in place of the bucket.
type ClosableKV struct {
	jetstream.KeyValue
	mu       sync.Mutex
	watchers []jetstream.KeyWatcher
	// closed counts the watchers already stopped.
	closed int
}

// WatchAll implements jetstream.KeyValue and keeps the watcher.
func (c *ClosableKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	w, err := c.KeyValue.WatchAll(ctx, opts...)
	if err == nil {
		c.mu.Lock()
		c.watchers = append(c.watchers, w)
		c.mu.Unlock()
	}
	return w, err
}

// CloseWatches stops every watch started since the last call and returns
// how many were started, for Watches to tell when a new one starts.
func (c *ClosableKV) CloseWatches(t testing.TB) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watchers[c.closed:] {
		if err := w.Stop(); err != nil {
			t.Fatalf("stop KV watch: %v", err)
		}
	}
	c.closed = len(c.watchers)
	return len(c.watchers)
}

// Watches is how many watches were started.
func (c *ClosableKV) Watches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watchers)
}
