package svcboot_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/svcboot"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a log destination for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The all-in-one's embedded server, listening on nats.embedded_listen:
// the first start writes a password to data_dir/nats-password (0600) and
// the processes' own connection uses it; a client without it is refused on
// the port, one with it connects; the next start reuses it; the debug log
// never shows it.
func TestEmbeddedNATSRequiresTheGeneratedCredential(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.NATS.EmbeddedListen = freeAddr(t)
	cfg.Log.Level = "debug"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	start := func() *svcboot.Env {
		t.Helper()
		env, err := svcboot.Start(context.Background(), cfg, svcboot.Options{Name: "test", AllowEmbedded: true, LogOutput: &logs})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		return env
	}
	env := start()
	path := svcboot.EmbeddedPasswordFile(cfg)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no password file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %#o, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) < 40 {
		t.Fatalf("password of %d characters, want a long random one", len(pw))
	}

	url := "nats://" + cfg.NATS.EmbeddedListen
	nc, err := nats.Connect(url)
	if err == nil {
		nc.Close()
		t.Fatal("a client without the credential connected to the embedded server")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("error %v, want an authorization violation", err)
	}
	nc, err = nats.Connect(url, nats.UserInfo(natsx.EmbeddedUser, pw))
	if err != nil {
		t.Fatalf("connect with the file's credential: %v", err)
	}
	nc.Close()
	env.Close()

	env = start()
	t.Cleanup(env.Close)
	b2, err := os.ReadFile(path)
	if err != nil || string(b2) != string(b) {
		t.Fatalf("the password file changed on restart (%v)", err)
	}
	nc, err = nats.Connect(url, nats.UserInfo(natsx.EmbeddedUser, pw))
	if err != nil {
		t.Fatalf("connect after a restart: %v", err)
	}
	nc.Close()
	if strings.Contains(logs.String(), pw) {
		t.Error("the log shows the password")
	}
	// The server's advice to hash passwords is not for an in-memory one.
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "Plaintext passwords") {
			t.Errorf("a warning at every start: %s", line)
		}
	}

	// A client such as the CLI reads the same credential.
	a, err := svcboot.EmbeddedAuth(cfg, false)
	if err != nil || a.Password != pw || a.User != natsx.EmbeddedUser {
		t.Errorf("EmbeddedAuth = %q, %v", a.User, err)
	}
}

// nats.password replaces the generated one: nothing is written, and the
// server takes only it.
func TestEmbeddedNATSWithAConfiguredPassword(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.NATS.EmbeddedListen = freeAddr(t)
	cfg.NATS.Password = "operator-chosen-pa55word"
	env, err := svcboot.Start(context.Background(), cfg, svcboot.Options{Name: "test", AllowEmbedded: true, LogOutput: &lockedBuffer{}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(env.Close)
	if _, err := os.Stat(svcboot.EmbeddedPasswordFile(cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a password file was written (%v)", err)
	}
	url := "nats://" + cfg.NATS.EmbeddedListen
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a client without the password connected")
	}
	nc, err := nats.Connect(url, nats.UserInfo(natsx.EmbeddedUser, "operator-chosen-pa55word"))
	if err != nil {
		t.Fatalf("connect with nats.password: %v", err)
	}
	nc.Close()
}

// A CLI run before the first start says where the password comes from.
func TestEmbeddedAuthWithoutThePasswordFile(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	_, err := svcboot.EmbeddedAuth(cfg, false)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "switchyard run") {
		t.Errorf("error = %v, want a missing file and the way to get it", err)
	}
}
