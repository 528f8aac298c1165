package natsx_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
)

// debianNATS is the distribution's nats-server (2.9), always running on
// development machines and in CI, as an example of a server too old for
// Switchyard.
const debianNATS = "127.0.0.1:4222"

const startDebianNATS = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- " +
	"-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"

// testContext is the test's context (testctx.New).
var testContext = testctx.New

// startEmbedded starts natsx's embedded server on a random port.
func startEmbedded(t *testing.T) *server.Server {
	t.Helper()
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{
		StoreDir: t.TempDir(),
		Listen:   "127.0.0.1:0",
		Logger:   natstest.Logger(t),
	})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := natsx.Connect(testContext(t), url, natsx.ConnectOptions{Name: t.Name(), Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatalf("Connect(%s): %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestConnectRefusesOldServer(t *testing.T) {
	t.Parallel()
	conn, err := net.DialTimeout("tcp", debianNATS, 5*time.Second)
	if err != nil {
		t.Fatalf("the Debian nats-server is not reachable at %s (%v); start it with:\n  %s", debianNATS, err, startDebianNATS)
	}
	conn.Close()

	for _, url := range []string{"nats://" + debianNATS, "nats://switchyard:hunter2@" + debianNATS} {
		nc, err := natsx.Connect(testContext(t), url, natsx.ConnectOptions{Name: t.Name(), Logger: natstest.Logger(t)})
		if err == nil {
			nc.Close()
			t.Fatalf("Connect(%s) accepted the server (version %s)", url, nc.ConnectedServerVersion())
		}
		if !errors.Is(err, natsx.ErrServerTooOld) {
			t.Fatalf("Connect(%s) error = %v, want ErrServerTooOld", url, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, natsx.MinServerVersion) || !strings.Contains(msg, "2.11.0") {
			t.Errorf("error does not name the minimum version 2.11.0: %v", err)
		}
		if !strings.Contains(msg, "server is 2.9.") {
			t.Errorf("error does not name the server's version: %v", err)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("error reveals the password: %v", err)
		}
	}
}

func TestConnectEmbedded(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	nc := connect(t, ns.ClientURL())
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	if err := natsx.CheckServer(testContext(t), nc); err != nil {
		t.Errorf("CheckServer: %v", err)
	}
	if !strings.HasPrefix(ns.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(ns.ClientURL(), ":0") {
		t.Errorf("ClientURL = %q, want a random port on 127.0.0.1", ns.ClientURL())
	}
}

func TestConnectWithoutJetStream(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	_, err = natsx.Connect(testContext(t), ns.ClientURL(), natsx.ConnectOptions{Logger: natstest.Logger(t)})
	if !errors.Is(err, natsx.ErrNoJetStream) {
		t.Fatalf("Connect error = %v, want ErrNoJetStream", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = natsx.Connect(testContext(t), "nats://u:hunter2@"+addr, natsx.ConnectOptions{Logger: natstest.Logger(t)})
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if errors.Is(err, natsx.ErrServerTooOld) || errors.Is(err, natsx.ErrNoJetStream) {
		t.Errorf("error = %v, want a connection error", err)
	}
	// What the error says is under test: the URL without its password.
	if !strings.Contains(err.Error(), "[redacted]@"+addr) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error = %v, want the redacted URL", err)
	}
}

func TestStartEmbeddedErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []natsx.EmbeddedConfig{
		{StoreDir: "", Listen: "127.0.0.1:0"},
		{StoreDir: t.TempDir(), Listen: "localhost"},
		{StoreDir: t.TempDir(), Listen: "127.0.0.1:port"},
		{StoreDir: t.TempDir(), Listen: "127.0.0.1:70000"},
	} {
		cfg.Logger = natstest.Logger(t)
		if ns, err := natsx.StartEmbedded(cfg); err == nil {
			ns.Shutdown()
			t.Errorf("StartEmbedded(%+v) succeeded", cfg)
		}
	}
}

// TestEmbeddedInProcess: with no Listen the server has no TCP listener and
// services connect in process.
func TestEmbeddedInProcess(t *testing.T) {
	t.Parallel()
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if addr := ns.Addr(); addr != nil {
		t.Errorf("embedded server listens on %v, want no listener", addr)
	}
	nc, err := natsx.ConnectEmbedded(ns, natsx.ConnectOptions{Name: "in-process", Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatalf("ConnectEmbedded: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := natsx.CheckServer(testContext(t), nc); err != nil {
		t.Errorf("CheckServer: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(testContext(t), js, topology.Topology{}); err != nil {
		t.Fatalf("declare the topology in process: %v", err)
	}
}

func TestIsNotFound(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	nc := connect(t, ns.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if err := topology.Ensure(ctx, js, topology.Topology{Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	_, errStream := js.Stream(ctx, "NO_SUCH_STREAM")
	_, errConsumer := js.Consumer(ctx, natsx.StreamEvents, "no-such-consumer")
	s, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	_, errMsg := s.GetMsg(ctx, 12345)
	for name, err := range map[string]error{"stream": errStream, "consumer": errConsumer, "message": errMsg} {
		if !natsx.IsNotFound(err) {
			t.Errorf("IsNotFound(%s: %v) = false", name, err)
		}
		if !natsx.IsNotFound(errors.Join(errors.New("context"), err)) {
			t.Errorf("IsNotFound(wrapped %s error) = false", name)
		}
	}
	for _, err := range []error{nil, context.DeadlineExceeded, nats.ErrConnectionClosed, jetstream.ErrStreamNameAlreadyInUse} {
		if natsx.IsNotFound(err) {
			t.Errorf("IsNotFound(%v) = true", err)
		}
	}
}

func TestDrainAndClose(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	sub := connect(t, ns.ClientURL())
	var got atomic.Int64
	if _, err := sub.Subscribe("drain.test", func(*nats.Msg) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}

	nc := connect(t, ns.ClientURL())
	const n = 1000
	for range n {
		if err := nc.Publish("drain.test", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// No Flush: draining sends what is still buffered.
	natsx.DrainAndClose(nc, 10*time.Second)
	if !nc.IsClosed() {
		t.Fatal("connection not closed after DrainAndClose")
	}
	waitfor.True(t, "every buffered message delivered", func() bool { return got.Load() == n })

	// Closing a closed connection is a no-op.
	natsx.DrainAndClose(nc, time.Second)
}

func TestDrainAndCloseStopsSubscriptions(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	nc := connect(t, ns.ClientURL())
	s, err := nc.SubscribeSync("drain.sub")
	if err != nil {
		t.Fatal(err)
	}
	natsx.DrainAndClose(nc, 10*time.Second)
	if !nc.IsClosed() || s.IsValid() {
		t.Errorf("after DrainAndClose: closed %v, subscription valid %v", nc.IsClosed(), s.IsValid())
	}
}
