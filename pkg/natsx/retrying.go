package natsx

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RetryingJetStream wraps js so that the JetStream API requests that are
// safe to repeat (looking up, creating-or-updating and updating streams,
// consumers and KV buckets; creating a consumer, which the server answers
// with the existing one when the configuration is the same; account info)
// are asked again when no answer comes. In a cluster, a request sent while
// the meta leader or an asset's leader changes, or while several replicas
// declare the same R3 asset at once, may never be answered; without this a
// service would give up at start. Each attempt has its own timeout; the
// caller's ctx bounds the whole (retryingWait when it has no deadline).
// Answers, errors included, are returned as they come.
func RetryingJetStream(js jetstream.JetStream) jetstream.JetStream {
	if r, ok := js.(retrying); ok {
		return r
	}
	return retrying{js}
}

type retrying struct{ jetstream.JetStream }

// retryingWait bounds a retried request whose ctx has no deadline; the
// attempts take jetstream's default timeout each.
const (
	retryingWait    = 30 * time.Second
	retryingAttempt = 5 * time.Second
)

// again runs request until it is answered (declareWith), within the
// wrapper's bounds.
func again[T any](ctx context.Context, request func(ctx context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, retryingWait)
		defer cancel()
	}
	var out T
	err := declareWith(ctx, retryingAttempt, func(ctx context.Context) error {
		var err error
		out, err = request(ctx)
		return err
	})
	return out, err
}

func (r retrying) AccountInfo(ctx context.Context) (*jetstream.AccountInfo, error) {
	return again(ctx, r.JetStream.AccountInfo)
}

func (r retrying) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.CreateOrUpdateStream(ctx, cfg) })
}

func (r retrying) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.UpdateStream(ctx, cfg) })
}

func (r retrying) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.Stream(ctx, name) })
}

func (r retrying) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return r.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}

func (r retrying) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return r.JetStream.CreateConsumer(ctx, stream, cfg)
	})
}

func (r retrying) UpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return r.JetStream.UpdateConsumer(ctx, stream, cfg)
	})
}

func (r retrying) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	return again(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return r.JetStream.Consumer(ctx, stream, name) })
}

func (r retrying) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retryingKV(again(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return r.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	}))
}

func (r retrying) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retryingKV(again(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return r.JetStream.UpdateKeyValue(ctx, cfg) }))
}

func (r retrying) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return retryingKV(again(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return r.JetStream.KeyValue(ctx, bucket) }))
}

// retryingKV wraps a bucket so that reading one key is asked again when
// no answer comes. A key read is a direct get, answered by any replica of
// the bucket's stream; while a node of the cluster is gone and the
// replicas regroup, it may find no responder at all for a moment (seen in
// the cluster test: a dispatcher starting then exited on "read circuit of
// b: no responders"). The bucket exists (it was just looked up), so no
// responder here means "not yet", not "no JetStream".
func retryingKV(kv jetstream.KeyValue, err error) (jetstream.KeyValue, error) {
	if err != nil || kv == nil {
		return kv, err
	}
	return kvRetrying{kv}, nil
}

type kvRetrying struct{ jetstream.KeyValue }

func (k kvRetrying) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, retryingWait)
		defer cancel()
	}
	var out jetstream.KeyValueEntry
	err := retryWith(ctx, retryingAttempt, true, func(ctx context.Context) error {
		var err error
		out, err = k.KeyValue.Get(ctx, key)
		return err
	})
	return out, err
}

// declareWith runs an idempotent JetStream API request until it is
// answered: again, each attempt with its own timeout, after a timeout or
// while the cluster has no meta leader; any other answer is returned.
func declareWith(ctx context.Context, attempt time.Duration, request func(ctx context.Context) error) error {
	return retryWith(ctx, attempt, false, request)
}

// retryWith is declareWith that, with noResponders, also asks again when
// no server answers the request at all.
func retryWith(ctx context.Context, attempt time.Duration, noResponders bool, request func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := request(actx)
		cancel()
		unanswered := errors.Is(err, context.DeadlineExceeded) || clusterNotAvailable(err) ||
			noResponders && errors.Is(err, nats.ErrNoResponders)
		if err == nil || ctx.Err() != nil || !unanswered {
			return err
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}
