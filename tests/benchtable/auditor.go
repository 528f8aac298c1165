package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
)

// auditorSection measures the auditor's catch-up into Postgres: a backlog
// of delivery-attempt records waits in AUDIT before its writer starts, and
// the rate runs from the start until its consumer has acknowledged all of
// them.
func auditorSection(ctx context.Context, e *env, o options, rep *report) error {
	ns, dbURL, err := e.natsAndPostgres(ctx)
	if err != nil {
		return err
	}
	_, js, err := e.connect(ns)
	if err != nil {
		return err
	}
	if err := publishAttempts(ctx, auditlog.NewEmitter(js, "dispatcher"), o.AuditBacklog); err != nil {
		return err
	}
	cfg := auditor.Config{DatabaseURL: config.Secret(dbURL), Logger: e.log.With("service", "auditor")}
	// Migrated first, so that the rate is the writer's alone.
	if err := auditor.Migrate(ctx, cfg); err != nil {
		return err
	}
	aud, err := e.auditor(ns, cfg)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerAuditor)
	if err != nil {
		return err
	}
	cpu0 := cpuTime()
	start := time.Now()
	e.goRun(ctx, "auditor", aud.RunWriter)
	if err := waitUntil(ctx, 10*time.Minute, "the audit backlog written", func() (bool, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		return info.AckFloor.Stream >= uint64(o.AuditBacklog) && info.NumPending == 0 && info.NumAckPending == 0, nil
	}); err != nil {
		return err
	}
	rate := float64(o.AuditBacklog) / time.Since(start).Seconds()
	rep.add(row{Section: "auditor", Name: "catch-up into Postgres after a backlog", Rate: rate, Unit: "records/s",
		CPUMicros: perOp(cpuTime()-cpu0, o.AuditBacklog),
		Note:      fmt.Sprintf("%d delivery-attempt records, default batch; CPU without Postgres's", o.AuditBacklog)})
	return nil
}

// publishAttempts stores n delivery-attempt records in AUDIT, as the
// dispatcher emits them (two attempts per event).
func publishAttempts(ctx context.Context, em *auditlog.Emitter, n int) error {
	now := time.Now()
	// At most a window of PubAcks outstanding: the emitter's client gives
	// up on a publish that waits for room too long.
	const window = 1000
	futures := make([]jetstream.PubAckFuture, 0, window)
	wait := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for i := range n {
		eventID := "ev-" + strconv.Itoa(i/2)
		attempt := 1 + i%2
		outcome, status := switchyardv1.Outcome_OUTCOME_RETRYABLE, int32(503)
		if attempt == 2 {
			outcome, status = switchyardv1.Outcome_OUTCOME_DELIVERED, 204
		}
		rec := &switchyardv1.AuditRecord{
			Id:      fmt.Sprintf("attempt:EVENTS:%d:partner:%d:%s", i/2+1, attempt, eventID),
			Time:    timestamppb.New(now),
			Service: "dispatcher",
			Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
				EventId: eventID, Destination: "partner", Subject: "webhooks.shop.order_created",
				StreamSeq: uint64(i/2 + 1), Attempt: int32(attempt), MaxAttempts: 6,
				StartedAt: timestamppb.New(now), Duration: durationpb.New(1500 * time.Microsecond),
				StatusCode: status, Outcome: outcome, Final: attempt == 2,
			}},
		}
		f, err := em.EmitAsync(rec)
		if err != nil {
			return err
		}
		futures = append(futures, f)
		if len(futures) == window {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}
