package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamEvents      = "EVENTS"
	StreamDeadLetters = "DEAD_LETTERS"
	StreamAudit       = "AUDIT"
	StreamAdvisories  = "ADVISORIES"
)

// Durable consumers that the topology itself declares. AUDIT has interest
// retention, so the consumers that hold the interest must exist before
// anything is published, whichever service starts first.
const (
	ConsumerAuditor       = "auditor"
	ConsumerAuditorEvents = "auditor-events"
	ConsumerNotifier      = "notifier"
	// ConsumerAuditorDeadLetters records every dead letter in the audit log
	// from DEAD_LETTERS itself, so that a lost AUDIT copy of a dead letter
	// cannot leave it out. Declared here so that it exists before the first
	// dead letter is stored.
	ConsumerAuditorDeadLetters = "auditor-dead-letters"
)

// Topology sizes the streams.
type Topology struct {
	// Replicas for every stream. Default 1.
	Replicas int
	// EventsMaxAge is how long EVENTS keeps events. Default 7 days.
	EventsMaxAge time.Duration
	// DuplicateWindow is EVENTS' Nats-Msg-Id dedup window. Default 2m.
	DuplicateWindow time.Duration
	// Storage is file (default) or memory; tests may use memory.
	Storage jetstream.StorageType
}

// WithDefaults fills unset fields.
func (t Topology) WithDefaults() Topology {
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.EventsMaxAge == 0 {
		t.EventsMaxAge = 7 * 24 * time.Hour
	}
	if t.DuplicateWindow == 0 {
		t.DuplicateWindow = 2 * time.Minute
	}
	return t
}

// StreamConfigs returns the declared streams.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	t = t.WithDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "Integration events: events.> from our services, webhooks.> from partners, replay.<destination>.> for dead-letter replays",
			Subjects:    []string{"events.>", "webhooks.>", "replay.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      t.EventsMaxAge,
			Duplicates:  t.DuplicateWindow,
			Storage:     t.Storage,
			Replicas:    t.Replicas,
			AllowDirect: true,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamDeadLetters,
			Description: "Deliveries Switchyard gave up on, with payload, on dlq.<destination>",
			Subjects:    []string{"dlq.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      30 * 24 * time.Hour,
			// Long enough that the advisory reconciler, which may see a
			// MAX_DELIVERIES advisory after the last backoff step, does not
			// write a second dead letter for one the dispatcher wrote.
			Duplicates:  2 * time.Hour,
			Storage:     t.Storage,
			Replicas:    t.Replicas,
			AllowDirect: true,
		},
		{
			Name:        StreamAudit,
			Description: "Audit records: one per thing that happened; removed once the auditor and the notifier have both acked",
			Subjects:    []string{"audit.>"},
			Retention:   jetstream.InterestPolicy,
			// A safety bound: records wait here while Postgres is down, for a
			// week at most.
			MaxAge:     7 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
			Storage:    t.Storage,
			Replicas:   t.Replicas,
		},
		{
			Name:        StreamAdvisories,
			Description: "JetStream advisories about EVENTS consumers: max deliveries reached, message terminated",
			Subjects: []string{
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamEvents + ".*",
				"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + StreamEvents + ".*",
			},
			Retention: jetstream.LimitsPolicy,
			MaxAge:    7 * 24 * time.Hour,
			Storage:   t.Storage,
			Replicas:  t.Replicas,
		},
	}
}

// ConsumerConfigs returns the durable consumers the topology declares.
func (t Topology) ConsumerConfigs() map[string][]jetstream.ConsumerConfig {
	return map[string][]jetstream.ConsumerConfig{
		StreamAudit: {
			{
				Durable:       ConsumerAuditor,
				Description:   "auditor: writes every audit record to the audit store",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Minute,
				MaxDeliver:    -1,
				MaxAckPending: 20000,
			},
			{
				Durable:       ConsumerNotifier,
				Description:   "notifier: evaluates alert rules over the audit records",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Minute,
				MaxDeliver:    -1,
				MaxAckPending: 20000,
			},
		},
		StreamEvents: {
			{
				Durable:       ConsumerAuditorEvents,
				Description:   "auditor: records every stored event in the audit store",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Minute,
				MaxDeliver:    -1,
				MaxAckPending: 20000,
				// Replays are copies of events already recorded.
				FilterSubjects: []string{"events.>", "webhooks.>"},
			},
		},
		StreamDeadLetters: {
			{
				Durable:       ConsumerAuditorDeadLetters,
				Description:   "auditor: records every dead letter in the audit store (the AUDIT copy may be lost)",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Minute,
				MaxDeliver:    -1,
				MaxAckPending: 1000,
				// Dead letters stored before the consumer existed are
				// recorded too: the rows are keyed by the dead letter id.
				DeliverPolicy: jetstream.DeliverAllPolicy,
			},
		},
	}
}

// EnsureTopology creates or updates the streams and the topology's durable
// consumers. It is idempotent: every service calls it at start.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, cfg := range t.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	for stream, consumers := range t.ConsumerConfigs() {
		for _, cfg := range consumers {
			if _, err := js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
				return fmt.Errorf("create or update consumer %s on %s: %w", cfg.Durable, stream, err)
			}
		}
	}
	return nil
}

// IsNotFound reports whether err means a stream, consumer or message does
// not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrMsgNotFound)
}
