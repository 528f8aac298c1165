package svcboot_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// startWith runs svcboot.Start for a service configured with the NATS URL
// and replicas.
func startWith(t *testing.T, url string, replicas int) (*svcboot.Env, error) {
	t.Helper()
	cfg := config.Config{NATS: config.NATS{URL: url, Replicas: replicas}, DataDir: t.TempDir()}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: "test", LogOutput: io.Discard})
	if err == nil {
		t.Cleanup(env.Close)
	}
	return env, err
}

func readyz(env *svcboot.Env) (int, string) {
	rec := httptest.NewRecorder()
	env.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, rec.Body.String()
}

// nats.replicas larger than the JetStream servers is refused at start,
// naming the field and what was found.
func TestReplicasBeyondTheServersAreRefused(t *testing.T) {
	t.Parallel()
	t.Run("single server", func(t *testing.T) {
		t.Parallel()
		ns := natstest.Start(t)
		_, err := startWith(t, ns.URL, 3)
		if !errors.Is(err, natsx.ErrTooFewServers) {
			t.Fatalf("Start = %v, want ErrTooFewServers", err)
		}
		for _, want := range []string{"nats.replicas is 3", "single server", "found 1 JetStream server"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
	})
	t.Run("two-node cluster", func(t *testing.T) {
		t.Parallel()
		c := natscluster.Start(t, natscluster.Options{Size: 2})
		_, err := startWith(t, c.URLs(), 3)
		if !errors.Is(err, natsx.ErrTooFewServers) {
			t.Fatalf("Start = %v, want ErrTooFewServers", err)
		}
		for _, want := range []string{"nats.replicas is 3", "found 2 JetStream server(s)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
		// What the servers can hold starts.
		if _, err := startWith(t, c.URLs(), 1); err != nil {
			t.Errorf("replicas 1 on two servers: %v", err)
		}
	})
}

// On a 3-node cluster, a service with replicas 3 starts; it is not ready
// while the cluster has no quorum, says why, and is ready again once the
// quorum is back. With one node down it still starts: the streams have
// their three peers.
func TestReadinessFollowsTheClusterQuorum(t *testing.T) {
	t.Parallel()
	c := natscluster.Start(t, natscluster.Options{})
	env, err := startWith(t, c.URLs(), 3)
	if err != nil {
		t.Fatalf("Start on a 3-node cluster: %v", err)
	}
	waitfor.Within(t, time.Minute, "ready on a healthy cluster", func() bool {
		code, _ := readyz(env)
		return code == http.StatusOK
	})

	down := c.Running()[:2]
	for _, n := range down {
		c.Stop(t, n)
	}
	body := waitfor.ValueWithin(t, time.Minute, "not ready without a quorum", func() (string, bool) {
		code, body := readyz(env)
		return body, code == http.StatusServiceUnavailable
	})
	// The reason names JetStream's state: no meta leader, a stream without
	// a leader, or a JetStream request nobody answered.
	if !strings.Contains(body, "NATS: ") || !strings.Contains(body, "JetStream") && !strings.Contains(body, "leader") && !strings.Contains(body, "stream") {
		t.Errorf("/readyz without a quorum says %q; want the JetStream reason", body)
	}
	t.Logf("/readyz without a quorum: %s", strings.TrimSpace(body))
	waitfor.Within(t, time.Minute, "no meta leader reported", func() bool {
		_, body := readyz(env)
		return strings.Contains(body, natsx.ErrNoMetaLeader.Error())
	})

	c.Restart(t, down[0])
	waitfor.Within(t, time.Minute, "ready again with the quorum back", func() bool {
		code, _ := readyz(env)
		return code == http.StatusOK
	})

	// One node of three down: the streams have a quorum, and a service
	// with replicas 3 starts.
	if _, err := startWith(t, c.URLs(), 3); err != nil {
		t.Errorf("Start with one node of three down: %v", err)
	}
}
