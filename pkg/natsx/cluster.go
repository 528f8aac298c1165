package natsx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream API error codes Switchyard tells apart (nats-server's
// errors.json); jetstream names only some of them.
const (
	// errCodeClusterNotAvail: "JetStream system temporarily unavailable",
	// the answer while the cluster has no meta leader.
	errCodeClusterNotAvail jetstream.ErrorCode = 10008
	// errCodeInsufficientResources: no placement for that many replicas.
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	// errCodeReplicasNotSupported: replicas > 1 on a server that is not
	// clustered.
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
)

// ErrTooFewServers means nats.replicas asks for more replicas than there
// are JetStream servers to hold them. The error is a *TooFewServersError.
var ErrTooFewServers = errors.New("too few JetStream servers for nats.replicas")

// TooFewServersError says how many replicas were asked for and how many
// JetStream servers were found.
type TooFewServersError struct {
	// Replicas is nats.replicas.
	Replicas int
	// Found is the number of JetStream servers that answered (1 for a
	// server that is not in a cluster).
	Found int
	// Cluster is the cluster's name; empty for a single server.
	Cluster string
}

func (e *TooFewServersError) Error() string {
	if e.Cluster == "" {
		return fmt.Sprintf("nats.replicas is %d, but the NATS server is a single server, not a cluster (found 1 JetStream server): set nats.replicas: 1, or list the servers of a cluster of at least %d in nats.url",
			e.Replicas, e.Replicas)
	}
	return fmt.Sprintf("nats.replicas is %d, but found %d JetStream server(s) in NATS cluster %q: start the missing servers (a cluster of at least %d), or set nats.replicas to at most %d",
		e.Replicas, e.Found, e.Cluster, e.Replicas, max(1, e.Found))
}

// Is makes errors.Is(err, ErrTooFewServers) true.
func (e *TooFewServersError) Is(target error) bool { return target == ErrTooFewServers }

// CheckReplicas refuses replicas (nats.replicas) larger than the number of
// JetStream servers: a server outside a cluster holds one replica only; in
// a cluster, every JetStream server answering the account statistics
// request ($SYS.REQ.ACCOUNT.PING.STATZ) counts. A cluster that answers
// with fewer servers passes when EVENTS already has that many peers (some
// servers are down for now; the streams keep working with a quorum). A
// server that does not answer that request at all (system account
// disabled) is not refused here: the stream declaration fails instead,
// with an error naming nats.replicas too (ReplicasError).
func CheckReplicas(ctx context.Context, nc *nats.Conn, replicas int) error {
	if replicas <= 1 {
		return nil
	}
	cluster := nc.ConnectedClusterName()
	if cluster == "" {
		return &TooFewServersError{Replicas: replicas, Found: 1}
	}
	found, ok := countJetStreamServers(ctx, nc, replicas)
	if !ok || found >= replicas {
		return nil
	}
	if peers := streamPeers(ctx, nc, StreamEvents); peers >= replicas {
		return nil
	}
	return &TooFewServersError{Replicas: replicas, Found: found, Cluster: cluster}
}

// statzWait bounds collecting the servers' answers to one statistics
// request; it returns sooner once enough have answered. statzRounds
// requests are made before fewer servers than enough are believed: a
// loaded server can answer late.
const (
	statzWait   = time.Second
	statzRounds = 3
)

// countJetStreamServers asks every server of the cluster for the
// account's statistics and counts the JetStream servers that answer,
// stopping early at enough. ok is false when none answered.
func countJetStreamServers(ctx context.Context, nc *nats.Conn, enough int) (n int, ok bool) {
	seen := map[string]bool{}
	for range statzRounds {
		if countRound(ctx, nc, enough, seen, &ok); len(seen) >= enough || ctx.Err() != nil {
			break
		}
	}
	return len(seen), ok
}

// countRound makes one statistics request and adds the JetStream servers
// that answer within statzWait to seen; ok is set when any server answers.
func countRound(ctx context.Context, nc *nats.Conn, enough int, seen map[string]bool, ok *bool) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SYS.REQ.ACCOUNT.PING.STATZ", inbox, []byte(`{"include_unused":true}`)); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, statzWait)
	defer cancel()
	for len(seen) < enough {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return
		}
		var resp struct {
			Server *struct {
				Name      string `json:"name"`
				JetStream bool   `json:"jetstream"`
			} `json:"server"`
		}
		if json.Unmarshal(m.Data, &resp) != nil || resp.Server == nil {
			continue
		}
		*ok = true
		if resp.Server.JetStream {
			seen[resp.Server.Name] = true
		}
	}
}

// streamPeers is the number of servers a stream is placed on (0 when it
// does not exist or does not answer).
func streamPeers(ctx context.Context, nc *nats.Conn, stream string) int {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	ci := s.CachedInfo().Cluster
	if ci == nil {
		return 1
	}
	return 1 + len(ci.Replicas)
}

// ReplicasError explains an error declaring a stream or bucket that the
// servers cannot place with the replicas asked for, naming nats.replicas
// (wrapping ErrTooFewServers); other errors come back as they are.
func ReplicasError(err error, replicas int) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeInsufficientResources || apiErr.ErrorCode == errCodeReplicasNotSupported) {
		return fmt.Errorf("%w: nats.replicas is %d, more than the JetStream servers can hold (%v): set nats.replicas to the number of servers in the cluster or fewer",
			ErrTooFewServers, replicas, err)
	}
	return err
}

// ErrNoMetaLeader means the JetStream cluster has no meta leader: fewer
// than half of its servers reach each other, so no stream or consumer can
// be created and the cluster is read-only at best.
var ErrNoMetaLeader = errors.New("JetStream: no meta leader (the cluster has lost its quorum)")

// ErrNoStreamLeader means a stream has no leader right now (an election,
// or too few of its replicas are up): nothing can be stored in it.
var ErrNoStreamLeader = errors.New("no stream leader")

// JetStreamReady returns nil when JetStream answers and each of streams
// has a leader, or why not: ErrNoMetaLeader, ErrNoStreamLeader (wrapped
// with the stream's name), or the request's error. It is a readiness
// check: a process that cannot store or read events should not take
// traffic. Each request is bounded by ctx.
func JetStreamReady(ctx context.Context, js jetstream.JetStream, streams ...string) error {
	if _, err := js.AccountInfo(ctx); err != nil {
		if clusterNotAvailable(err) {
			return ErrNoMetaLeader
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("JetStream did not answer (a cluster without a quorum, or electing its meta leader): %w", err)
		}
		return fmt.Errorf("JetStream: %w", err)
	}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if clusterNotAvailable(err) {
			return ErrNoMetaLeader
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("stream %s did not answer (electing its leader, or too few of its servers up): %w", name, err)
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if ci := s.CachedInfo().Cluster; ci != nil && ci.Leader == "" {
			return fmt.Errorf("stream %s: %w", name, ErrNoStreamLeader)
		}
	}
	return nil
}

// clusterNotAvailable reports whether err is JetStream's "system
// temporarily unavailable": the cluster has no meta leader.
func clusterNotAvailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNotAvail
}
