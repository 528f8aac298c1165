package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
	"github.com/switchyard/switchyard/services/ingress/internal/poll"
	"github.com/switchyard/switchyard/services/ingress/internal/server"
)

// PollRound is what one poll round did (the audit record's content).
type PollRound = poll.Round

// DryRunItem is an item a dry run found: the event it would be.
type DryRunItem struct {
	EventID, Subject, Type string
	Body                   []byte
	// Stored says whether the event is stored already (its idempotency
	// record exists): polling would store it again only if not. Known is
	// false when that could not be looked up (no NATS).
	Stored, Known bool
	// Violations are how the item breaks the source's contract: polling
	// would quarantine it rather than deliver it. None without a contract.
	Violations []contracts.Violation
}

// DryRunPoll runs one round of the polled source name against its real
// API, as ingress's poller would, and calls found for each item, without
// storing anything or moving the source's cursor. With js it starts from
// the stored cursor and says which items are stored already; without, from
// the source's initial cursor. The round says where the cursor would move.
func DryRunPoll(ctx context.Context, js jetstream.JetStream, cfg config.Config, name string, found func(DryRunItem)) (PollRound, error) {
	src, ok := cfg.Source(name)
	if !ok {
		return PollRound{}, fmt.Errorf("no source is called %q", name)
	}
	set, err := contracts.Compile(config.Config{Sources: cfg.Sources, Ingress: cfg.Ingress})
	if err != nil {
		return PollRound{}, err
	}
	d := dryStore{found: found, contracts: set}
	var cursors poll.Cursors
	if js != nil {
		var err error
		if cursors, err = poll.OpenCursors(ctx, js); err != nil && !errors.Is(err, poll.ErrNoCursors) {
			return PollRound{}, err
		}
		idem, err := idempotency.New(js, topology.FromConfig(cfg).Idempotency(cfg.Ingress.IdempotencyHorizon.D()).Config)
		if err != nil {
			return PollRound{}, err
		}
		if idem.Open(ctx) == nil {
			d.idem = idem
		}
	}
	return poll.DryRun(ctx, src, cursors, d, slog.New(slog.DiscardHandler))
}

// dryStore tells what storing an item would do, and stores nothing.
type dryStore struct {
	idem      *idempotency.Store
	contracts *contracts.Set
	found     func(DryRunItem)
}

func (d dryStore) StorePolled(ctx context.Context, source, itemID, eventType string, body []byte, _ time.Time) (string, bool, bool, error) {
	it := DryRunItem{
		EventID: server.WebhookEventID(source, itemID, body),
		Subject: server.WebhookSubject(source, eventType),
		Type:    eventType, Body: body,
		Violations: d.contracts.Validate(contracts.Source(source), eventType, "application/json", body),
	}
	if d.idem != nil {
		if _, found, err := d.idem.Lookup(ctx, it.EventID); err == nil {
			it.Stored, it.Known = found, true
		}
	}
	if d.found != nil {
		d.found(it)
	}
	return it.EventID, it.Stored, !it.Stored && len(it.Violations) > 0, nil
}
