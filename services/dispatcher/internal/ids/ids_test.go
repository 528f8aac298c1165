package ids_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
)

func TestIDs(t *testing.T) {
	t.Parallel()
	inc := ids.StreamIncarnation(time.UnixMilli(1_767_225_600_000)) // 2026-01-01
	for _, tt := range []struct{ got, want string }{
		{inc, "mjuohs00"},
		{ids.StreamRef(inc), "EVENTS@mjuohs00"},
		{ids.DeadLetterID(inc, 1042, "erp"), "EVENTS@mjuohs00:1042:erp"},
		{ids.AttemptID(inc, 1042, "erp", 3), "attempt:EVENTS@mjuohs00:1042:erp:3"},
		{ids.FilteredID(inc, 1042, "erp"), "filtered:EVENTS@mjuohs00:1042:erp"},
		{ids.UnknownEventID(1042), "unknown:EVENTS:1042"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// Read names the stream it finds, and notices when EVENTS was deleted
// and created again: the new ids differ from the old ones.
func TestIncarnationNoticesARecreatedStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	var inc ids.Incarnation
	if tok, _ := inc.Get(); tok != "" {
		t.Fatalf("zero Incarnation token = %q, want empty", tok)
	}
	if changed, err := inc.Read(ctx, js, natstest.Logger(t)); err != nil || changed {
		t.Fatalf("first Read = %v, %v; want no change", changed, err)
	}
	first, created := inc.Get()
	if first != ids.StreamIncarnation(created) || created.IsZero() {
		t.Fatalf("Get = %q, %v", first, created)
	}
	if changed, err := inc.Read(ctx, js, natstest.Logger(t)); err != nil || changed {
		t.Fatalf("Read of the same stream = %v, %v; want no change", changed, err)
	}

	s, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	if changed, err := inc.Read(ctx, js, natstest.Logger(t)); err != nil || !changed {
		t.Fatalf("Read after EVENTS was recreated = %v, %v; want a change", changed, err)
	}
	if second, recreated := inc.Get(); recreated.Equal(created) || second != ids.StreamIncarnation(recreated) {
		t.Errorf("after the recreation Get = %q, %v; want the new stream's (the old one was created %v)", second, recreated, created)
	}
}
