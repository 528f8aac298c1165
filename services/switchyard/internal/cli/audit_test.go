package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natstest"
	"github.com/switchyard/switchyard/pkg/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

const testToken = "cli-test-token-0123456789"

// auditAPI runs an auditor (embedded store, writer and API) on a test NATS
// server, with one event dead-lettered at erp.
func auditAPI(t *testing.T) (url string, ns *natstest.Server, dlID string) {
	t.Helper()
	ns = natstest.Start(t)
	_, js := ns.Connect(t)
	aud, err := auditor.New(context.Background(), js, auditor.Config{
		DataDir: t.TempDir(), AdminToken: testToken, Logger: natstest.Logger(t),
		Destinations: []config.Destination{{Name: "erp", Subjects: []string{"events.order.>"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close() })
	natstest.Go(t, "audit writer", aud.RunWriter)
	srv := httptest.NewServer(aud.Handler())
	t.Cleanup(srv.Close)

	res, err := events.Publish(context.Background(), js, events.Event{ID: "order-1042", Type: "order.created", Data: []byte(`{"order":1042}`)})
	if err != nil {
		t.Fatal(err)
	}
	dispatcher := auditlog.NewEmitter(js, "dispatcher")
	now := time.Now()
	dl := &switchyardv1.DeadLetter{
		Id: "EVENTS:1:erp", EventId: "order-1042", Destination: "erp", Subject: "events.order.created", Stream: "EVENTS",
		StreamSeq: res.Sequence, Attempts: 1, LastStatusCode: 422, LastError: "HTTP 422 Unprocessable Entity",
		Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE, DeadLetteredAt: timestamppb.New(now),
	}
	for _, rec := range []*switchyardv1.AuditRecord{
		{Id: "attempt:EVENTS:1:erp:1", Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId: "order-1042", Destination: "erp", Subject: "events.order.created", StreamSeq: res.Sequence, Attempt: 1,
			StartedAt: timestamppb.New(now), Duration: durationpb.New(3 * time.Millisecond), StatusCode: 422,
			Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Error: "HTTP 422 Unprocessable Entity", Final: true,
		}}},
		{Id: "dead_letter:EVENTS:1:erp", Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: dl}},
	} {
		if err := dispatcher.Emit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	return srv.URL, ns, dl.Id
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cli.Execute(context.Background(), args, &out, &out)
	return out.String(), err
}

func TestAuditCommands(t *testing.T) {
	url, ns, dlID := auditAPI(t)
	_, js := ns.Connect(t)
	t.Setenv(cli.EnvAuditURL, url)
	t.Setenv(cli.EnvAuditToken, testToken)

	var detail auditapi.EventDetail
	waitfor.True(t, "the dead letter in the audit log", func() bool {
		out, err := run(t, "events", "show", "order-1042", "--json")
		return err == nil && json.Unmarshal([]byte(out), &detail) == nil && len(detail.Deliveries) == 1 &&
			detail.Deliveries[0].Status == auditapi.StatusDeadLettered && detail.Known
	})

	out, err := run(t, "events", "show", "order-1042")
	if err != nil || !strings.Contains(out, `payload      {"order":1042}`) || !strings.Contains(out, "dead_lettered") ||
		!strings.Contains(out, "HTTP 422 Unprocessable Entity") || !strings.Contains(out, "permanent") {
		t.Errorf("events show: %v\n%s", err, out)
	}
	out, err = run(t, "events", "list", "--destination", "erp", "--status", "dead_lettered", "--since", "1h")
	if err != nil || !strings.Contains(out, "order-1042") || !strings.Contains(out, "events.order.created") {
		t.Errorf("events list: %v\n%s", err, out)
	}
	out, err = run(t, "events", "list", "--source", "nobody")
	if err != nil || strings.Contains(out, "order-1042") {
		t.Errorf("events list --source nobody: %v\n%s", err, out)
	}
	out, err = run(t, "dead-letters", "list", "--destination", "erp")
	if err != nil || !strings.Contains(out, dlID) || !strings.Contains(out, "permanent_failure") {
		t.Errorf("dead-letters list: %v\n%s", err, out)
	}

	out, err = run(t, "dead-letters", "replay", dlID)
	if err != nil || !strings.Contains(out, "sent") {
		t.Fatalf("dead-letters replay: %v\n%s", err, out)
	}
	out, err = run(t, "dead-letters", "replay", dlID)
	if err != nil || !strings.Contains(out, "already sent") {
		t.Errorf("second replay: %v\n%s", err, out)
	}
	if n := len(natstest.StreamMsgs(t, js, "EVENTS", "replay.erp.>")); n != 1 {
		t.Errorf("%d replays published, want 1", n)
	}
	out, err = run(t, "dead-letters", "replay", dlID, "--force")
	if err != nil || !strings.Contains(out, "sent") || strings.Contains(out, "already") {
		t.Errorf("forced replay: %v\n%s", err, out)
	}
	if n := len(natstest.StreamMsgs(t, js, "EVENTS", "replay.erp.>")); n != 2 {
		t.Errorf("%d replays published after --force, want 2", n)
	}
	out, err = run(t, "dead-letters", "replay", "--all", "--destination", "erp", "--dry-run")
	if err != nil || !strings.Contains(out, "0 matched") {
		t.Errorf("bulk dry run after the replay: %v\n%s", err, out)
	}

	for _, args := range [][]string{
		{"dead-letters", "replay"},
		{"dead-letters", "replay", "--all"},
		{"dead-letters", "replay", "--all", "--destination", "erp", "x"},
		{"dead-letters", "replay", "nope"},
		{"events", "show", "nope"},
		{"events", "list", "--status", "lost"},
		{"events", "list", "--token", "wrong-token"},
	} {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v succeeded:\n%s", args, out)
		}
	}
	_, err = run(t, "events", "list", "--token", "wrong-token")
	var apiErr *auditapi.Error
	if !errors.As(err, &apiErr) || apiErr.Code != "unauthorized" {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
	if _, err := run(t, "events", "list", "--url", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("unreachable API: %v", err)
	}
}
