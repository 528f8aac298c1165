package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchyard/switchyard/pkg/topology"
)

// LimitedServer is a test server whose JetStream file store holds at most
// a given number of bytes (the server's max_file_store): a store that
// fills up, as on a disk close to full, without filling a disk.
type LimitedServer struct {
	*Server
	opts *server.Options
}

// StartWithStoreLimit runs an embedded server whose file store takes at
// most maxStore bytes, with Switchyard's streams declared. Past the limit
// JetStream refuses to store ("insufficient resources").
func StartWithStoreLimit(t testing.TB, maxStore int64) *LimitedServer {
	t.Helper()
	dir := t.TempDir()
	opts := &server.Options{
		ServerName: "switchyard-limited", JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		Host: "127.0.0.1", Port: server.RANDOM_PORT, MaxPayload: 8 << 20,
		JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: maxStore,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		t.Fatal("embedded NATS did not become ready within 30s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	s := &LimitedServer{Server: &Server{NS: ns, URL: ns.ClientURL(), StoreDir: dir}, opts: opts}
	_, js := s.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.Ensure(ctx, js, topology.Topology{}); err != nil {
		t.Fatalf("declare topology: %v", err)
	}
	return s
}

// RaiseStoreLimit gives the store room again: the server reloads with a
// larger max_file_store (it can be raised at run time, not lowered).
func (s *LimitedServer) RaiseStoreLimit(t testing.TB, maxStore int64) {
	t.Helper()
	opts := s.opts.Clone()
	opts.JetStreamMaxStore = maxStore
	if err := s.NS.ReloadOptions(opts); err != nil {
		t.Fatalf("raise max_file_store to %d: %v", maxStore, err)
	}
	s.opts = opts
}
