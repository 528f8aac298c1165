package cli_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// A CLI command that talks to NATS reaches a running all-in-one's embedded
// server on nats.embedded_listen with the password that server generated
// in data_dir; with another data_dir (no password) it is told where the
// password comes from.
func TestCLIUsesTheEmbeddedServersPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	dataDir := t.TempDir()
	cfg := config.Defaults()
	cfg.DataDir, cfg.NATS.EmbeddedListen = dataDir, listen
	env, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: "test", AllowEmbedded: true, LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)

	prune := func(dir string) (string, error) {
		file := filepath.Join(t.TempDir(), "switchyard.yaml")
		yaml := "data_dir: " + dir + "\nnats:\n  embedded_listen: " + listen + "\n"
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := cli.Execute(ctx, []string{"destinations", "prune", "--config", file}, &out, &out)
		return out.String(), err
	}
	if out, err := prune(dataDir); err != nil {
		t.Fatalf("prune against the embedded server: %v\n%s", err, out)
	}
	_, err = prune(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "nats-password") || !strings.Contains(err.Error(), "switchyard run") {
		t.Errorf("prune with another data_dir: %v, want the missing password file named", err)
	}
}

// The CLI authenticates to an external server with the nats section's
// token; without it the server refuses, and the error does not show it.
func TestCLIUsesTheExternalServersToken(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const token = "cli-t0ken-value-xyz"
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Authorization: token})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	nc, err := natsx.Connect(ctx, ns.ClientURL(), natsx.ConnectOptions{Logger: natstest.Logger(t), Auth: natsx.Auth{Token: token}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(ctx, js, topology.Topology{}); err != nil {
		t.Fatal(err)
	}
	prune := func(extra string) (string, error) {
		file := filepath.Join(t.TempDir(), "switchyard.yaml")
		if err := os.WriteFile(file, []byte("nats:\n  url: "+ns.ClientURL()+"\n"+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := cli.Execute(ctx, []string{"destinations", "prune", "--config", file}, &out, &out)
		return out.String(), err
	}
	if _, err := prune(""); err == nil {
		t.Error("prune without the token succeeded")
	}
	if out, err := prune("  token: " + token + "\n"); err != nil {
		t.Fatalf("prune with the token: %v\n%s", err, out)
	}
	out, err := prune("  token: wrong-" + token + "\n")
	if err == nil {
		t.Fatal("prune with a wrong token succeeded")
	}
	if strings.Contains(err.Error()+out, "t0ken-value") {
		t.Errorf("the error shows the token: %v\n%s", err, out)
	}
}
