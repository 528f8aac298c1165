// Package publish stores messages in JetStream so that a lost PubAck
// neither loses nor doubles them: a message whose PubAck did not come is
// sent again under the same Nats-Msg-Id until one does. Every Switchyard
// publish that waits for its PubAck (ingress's events, pkg/events, dead
// letters, replays, audit records) goes through Msg. It depends on
// nats.go only, so that pkg/events stays light.
package publish

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bounds used by Msg.
const (
	// AttemptTimeout bounds waiting for one PubAck before the
	// message is sent again. A stream leader election in a cluster takes a
	// few seconds; a request sent meanwhile may never be answered.
	AttemptTimeout = 2 * time.Second
	// DefaultTimeout bounds the whole publish when ctx has no deadline.
	DefaultTimeout = 10 * time.Second
)

// JetStream's error codes (nats-server's errors.json) that Msg tells apart.
const (
	// errCodeClusterNotAvail is "system temporarily unavailable": the
	// cluster has no meta leader right now.
	errCodeClusterNotAvail jetstream.ErrorCode = 10008
	// errCodeInsufficientResources is the server's store limit
	// (max_file_store, or what it took of the disk at start) reached.
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	// errCodeAccountResourcesExceeded is the account's store limit reached.
	errCodeAccountResourcesExceeded jetstream.ErrorCode = 10002
	// errCodeStoreFailed is the stream refusing to store the message under
	// its own limits (max bytes, messages or message size with discard
	// new).
	errCodeStoreFailed jetstream.ErrorCode = 10077
)

// Msg publishes m to JetStream and waits for its PubAck. When no
// PubAck comes (the attempt timed out, no stream answered while its leader
// changed, the connection was reconnecting, the cluster was briefly
// without a meta leader), the outcome is unknown: the message may have been
// stored. Msg then sends the same message again, with the same
// Nats-Msg-Id, after a short pause, until a PubAck arrives or ctx ends
// (DefaultTimeout when ctx has no deadline). JetStream stores a
// Nats-Msg-Id once within the stream's duplicate window, so nothing is
// stored twice: m must carry one, or it is sent only once.
//
// A PubAck saying duplicate, to a message sent again after an attempt whose
// outcome was unknown, is reported as not a duplicate: that earlier
// attempt most likely stored it. Errors JetStream answers (a wrong
// expected sequence, a message too large, no such stream, no room left:
// NoRoom) are returned at once.
func Msg(ctx context.Context, js jetstream.JetStream, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	resend := m.Header.Get(nats.MsgIdHdr) != ""
	unknown := false
	pause := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
		ack, err := js.PublishMsg(actx, m, opts...)
		cancel()
		if err == nil {
			if unknown && ack.Duplicate {
				ack.Duplicate = false
			}
			return ack, nil
		}
		if !resend || ctx.Err() != nil || !unanswered(err) {
			return nil, err
		}
		unknown = true
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		pause = min(2*pause, time.Second)
	}
}

// unanswered reports whether a publish error leaves the outcome unknown or
// means that no stream took the message yet (so that sending it again is
// the way on), rather than a refusal.
func unanswered(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected):
		return true
	case NoRoom(err):
		// Answered with status 503, but a refusal: the message was not
		// stored, and sending it again at once would only be refused again.
		return false
	case errors.As(err, &apiErr):
		return apiErr.ErrorCode == errCodeClusterNotAvail || apiErr.Code == http.StatusServiceUnavailable
	}
	return false
}

// NoRoom reports whether err is JetStream refusing a message for want of
// room: the server's store limit (max_file_store, or the share of the disk
// it took at start), the account's, or the stream's own limits under
// discard new. The message was not stored; it can be once space returns
// (messages expire or are removed, a limit is raised).
//
// A disk that fills up under the server before its limit is reached is
// another matter: the server does not answer the write it could not make
// (Msg sends it again until ctx ends) and keeps the stream's write error
// until it restarts.
func NoRoom(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeInsufficientResources, errCodeAccountResourcesExceeded, errCodeStoreFailed:
		return true
	}
	return false
}
