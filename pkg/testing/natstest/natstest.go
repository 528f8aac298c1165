// Package natstest starts a real, embedded JetStream server for a test:
// random port, store in t.TempDir(), Switchyard's topology declared, shut
// down by t.Cleanup. Tests never mock NATS.
package natstest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
)

// Server is a running test server.
type Server struct {
	// NS is the embedded server.
	NS *server.Server
	// URL is its client URL (nats://127.0.0.1:port).
	URL string
	// StoreDir is its JetStream directory.
	StoreDir string
}

// Start runs an embedded server with Switchyard's streams declared.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, topology.Topology{})
}

// StartWith is Start with a custom topology (a shorter duplicate window,
// say; zero fields take the defaults).
func StartWith(t testing.TB, topo topology.Topology) *Server {
	t.Helper()
	return StartWithServer(t, topo, natsx.EmbeddedConfig{})
}

// StartWithServer is StartWith with server settings (a small max_payload,
// say); StoreDir, Listen and Logger are the test's.
func StartWithServer(t testing.TB, topo topology.Topology, cfg natsx.EmbeddedConfig) *Server {
	t.Helper()
	s := StartBare(t, cfg)
	_, js := s.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.Ensure(ctx, js, topo); err != nil {
		t.Fatalf("declare topology: %v", err)
	}
	return s
}

// StartBare runs an embedded server with nothing declared, for tests of
// the declaring itself.
func StartBare(t testing.TB, cfg natsx.EmbeddedConfig) *Server {
	t.Helper()
	dir := t.TempDir()
	cfg.StoreDir, cfg.Listen = dir, "127.0.0.1:0"
	// The server's own log is noise in a test's output.
	cfg.Logger = slog.New(slog.DiscardHandler)
	ns, err := natsx.StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &Server{NS: ns, URL: ns.ClientURL(), StoreDir: dir}
}

// Connect opens a client connection closed by t.Cleanup.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		// Generous: a loaded CI machine can be slow to accept.
		nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect to test NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	return nc, js
}

// Logger returns a logger that writes to the test log (or nowhere with
// -test.v off, since t.Log output is only shown on failure).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Log(string(p[:len(p)-min(1, len(p))]))
	return len(p), nil
}

var _ io.Writer = testWriter{}
