// Package topology declares every JetStream stream, durable consumer and KV
// bucket Switchyard creates, and holds the one rule for their replicas,
// limits and retention. The services create what it declares and nothing
// else; `switchyard topology` prints it for a configuration without
// connecting.
//
// The rule:
//   - Every stream and every KV bucket has Topology.Replicas replicas
//     (nats.replicas) and Topology.Storage storage (file; tests may use
//     memory). Consumers set no replica count: they follow their stream's.
//   - EVENTS keeps events for nats.events_max_age and deduplicates publishes
//     within nats.duplicate_window; the other limits and retentions are
//     fixed here, each with the reason it has the value it has.
//   - No stream has a byte or message limit: JetStream's disk is sized for
//     rate × retention (README, "Streams and retention").
//
// Who creates what: every service declares the shared streams and their
// consumers at start (Ensure), and the consumers of the configured
// destinations that are missing (pkg/destinations); ingress its
// idempotency bucket and the QUARANTINE stream; the dispatcher the
// destination consumers (updated in place), the circuit breaker bucket and
// the advisory reconciler's consumer; the notifier its state bucket, the NOTIFICATIONS stream and its
// senders' consumers; the notifier and the auditor the silences bucket.
//
// The names of the four shared streams and their consumers are natsx's
// (every package addresses them); the names of the rest are declared here.
package topology

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/redelivery"
)

// Names of the streams, consumers and buckets that one service owns.
const (
	// StreamNotifications holds the notifier's messages on their way to a
	// sender, on notify.<sender>.<fingerprint>.
	StreamNotifications = "NOTIFICATIONS"
	// StreamQuarantine holds the payloads that broke their contract, on
	// quarantine.<source or API key>.<type>, until they are released or
	// age out.
	StreamQuarantine = "QUARANTINE"
	// SenderConsumerPrefix starts the durable consumer of each notifier
	// sender on NOTIFICATIONS (notifier-slack, notifier-webhook,
	// notifier-console).
	SenderConsumerPrefix = "notifier-"
	// ReconcilerConsumer is the dispatcher's durable consumer on ADVISORIES
	// that turns deliveries given up without a dead letter into dead
	// letters.
	ReconcilerConsumer = "dispatcher_reconciler"
	// IdempotencyBucket remembers event ids for the idempotency horizon.
	IdempotencyBucket = "ingress_idempotency"
	// PollCursorBucket holds where each polled source's next round starts
	// (key: the source).
	PollCursorBucket = "ingress_poll_cursors"
	// PollLeaseBucket holds which ingress replica polls each polled source
	// (key: the source); an entry expires when its replica stops renewing
	// it.
	PollLeaseBucket = "ingress_poll_leases"
	// BreakerBucket holds every destination's circuit breaker state, shared
	// by the dispatcher replicas.
	BreakerBucket = "switchyard_breakers"
	// NotifierStateBucket holds the notifier's rule aggregates and alert
	// states.
	NotifierStateBucket = "notifier_state"
	// SilencesBucket holds the alert silences, one key per silence id.
	SilencesBucket = "silences"
)

// Advisory subject prefixes (nats-server jetstream_events.go) of EVENTS
// consumers; the consumer's name follows.
const (
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + natsx.StreamEvents + "."
	AdvisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + natsx.StreamEvents + "."
)

// Creators say which process creates a stream, consumer or bucket.
const (
	ByEveryService = "every service"
	ByIngress      = "ingress"
	ByDispatcher   = "dispatcher"
	ByNotifier     = "notifier"
	ByAuditor      = "auditor"
)

// Topology is the sizing every declaration follows. A zero field takes the
// configuration file's default (config.Defaults), so Topology{} is a
// single node with the default retention.
type Topology struct {
	// Replicas of every stream and KV bucket (nats.replicas).
	Replicas int
	// EventsMaxAge is how long EVENTS keeps events (nats.events_max_age).
	EventsMaxAge time.Duration
	// DuplicateWindow is EVENTS' Nats-Msg-Id window (nats.duplicate_window).
	DuplicateWindow time.Duration
	// Storage of every stream and bucket: file, the zero value; tests may
	// use memory.
	Storage jetstream.StorageType
}

// FromConfig is the topology of a loaded configuration (defaults applied).
func FromConfig(c config.Config) Topology {
	return Topology{
		Replicas:        c.NATS.Replicas,
		EventsMaxAge:    c.NATS.EventsMaxAge.D(),
		DuplicateWindow: c.NATS.DuplicateWindow.D(),
	}
}

// Resolved returns t with every zero field at the configuration file's
// default.
func (t Topology) Resolved() Topology {
	d := FromConfig(config.Defaults())
	t.Replicas = cmp.Or(t.Replicas, d.Replicas)
	t.EventsMaxAge = cmp.Or(t.EventsMaxAge, d.EventsMaxAge)
	t.DuplicateWindow = cmp.Or(t.DuplicateWindow, d.DuplicateWindow)
	return t
}

// Validate checks a topology that was set by hand; one from a valid
// configuration is valid.
func (t Topology) Validate() error {
	t = t.Resolved()
	switch {
	case t.Replicas != 1 && t.Replicas != 3 && t.Replicas != 5:
		return fmt.Errorf("topology: replicas must be 1, 3 or 5, not %d", t.Replicas)
	case t.EventsMaxAge < 0 || t.DuplicateWindow < 0:
		return fmt.Errorf("topology: events max age (%s) and duplicate window (%s) must not be negative", t.EventsMaxAge, t.DuplicateWindow)
	case t.DuplicateWindow > t.EventsMaxAge:
		return fmt.Errorf("topology: duplicate window (%s) must not exceed the events max age (%s)", t.DuplicateWindow, t.EventsMaxAge)
	}
	return nil
}

// Stream is a declared stream and who creates it.
type Stream struct {
	Config    jetstream.StreamConfig `json:"config"`
	CreatedBy string                 `json:"created_by"`
}

// Consumer is a declared durable consumer, the stream it reads and who
// creates it.
type Consumer struct {
	Stream    string                   `json:"stream"`
	Config    jetstream.ConsumerConfig `json:"config"`
	CreatedBy string                   `json:"created_by"`
}

// Bucket is a declared KV bucket and who creates it.
type Bucket struct {
	Config    jetstream.KeyValueConfig `json:"config"`
	CreatedBy string                   `json:"created_by"`
}

// Streams are the streams every service declares at start (Ensure).
func (t Topology) Streams() []jetstream.StreamConfig {
	t = t.Resolved()
	return []jetstream.StreamConfig{
		{
			Name:        natsx.StreamEvents,
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
			Name:        natsx.StreamDeadLetters,
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
			Name:        natsx.StreamAudit,
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
			Name:        natsx.StreamAdvisories,
			Description: "JetStream advisories about EVENTS consumers: max deliveries reached, message terminated",
			Subjects:    []string{AdvisoryMaxDeliveries + "*", AdvisoryTerminated + "*"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      7 * 24 * time.Hour,
			Storage:     t.Storage,
			Replicas:    t.Replicas,
		},
	}
}

// Consumers are the durable consumers every service declares at start
// with the streams. AUDIT has interest retention, so the consumers that
// hold the interest must exist before anything is published, whichever
// service starts first.
func (t Topology) Consumers() []Consumer {
	return []Consumer{
		{Stream: natsx.StreamEvents, CreatedBy: ByEveryService, Config: jetstream.ConsumerConfig{
			Durable:       natsx.ConsumerAuditorEvents,
			Description:   "auditor: records every stored event in the audit store",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			MaxDeliver:    -1,
			MaxAckPending: 20000,
			// Replays are copies of events already recorded.
			FilterSubjects: []string{"events.>", "webhooks.>"},
		}},
		{Stream: natsx.StreamDeadLetters, CreatedBy: ByEveryService, Config: jetstream.ConsumerConfig{
			Durable:       natsx.ConsumerAuditorDeadLetters,
			Description:   "auditor: records every dead letter in the audit store (the AUDIT copy may be lost)",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			MaxDeliver:    -1,
			MaxAckPending: 1000,
			// Dead letters stored before the consumer existed are recorded
			// too: the rows are keyed by the dead letter id.
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}},
		{Stream: natsx.StreamAudit, CreatedBy: ByEveryService, Config: jetstream.ConsumerConfig{
			Durable:       natsx.ConsumerAuditor,
			Description:   "auditor: writes every audit record to the audit store",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			MaxDeliver:    -1,
			MaxAckPending: 20000,
		}},
		{Stream: natsx.StreamAudit, CreatedBy: ByEveryService, Config: jetstream.ConsumerConfig{
			Durable:       natsx.ConsumerNotifier,
			Description:   "notifier: evaluates alert rules over the audit records",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			MaxDeliver:    -1,
			MaxAckPending: 20000,
		}},
	}
}

// Ensure creates or updates the shared streams and their consumers. It is
// idempotent: every service calls it at start.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, cfg := range t.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, natsx.ReplicasError(err, cfg.Replicas))
		}
	}
	for _, c := range t.Consumers() {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("create or update consumer %s on %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	return nil
}

// DestinationConsumer is the durable consumer on EVENTS through which the
// dispatcher delivers to a destination (defaults applied, as config.Load
// applies them). Retries are the consumer's: BackOff is the retry schedule
// (its first step is also the ack wait) and MaxDeliver the attempts. Any
// service creates the missing ones at start; the dispatcher updates them in
// place.
func DestinationConsumer(dc config.Destination) Consumer {
	backoff := redelivery.ConsumerBackoff(dc.Retry.Backoff, dc.Retry.MaxAttempts)
	var ackWait time.Duration
	if len(backoff) > 0 {
		ackWait = backoff[0]
	}
	maxAckPending := dc.MaxAckPending
	if dc.Ordered {
		// The server hands out the next event only when the current one is
		// finished (delivered or dead-lettered), whichever replica has it.
		maxAckPending = 1
	}
	return Consumer{Stream: natsx.StreamEvents, CreatedBy: ByDispatcher + " (" + ByEveryService + " if missing)", Config: jetstream.ConsumerConfig{
		Durable:        destinations.ConsumerName(dc.Name),
		Description:    "Switchyard dispatcher: deliveries to " + dc.Name,
		FilterSubjects: append(slices.Clone(dc.Subjects), events.ReplaySubject(dc.Name, ">")),
		// A new destination receives events stored from now on, not the
		// stream's history.
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		BackOff:       backoff,
		MaxDeliver:    dc.Retry.MaxAttempts,
		MaxAckPending: maxAckPending,
		// Pull requests are sized by free workers, so a few at once suffice.
		MaxWaiting: 512,
		Metadata:   map[string]string{destinations.MetadataKey: dc.Name},
	}}
}

// DestinationConsumers are the consumers of dests (defaults applied).
func DestinationConsumers(dests []config.Destination) []jetstream.ConsumerConfig {
	out := make([]jetstream.ConsumerConfig, len(dests))
	for i, d := range dests {
		out[i] = DestinationConsumer(d).Config
	}
	return out
}

// ReconcilerConsumer is the dispatcher replicas' consumer of the
// MAX_DELIVERIES and MSG_TERMINATED advisories of EVENTS consumers.
func (t Topology) ReconcilerConsumer() Consumer {
	return Consumer{Stream: natsx.StreamAdvisories, CreatedBy: ByDispatcher, Config: jetstream.ConsumerConfig{
		Durable:        ReconcilerConsumer,
		Description:    "Switchyard dispatcher: dead letters for deliveries given up without one (MAX_DELIVERIES, MSG_TERMINATED)",
		FilterSubjects: []string{AdvisoryMaxDeliveries + "*", AdvisoryTerminated + "*"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxDeliver:     -1,
		MaxAckPending:  1000,
	}}
}

// Breakers is the circuit breaker bucket: no TTL, the state of a removed
// destination goes with `switchyard destinations prune`.
func (t Topology) Breakers() Bucket {
	return t.bucket(ByDispatcher, BreakerBucket, "Switchyard dispatcher: circuit breaker state per destination, shared by every replica", 0)
}

// Idempotency is ingress's bucket of event ids, each kept for horizon
// (ingress.idempotency_horizon).
func (t Topology) Idempotency(horizon time.Duration) Bucket {
	return t.bucket(ByIngress, IdempotencyBucket, "ingress: event ids seen within the idempotency horizon (key: hash of the id, value: subject)", horizon)
}

// PollCursors is ingress's bucket of polled sources' cursors: no TTL (a
// cursor lives as long as its source), a little history to see how a
// cursor moved.
func (t Topology) PollCursors() Bucket {
	b := t.bucket(ByIngress, PollCursorBucket, "ingress: where each polled source's next round starts (key: source)", 0)
	b.Config.History = 8
	return b
}

// PollLeases is ingress's bucket of polled sources' leases, each expiring
// ttl (ingress.poll_lease_ttl) after its replica last renewed it.
func (t Topology) PollLeases(ttl time.Duration) Bucket {
	return t.bucket(ByIngress, PollLeaseBucket, "ingress: which replica polls each polled source (key: source); expires unless renewed", ttl)
}

// NotifierState is the notifier's bucket of rule aggregates and alert
// states: no TTL, the notifier deletes what it no longer needs.
func (t Topology) NotifierState() Bucket {
	return t.bucket(ByNotifier, NotifierStateBucket, "notifier: rule aggregates per destination/source (series.*) and alert states (alert.*)", 0)
}

// Silences is the bucket of alert silences: no TTL, an ended silence is
// removed a week after it ended.
func (t Topology) Silences() Bucket {
	return t.bucket(ByNotifier+", "+ByAuditor, SilencesBucket, "Alert silences, by id (the notifier mutes matching alerts until ends_at)", 0)
}

// bucket is a KV bucket by the rule: one value per key, the topology's
// replicas and storage.
func (t Topology) bucket(by, name, description string, ttl time.Duration) Bucket {
	t = t.Resolved()
	return Bucket{CreatedBy: by, Config: jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     1,
		TTL:         ttl,
		Storage:     t.Storage,
		Replicas:    t.Replicas,
	}}
}

// Notifications is the notifier's work queue of messages to send: a
// message goes once its sender settled it.
func (t Topology) Notifications() Stream {
	t = t.Resolved()
	return Stream{CreatedBy: ByNotifier, Config: jetstream.StreamConfig{
		Name:        StreamNotifications,
		Description: "notifier: alert messages on their way to a sender, notify.<sender>.<fingerprint>",
		Subjects:    []string{"notify.>"},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      7 * 24 * time.Hour,
		// Longer than the republish grace, so that a message published
		// twice (its maker died before recording it) is stored once.
		Duplicates: time.Hour,
		Storage:    t.Storage,
		Replicas:   t.Replicas,
	}}
}

// QuarantineMaxAge is how long QUARANTINE keeps a payload: as long as
// DEAD_LETTERS keeps a dead letter, time to fix a schema or a
// transformation and release it.
const QuarantineMaxAge = 30 * 24 * time.Hour

// Quarantine is ingress's stream of payloads that broke their contract
// (docs/decisions/0501-malformed-payloads-accepted-and-quarantined.md):
// each keeps its event id as Nats-Msg-Id, so that a partner sending it
// again within EVENTS' duplicate window stores it once.
func (t Topology) Quarantine() Stream {
	t = t.Resolved()
	return Stream{CreatedBy: ByIngress, Config: jetstream.StreamConfig{
		Name:        StreamQuarantine,
		Description: "ingress: payloads that broke their contract, quarantine.<source or API key>.<type>, until released",
		Subjects:    []string{"quarantine.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      QuarantineMaxAge,
		Duplicates:  t.DuplicateWindow,
		Storage:     t.Storage,
		Replicas:    t.Replicas,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	}}
}

// SenderAckWait is the ack wait of the senders' consumers: a send waits at
// most 30s for its turn and 10s for an answer.
const SenderAckWait = 2 * time.Minute

// SenderConsumerName is the durable consumer of a notifier sender.
func SenderConsumerName(sender string) string { return SenderConsumerPrefix + sender }

// SenderConsumer is the consumer through which a notifier sender reads its
// messages from NOTIFICATIONS.
func (t Topology) SenderConsumer(sender string) Consumer {
	return Consumer{Stream: StreamNotifications, CreatedBy: ByNotifier, Config: jetstream.ConsumerConfig{
		Durable:       SenderConsumerName(sender),
		Description:   "notifier: delivers alert messages to " + sender,
		FilterSubject: "notify." + sender + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       SenderAckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}}
}

// Plan is everything the services create for one configuration.
type Plan struct {
	Streams   []Stream   `json:"streams"`
	Consumers []Consumer `json:"consumers"`
	Buckets   []Bucket   `json:"buckets"`
}

// ForConfig is the plan of a loaded configuration (defaults applied);
// senders are the notifier's senders for its alerts section
// (notifier.Senders).
func ForConfig(c config.Config, senders []string) Plan {
	t := FromConfig(c)
	var p Plan
	for _, s := range t.Streams() {
		p.Streams = append(p.Streams, Stream{Config: s, CreatedBy: ByEveryService})
	}
	p.Streams = append(p.Streams, t.Quarantine(), t.Notifications())
	p.Consumers = t.Consumers()
	for _, d := range c.Destinations {
		p.Consumers = append(p.Consumers, DestinationConsumer(d))
	}
	p.Consumers = append(p.Consumers, t.ReconcilerConsumer())
	for _, s := range senders {
		p.Consumers = append(p.Consumers, t.SenderConsumer(s))
	}
	p.Buckets = []Bucket{t.Idempotency(c.Ingress.IdempotencyHorizon.D()), t.Breakers(), t.NotifierState(), t.Silences()}
	if slices.ContainsFunc(c.Sources, config.Source.IsPolled) {
		p.Buckets = append(p.Buckets, t.PollCursors(), t.PollLeases(c.Ingress.PollLeaseTTL.D()))
	}
	return p
}

// WriteText prints the plan for people: one table each for the streams,
// the consumers and the KV buckets, with their subjects, retention,
// limits, replicas and who creates them.
func (p Plan) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSUBJECTS\tRETENTION\tMAX AGE\tDUPLICATES\tDISCARD\tSTORAGE\tREPLICAS\tCREATED BY")
	for _, s := range p.Streams {
		c := s.Config
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Name, strings.Join(c.Subjects, " "), retention(c.Retention),
			cmp.Or(duration(c.MaxAge), "-"), cmp.Or(duration(c.Duplicates), "server default"), discard(c.Discard), storage(c.Storage), c.Replicas, s.CreatedBy)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "STREAM\tCONSUMER\tFILTER\tDELIVER\tACK WAIT\tBACKOFF\tMAX DELIVER\tMAX ACK PENDING\tCREATED BY")
	for _, c := range p.Consumers {
		cc := c.Config
		filter := cc.FilterSubject
		if len(cc.FilterSubjects) > 0 {
			filter = strings.Join(cc.FilterSubjects, " ")
		}
		backoff := make([]string, len(cc.BackOff))
		for i, b := range cc.BackOff {
			backoff[i] = duration(b)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Stream, cc.Durable, cmp.Or(filter, "-"), deliver(cc.DeliverPolicy),
			cmp.Or(duration(cc.AckWait), "-"), cmp.Or(strings.Join(backoff, " "), "-"), maxDeliver(cc.MaxDeliver), cc.MaxAckPending, c.CreatedBy)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "KV BUCKET\tTTL\tHISTORY\tSTORAGE\tREPLICAS\tCREATED BY")
	for _, b := range p.Buckets {
		c := b.Config
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", c.Bucket, cmp.Or(duration(c.TTL), "-"), c.History, storage(c.Storage), c.Replicas, b.CreatedBy)
	}
	return tw.Flush()
}

// duration prints d as the configuration file writes it ("7d", "2m",
// "1h30m"); zero is "".
func duration(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func storage(s jetstream.StorageType) string { return strings.ToLower(s.String()) }

func retention(r jetstream.RetentionPolicy) string {
	switch r {
	case jetstream.InterestPolicy:
		return "interest"
	case jetstream.WorkQueuePolicy:
		return "work queue"
	}
	return "limits"
}

func discard(d jetstream.DiscardPolicy) string {
	if d == jetstream.DiscardNew {
		return "new"
	}
	return "old"
}

func deliver(d jetstream.DeliverPolicy) string {
	switch d {
	case jetstream.DeliverNewPolicy:
		return "new"
	case jetstream.DeliverLastPolicy:
		return "last"
	case jetstream.DeliverByStartSequencePolicy:
		return "from sequence"
	case jetstream.DeliverByStartTimePolicy:
		return "from time"
	case jetstream.DeliverLastPerSubjectPolicy:
		return "last per subject"
	}
	return "all"
}

func maxDeliver(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}
