package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

const testToken = "cli-test-token-0123456789"

// testTraceID is the trace of the recorded attempt: events show prints it.
const testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// testTransformVersion is the version of the transformation that made the
// recorded attempt's body: events show prints it.
const testTransformVersion = "0a1b2c3d4e5f"

// auditAPI runs an auditor (embedded store, writer and API) on a test NATS
// server, with one event dead-lettered at erp; adjust changes its
// configuration.
func auditAPI(t *testing.T, adjust ...func(*auditor.Config)) (url string, ns *natstest.Server, dlID string) {
	t.Helper()
	ns = natstest.Start(t)
	_, js := ns.Connect(t)
	cfg := auditor.Config{
		DataDir: t.TempDir(), Auditor: config.Auditor{AdminToken: testToken}, Logger: natstest.Logger(t),
		Destinations: []config.Destination{{Name: "erp", Subjects: []string{"events.order.>"}}},
	}
	for _, a := range adjust {
		a(&cfg)
	}
	aud, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close() })
	natstest.Go(t, "audit writer", aud.RunWriter)
	srv := httptest.NewServer(aud.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, ns, deadLetter(t, js, "order-1042")
}

// deadLetter publishes event id and records its failed attempt and dead
// letter at erp as the dispatcher would; it returns the dead letter id.
func deadLetter(t *testing.T, js jetstream.JetStream, id string) string {
	t.Helper()
	res, err := events.Publish(context.Background(), js, events.Event{ID: id, Type: "order.created", Data: []byte(`{"order":1042}`)})
	if err != nil {
		t.Fatal(err)
	}
	dispatcher := auditlog.NewEmitter(js, "dispatcher")
	now := time.Now()
	dl := &switchyardv1.DeadLetter{
		Id: fmt.Sprintf("EVENTS:%d:erp", res.Sequence), EventId: id, Destination: "erp", Subject: "events.order.created", Stream: "EVENTS",
		StreamSeq: res.Sequence, Attempts: 1, LastStatusCode: 422, LastError: "HTTP 422 Unprocessable Entity",
		Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE, DeadLetteredAt: timestamppb.New(now),
	}
	for _, rec := range []*switchyardv1.AuditRecord{
		{Id: fmt.Sprintf("attempt:EVENTS:%d:erp:1", res.Sequence), Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId: id, Destination: "erp", Subject: "events.order.created", StreamSeq: res.Sequence, Attempt: 1,
			StartedAt: timestamppb.New(now), Duration: durationpb.New(3 * time.Millisecond), StatusCode: 422,
			Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Error: "HTTP 422 Unprocessable Entity", Final: true,
			TraceId: testTraceID, TransformVersion: testTransformVersion,
		}}},
		{Id: "dead_letter:" + dl.Id, Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: dl}},
	} {
		if err := dispatcher.Emit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	return dl.Id
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
		!strings.Contains(out, "HTTP 422 Unprocessable Entity") || !strings.Contains(out, "permanent") || !strings.Contains(out, testTraceID) ||
		!strings.Contains(out, "TRANSFORM") || !strings.Contains(out, testTransformVersion) {
		t.Errorf("events show: %v\n%s", err, out)
	}
	if len(detail.Attempts) != 1 || detail.Attempts[0].TransformVersion != testTransformVersion {
		t.Errorf("events show --json attempts %+v, want transform_version %q", detail.Attempts, testTransformVersion)
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
	if !errors.As(err, &apiErr) || apiErr.Code != auditapi.CodeUnauthorized || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
	if _, err := run(t, "events", "list", "--url", "http://127.0.0.1:1"); !errors.Is(err, auditapi.ErrUnreachable) {
		t.Errorf("unreachable API: %v, want %v", err, auditapi.ErrUnreachable)
	}
}

// A configuration file named with --config must load: the audit commands
// do not quietly fall back to defaults (which would talk to another API);
// the default file is only a fallback.
func TestExplicitConfigMustLoad(t *testing.T) {
	url, _, _ := auditAPI(t)
	t.Setenv(cli.EnvAuditURL, url)
	t.Setenv(cli.EnvAuditToken, testToken)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{
		{"events", "list", "--config", missing},
		{"-c", missing, "dead-letters", "list"},
		{"rejections", "list", "-c", missing},
		{"silences", "list", "--config", missing},
	} {
		_, err := run(t, args...)
		var pathErr *fs.PathError
		if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pathErr) || pathErr.Path != missing {
			t.Errorf("%v = %v, want the error loading nope.yaml", args, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("auditor: {listen: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "events", "list", "--config", bad); err == nil {
		t.Error("events list with an unparsable --config succeeded")
	}
	// Without --config the default file (absent here) is only a fallback.
	waitfor.True(t, "events list with the default config absent", func() bool {
		out, err := run(t, "events", "list")
		return err == nil && strings.Contains(out, "order-1042")
	})
}

// --url takes host:port without a scheme; what is not an HTTP URL gets a
// message saying what is expected.
func TestURLWithoutScheme(t *testing.T) {
	t.Parallel()
	url, _, _ := auditAPI(t)
	hostPort := strings.TrimPrefix(url, "http://")
	waitfor.True(t, "the event listed through host:port", func() bool {
		out, err := run(t, "events", "list", "--url", hostPort, "--token", testToken)
		return err == nil && strings.Contains(out, "order-1042")
	})
	for _, bad := range []string{"ftp://" + hostPort, "http://", "::1:8081:x"} {
		_, err := run(t, "events", "list", "--url", bad, "--token", testToken)
		// The message saying what is expected is what is under test.
		if err == nil || !strings.Contains(err.Error(), "want http://host:port") {
			t.Errorf("--url %q: %v, want a message saying what is expected", bad, err)
		}
	}
}

// A typo in a subcommand is an error, not a help text and exit 0.
func TestUnknownSubcommands(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"dead-letters", "show"}, {"events", "shwo", "x"}, {"rejections", "ls"}, {"silences", "lst"}, {"destinations", "purne"}} {
		if out, err := run(t, args...); !errors.Is(err, cli.ErrUnknownCommand) {
			t.Errorf("%v = %v, want an unknown command error\n%s", args, err, out)
		}
	}
	if out, err := run(t, "dead-letters"); err != nil || !strings.Contains(out, "replay") {
		t.Errorf("dead-letters alone: %v, want its help\n%s", err, out)
	}
	// The list limit defaults to the API's.
	if out, err := run(t, "events", "list", "--help"); err != nil || !strings.Contains(out, fmt.Sprintf("(default %d)", auditapi.DefaultLimit)) {
		t.Errorf("events list --help: %v\n%s", err, out)
	}
}

// rejections list shows what ingress refused, with the publish-API key name,
// user agent and body size.
func TestRejectionsList(t *testing.T) {
	t.Parallel()
	url, ns, _ := auditAPI(t)
	_, js := ns.Connect(t)
	rec := &switchyardv1.AuditRecord{Id: "rej-1", Time: timestamppb.Now(), Service: "ingress", Detail: &switchyardv1.AuditRecord_WebhookRejected{
		WebhookRejected: &switchyardv1.WebhookRejected{Source: "_api", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
			Detail: "unknown key", RemoteAddr: "203.0.113.9", StatusCode: 401, UserAgent: "billing/2.1", BodySize: 5120, ApiKey: "billing"},
	}}
	if err := auditlog.NewEmitter(js, "ingress").Emit(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	var out string
	waitfor.True(t, "the rejection listed", func() bool {
		var err error
		out, err = run(t, "rejections", "list", "--url", url, "--token", testToken, "--source", "_api")
		return err == nil && strings.Contains(out, "rej-1")
	})
	for _, want := range []string{"billing/2.1", "5120", "203.0.113.9", "bad_signature", "API KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("rejections list does not show %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, " billing ") {
		t.Errorf("rejections list does not show the key name:\n%s", out)
	}
}

// alerts list shows what the notifier sent, and what a sender gave up on.
func TestAlertsList(t *testing.T) {
	t.Parallel()
	url, ns, _ := auditAPI(t)
	_, js := ns.Connect(t)
	emit := auditlog.NewEmitter(js, "notifier")
	for i, delivered := range []bool{true, false} {
		rec := &switchyardv1.AuditRecord{Id: fmt.Sprintf("alert-%d", i), Time: timestamppb.Now(), Service: "notifier",
			Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{
				Fingerprint: "fp", Rule: "PartnerDown", Labels: map[string]string{"destination": "erp"},
				State: switchyardv1.AlertState_ALERT_STATE_FIRING, Severity: "critical", Summary: "erp is down",
				Sender: "slack", Delivered: delivered, Kind: "firing", Sequence: uint64(i + 1), Episode: 1, Attempts: 1,
			}}}
		if !delivered {
			rec.GetAlert().Error = "invalid_payload"
		}
		if err := emit.Emit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	var out string
	waitfor.True(t, "the alert listed", func() bool {
		var err error
		out, err = run(t, "alerts", "list", "--url", url, "--token", testToken, "--destination", "erp", "--delivered", "false")
		return err == nil && strings.Contains(out, "PartnerDown")
	})
	for _, want := range []string{"RULE", "firing", "critical", "destination=erp", "slack", "no: invalid_payload", "erp is down"} {
		if !strings.Contains(out, want) {
			t.Errorf("alerts list does not show %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "PartnerDown"); n != 1 {
		t.Errorf("alerts list --delivered false shows %d alerts, want 1:\n%s", n, out)
	}
}

// records list shows the records kept whole, of one kind.
func TestRecordsList(t *testing.T) {
	t.Parallel()
	url, ns, _ := auditAPI(t)
	_, js := ns.Connect(t)
	rec := &switchyardv1.AuditRecord{Id: "dup-1", Time: timestamppb.Now(), Service: "ingress",
		Detail: &switchyardv1.AuditRecord_WebhookDuplicate{WebhookDuplicate: &switchyardv1.WebhookDuplicate{Source: "shop", EventId: "shop:msg_1"}}}
	if err := auditlog.NewEmitter(js, "ingress").Emit(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	args := []string{"--url", url, "--token", testToken}
	var out string
	waitfor.True(t, "the duplicate listed", func() bool {
		var err error
		out, err = run(t, append([]string{"records", "list", "--kind", "duplicate", "--key", "shop"}, args...)...)
		return err == nil && strings.Contains(out, "dup-1")
	})
	for _, want := range []string{"KIND", "duplicate", "shop", "ingress"} {
		if !strings.Contains(out, want) {
			t.Errorf("records list does not show %q:\n%s", want, out)
		}
	}
	// The API's message pointing to the right list is what is under test.
	_, err := run(t, append([]string{"records", "list", "--kind", "attempt"}, args...)...)
	var apiErr *auditapi.Error
	if !errors.As(err, &apiErr) || !errors.Is(err, auditapi.ErrBadRequest) ||
		!strings.Contains(apiErr.Message, "attempt records are listed by /v1/events/{id} (attempts)") {
		t.Errorf("records list --kind attempt: %v", err)
	}
}

// A bulk replay the API answers in several rounds (each within its time
// budget) is followed to the end by the CLI.
func TestBulkReplayInRounds(t *testing.T) {
	t.Parallel()
	url, ns, _ := auditAPI(t, func(c *auditor.Config) { c.Tuning.BulkReplayBudget = time.Nanosecond })
	_, js := ns.Connect(t)
	deadLetter(t, js, "order-1043")
	deadLetter(t, js, "order-1044")
	args := []string{"--url", url, "--token", testToken}
	waitfor.True(t, "three dead-lettered deliveries", func() bool {
		out, err := run(t, append([]string{"dead-letters", "replay", "--all", "--destination", "erp", "--dry-run"}, args...)...)
		return err == nil && strings.Contains(out, "3 matched")
	})
	out, err := run(t, append([]string{"dead-letters", "replay", "--all", "--destination", "erp"}, args...)...)
	if err != nil || !strings.Contains(out, "replayed 3, 0 failed") {
		t.Errorf("bulk replay in rounds: %v\n%s", err, out)
	}
	if n := len(natstest.StreamMsgs(t, js, "EVENTS", "replay.erp.>")); n != 3 {
		t.Errorf("%d replays published, want 3", n)
	}
}
