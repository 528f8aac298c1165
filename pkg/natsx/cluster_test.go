package natsx_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
)

func TestCheckReplicasOnASingleServer(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	nc := connect(t, ns.ClientURL())
	for _, replicas := range []int{0, 1} {
		if err := natsx.CheckReplicas(testContext(t), nc, replicas); err != nil {
			t.Errorf("CheckReplicas(%d) = %v", replicas, err)
		}
	}
	err := natsx.CheckReplicas(testContext(t), nc, 3)
	var tooFew *natsx.TooFewServersError
	if !errors.Is(err, natsx.ErrTooFewServers) || !errors.As(err, &tooFew) || tooFew.Found != 1 || tooFew.Replicas != 3 {
		t.Fatalf("CheckReplicas(3) = %#v, want a TooFewServersError with 1 found", err)
	}
	if !strings.Contains(err.Error(), "nats.replicas") {
		t.Errorf("the error %q does not name nats.replicas", err)
	}
	// Connect runs the same check.
	_, err = natsx.Connect(testContext(t), ns.ClientURL(), natsx.ConnectOptions{Logger: natstest.Logger(t), Replicas: 3})
	if !errors.Is(err, natsx.ErrTooFewServers) {
		t.Errorf("Connect with replicas 3 = %v, want ErrTooFewServers", err)
	}
}

// A server that cannot place the replicas asked for refuses the stream;
// topology.Ensure's error names nats.replicas.
func TestEnsureTopologyNamesReplicas(t *testing.T) {
	t.Parallel()
	ns := startEmbedded(t)
	nc := connect(t, ns.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	err = topology.Ensure(testContext(t), js, topology.Topology{Replicas: 3})
	if !errors.Is(err, natsx.ErrTooFewServers) || !strings.Contains(err.Error(), "nats.replicas is 3") {
		t.Errorf("topology.Ensure with 3 replicas on one server = %v, want ErrTooFewServers naming nats.replicas", err)
	}
}

func TestJetStreamReadyOnASingleServer(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if err := natsx.JetStreamReady(testContext(t), js, natsx.StreamEvents, natsx.StreamAudit); err != nil {
		t.Errorf("JetStreamReady = %v", err)
	}
	if err := natsx.JetStreamReady(testContext(t), js, "NOPE"); !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("JetStreamReady with a missing stream = %v, want it named and ErrStreamNotFound", err)
	}
}

// unanswered is a real JetStream whose first lookups get no answer, as
// happens in a cluster while leaders change.
type unanswered struct {
	jetstream.JetStream
	calls, lost int
}

func (u *unanswered) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	u.calls++
	if u.calls <= u.lost {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return u.JetStream.Stream(ctx, name)
}

func TestRetryingJetStreamAsksAgain(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	u := &unanswered{JetStream: js, lost: 1}
	r := natsx.RetryingJetStream(u)
	if natsx.RetryingJetStream(r) != r {
		t.Error("wrapping twice wraps twice")
	}
	ctx, cancel := context.WithTimeout(testContext(t), 20*time.Second)
	defer cancel()
	if _, err := r.Stream(ctx, natsx.StreamEvents); err != nil || u.calls != 2 {
		t.Errorf("Stream = %v after %d requests, want the second answer", err, u.calls)
	}
	// An answer, even an error, is not asked again.
	u.calls, u.lost = 0, 0
	if _, err := r.Stream(ctx, "NOPE"); !errors.Is(err, jetstream.ErrStreamNotFound) || u.calls != 1 {
		t.Errorf("Stream(NOPE) = %v after %d requests, want ErrStreamNotFound at once", err, u.calls)
	}
}
