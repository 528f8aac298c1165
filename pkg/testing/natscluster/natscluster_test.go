package natscluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

func TestClusterSurvivesLosingAndRestartingANode(t *testing.T) {
	c := natscluster.Start(t, natscluster.Options{})
	if urls := strings.Split(c.URLs(), ","); len(urls) != 3 {
		t.Fatalf("URLs() = %q, want three", c.URLs())
	}
	_, js := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// The same Nats-Msg-Id on a retry: a lost PubAck does not
			// store a message twice.
			waitfor.Within(t, time.Minute, fmt.Sprintf("the PubAck of message %d", i), func() bool {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := js.Publish(pctx, "t.x", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
				return err == nil
			})
		}
	}
	publish(0, 100)

	leader := c.WaitStreamLeader(t, js, "T")
	if !slices.Contains([]string{"n1", "n2", "n3"}, leader) {
		t.Fatalf("stream leader %q is not a node of the cluster", leader)
	}
	if cl := c.WaitConsumerLeader(t, js, "T", "d"); !slices.Contains([]string{"n1", "n2", "n3"}, cl) {
		t.Fatalf("consumer leader %q is not a node of the cluster", cl)
	}

	// The leader dies; another node takes over and nothing acknowledged is
	// lost.
	c.Kill(t, leader)
	if slices.Contains(c.Running(), leader) {
		t.Fatalf("%s still runs after Kill", leader)
	}
	next := waitfor.ValueWithin(t, time.Minute, "a new stream leader", func() (string, bool) {
		return leaderOf(js, "T", leader)
	})
	publish(100, 200)
	if n := messages(t, js, "T"); n != 200 {
		t.Fatalf("the stream holds %d messages after the leader was killed, want 200", n)
	}

	// The killed node comes back with its store and catches up.
	c.Restart(t, leader)
	waitfor.Within(t, time.Minute, leader+" current again", func() bool {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "T")
		if err != nil {
			return false
		}
		for _, p := range s.CachedInfo().Cluster.Replicas {
			if p.Name == leader {
				return p.Current && !p.Offline
			}
		}
		return s.CachedInfo().Cluster.Leader == leader
	})

	// A graceful stop of the new leader moves the leadership too.
	c.Stop(t, next)
	waitfor.ValueWithin(t, time.Minute, "a leader other than the stopped node", func() (string, bool) {
		return leaderOf(js, "T", next)
	})
	publish(200, 250)
	if n := messages(t, js, "T"); n != 250 {
		t.Fatalf("the stream holds %d messages, want 250", n)
	}
	if got := c.WaitMetaLeader(t); got == next {
		t.Fatalf("the stopped node %s is still the meta leader", next)
	}
}

// leaderOf returns the stream's leader if it has one other than not. Each
// request has its own short timeout: a JetStream API request sent while a
// stream elects a leader may go unanswered.
func leaderOf(js jetstream.JetStream, stream, not string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := natscluster.StreamLeader(ctx, js, stream)
	return l, err == nil && l != "" && l != not
}

func messages(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	return waitfor.ValueWithin(t, time.Minute, "stream info", func() (uint64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return 0, false
		}
		return s.CachedInfo().State.Msgs, true
	})
}
