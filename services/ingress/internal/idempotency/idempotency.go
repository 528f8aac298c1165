// Package idempotency remembers event ids beyond the JetStream duplicate
// window, so that a webhook redelivered days later is answered 2xx and
// stored once.
//
// A record is a message in a KV bucket whose MaxAge is the horizon: its key
// is a hash of the event id, its value the subject the event was stored
// on. The record is written after the event's PubAck, never before, so that
// no crash can leave a record for an event that was not stored (which would
// turn the partner's retry into a loss); a crash between the two can only
// let a much later redelivery be stored a second time.
// docs/decisions/0015-idempotency-kv-bucket-with-ttl.md has the
// measurements behind the choice of a KV bucket.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Key is the record key for an event id: the ids are the partners' text
// and KV keys allow only [-/_=.a-zA-Z0-9], so the key is a hash, 144 bits
// in URL-safe base64 (24 characters).
func Key(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

// BodyID is the record id of a body a source sent, for the sources whose
// scheme does not sign the delivery id: a captured request sent again under
// a new id has the same BodyID. It starts with a NUL byte, which no event id
// holds (they are printable text or hashed), so the two kinds of record
// never collide.
func BodyID(source string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	return "\x00body\x00" + source + "\x00" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// ErrNoBucket is returned (wrapped) when the bucket does not exist and
// could not be created.
var ErrNoBucket = errors.New("idempotency bucket unavailable")

// Store reads and writes idempotency records.
type Store struct {
	js  jetstream.JetStream
	cfg jetstream.KeyValueConfig
	// prefix is the records' subject prefix, get the direct-get subject
	// prefix for them.
	prefix, get string
	ready       atomic.Bool
}

// New returns a Store of the bucket bucket declares
// (topology.Idempotency: its TTL is the horizon). Ensure creates the
// bucket; until then Lookup reports ErrNoBucket.
func New(js jetstream.JetStream, bucket jetstream.KeyValueConfig) (*Store, error) {
	if bucket.Bucket == "" {
		return nil, errors.New("idempotency: the bucket has no name")
	}
	if bucket.TTL <= 0 {
		return nil, errors.New("idempotency: the bucket's TTL (the idempotency horizon) must be positive")
	}
	cfg := bucket
	prefix := "$KV." + cfg.Bucket + "."
	return &Store{js: js, cfg: cfg, prefix: prefix, get: "$JS.API.DIRECT.GET.KV_" + cfg.Bucket + "." + prefix}, nil
}

// Ensure creates the bucket, or updates its horizon and replicas.
func (s *Store) Ensure(ctx context.Context) error {
	_, err := s.js.CreateOrUpdateKeyValue(ctx, s.cfg)
	if err != nil {
		return fmt.Errorf("%w: create or update KV bucket %s: %w", ErrNoBucket, s.cfg.Bucket, err)
	}
	s.ready.Store(true)
	return nil
}

// Open makes Lookup read an existing bucket without declaring it (a tool
// that must change nothing); ErrNoBucket when there is none.
func (s *Store) Open(ctx context.Context) error {
	if _, err := s.js.KeyValue(ctx, s.cfg.Bucket); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoBucket, s.cfg.Bucket, err)
	}
	s.ready.Store(true)
	return nil
}

// Lookup returns the subject recorded for eventID and whether there is a
// record. It is on every request's path, so it asks the bucket's stream
// directly (a direct get of the key's last message) rather than through
// the KV client, which would validate and parse more than a yes or no
// needs.
func (s *Store) Lookup(ctx context.Context, eventID string) (subject string, found bool, err error) {
	if !s.ready.Load() {
		return "", false, fmt.Errorf("%w: not declared (Ensure)", ErrNoBucket)
	}
	m, err := s.js.Conn().RequestWithContext(ctx, s.get+Key(eventID), nil)
	if err != nil {
		return "", false, fmt.Errorf("look up idempotency record: %w", err)
	}
	if len(m.Data) == 0 {
		switch status := m.Header.Get("Status"); status {
		case "404":
			return "", false, nil
		case "":
		default:
			return "", false, fmt.Errorf("look up idempotency record: status %s %s", status, m.Header.Get("Description"))
		}
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return "", false, nil
	}
	return string(m.Data), true, nil
}

// Msg is the record for an event stored on subject, to publish once the
// event's PubAck has arrived (js.PublishMsgAsync or PublishMsg).
func (s *Store) Msg(eventID, subject string) *nats.Msg {
	return &nats.Msg{Subject: s.prefix + Key(eventID), Data: []byte(subject)}
}

// Bucket is the KV bucket's name.
func (s *Store) Bucket() string { return s.cfg.Bucket }
