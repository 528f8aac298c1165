package storetest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// modelTests are the suite's tests of the delivery model, replays,
// parking and the destination summary.
var modelTests = []struct {
	name string
	fn   func(t *testing.T, st store.Store)
}{
	{"Deliveries", testDeliveries},
	{"DeliveriesAnyOrderAnyRepeat", testDeliveriesAnyOrder},
	{"DeliveredOutranksDeadLetterOfItsRound", testDeliveredOutranksDeadLetter},
	{"DeadLettersOfUnknownEvents", testUnknownEventDeadLetters},
	{"DeliveryPendingFromRoutes", testDeliveryPending},
	{"DeliveryFiltered", testDeliveryFiltered},
	{"ReplayBookkeeping", testReplayBookkeeping},
	{"Park", testPark},
	{"DestinationStatus", testDestinationStatus},
}

// RoundAttempt is an attempt of one round of a delivery: the original
// delivery is EVENTS message seq; a replay is a new message with its own
// seq, and its attempt numbers start again at 1.
func RoundAttempt(eventID, destination string, seq uint64, n int, started time.Time, status int, outcome switchyardv1.Outcome, final bool, replayOf string) *switchyardv1.AuditRecord {
	rec := Attempt(eventID, destination, n, started, status, outcome, final)
	rec.Id = fmt.Sprintf("attempt:EVENTS:%d:%s:%d:%s", seq, destination, n, eventID)
	a := rec.GetDeliveryAttempt()
	a.StreamSeq, a.ReplayOf = seq, replayOf
	a.Duration = durationpb.New(time.Duration(n) * time.Millisecond)
	return rec
}

// RoundDeadLetter is the dead letter ending round seq.
func RoundDeadLetter(eventID, destination string, seq uint64, at time.Time, replayOf string) *switchyardv1.AuditRecord {
	rec := DeadLetter(eventID, destination, at)
	id := fmt.Sprintf("EVENTS:%d:%s", seq, destination)
	rec.Id = "dead_letter:" + id
	dl := rec.GetDeadLettered()
	dl.Id, dl.StreamSeq, dl.ReplayOf = id, seq, replayOf
	return rec
}

// ReplayRecord records that dead letter dlID was sent again as message seq.
func ReplayRecord(id, eventID, destination, dlID string, seq uint64, at time.Time) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{
		Id:      id,
		Time:    timestamppb.New(at),
		Service: "auditor",
		Detail: &switchyardv1.AuditRecord_Replayed{Replayed: &switchyardv1.Replayed{
			DeadLetterId: dlID, EventId: eventID, Destination: destination,
			Subject: "replay." + destination + ".webhooks.shop.order_created", StreamSeq: seq, RequestedBy: "test",
		}},
	}
}

// ReplayStory is a delivery's whole history: three failed attempts of
// message orig, its dead letter, a replay as message again whose first
// attempt fails and second succeeds.
func ReplayStory(eventID, destination string, orig, again uint64) []*switchyardv1.AuditRecord {
	dlID := fmt.Sprintf("EVENTS:%d:%s", orig, destination)
	return []*switchyardv1.AuditRecord{
		RoundAttempt(eventID, destination, orig, 1, base, 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
		RoundAttempt(eventID, destination, orig, 2, base.Add(time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
		RoundAttempt(eventID, destination, orig, 3, base.Add(2*time.Minute), 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, true, ""),
		RoundDeadLetter(eventID, destination, orig, base.Add(2*time.Minute+time.Second), ""),
		// The replay's record carries the auditor's clock, which may run
		// behind the dispatcher's: the stream sequence orders it.
		ReplayRecord("replay-"+eventID, eventID, destination, dlID, again, base.Add(time.Minute)),
		RoundAttempt(eventID, destination, again, 1, base.Add(time.Hour), 502, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, dlID),
		RoundAttempt(eventID, destination, again, 2, base.Add(time.Hour+time.Minute), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, dlID),
	}
}

// Filtered is the record of a destination's filter leaving stream
// message seq of an event out.
func Filtered(eventID, destination string, seq uint64, at time.Time, replayOf string) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Id: fmt.Sprintf("filtered:%s:%d:%s", eventID, seq, destination), Time: timestamppb.New(at), Service: "dispatcher",
		Detail: &switchyardv1.AuditRecord_DeliveryFiltered{DeliveryFiltered: &switchyardv1.DeliveryFiltered{
			EventId: eventID, Destination: destination, StreamSeq: seq, ReplayOf: replayOf, FilteredAt: timestamppb.New(at)}}}
}

// A delivery the destination's filter left out is filtered, not pending
// for ever, in whatever order and however often the records arrive; the
// filter's decision ends its round after any attempt, and a later round
// (a replay) moves on from it.
func testDeliveryFiltered(t *testing.T, st store.Store) {
	migrate(t, st)
	ev := Event("ev-filtered", []byte(`{"region":"us"}`))
	ev.Destinations = []string{"eu-shop", "us-shop"}
	recs := []*switchyardv1.AuditRecord{
		Filtered("ev-filtered", "eu-shop", 1, base.Add(time.Second), ""),
		Attempt("ev-filtered", "us-shop", 1, base.Add(time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
	}
	write(t, st, store.Batch{Records: recs})
	write(t, st, store.Batch{Events: []store.Routed{ev}, Records: recs})
	if x := delivery(t, st, "ev-filtered", "eu-shop"); x.Status != auditapi.StatusFiltered || x.Attempts != 0 || !x.UpdatedAt.Equal(base.Add(time.Second)) {
		t.Errorf("eu-shop = %s, want filtered without an attempt", showDelivery(x))
	}
	if x := delivery(t, st, "ev-filtered", "us-shop"); x.Status != auditapi.StatusDelivered {
		t.Errorf("us-shop = %s, want delivered", showDelivery(x))
	}
	if d := get(t, st, "ev-filtered"); len(d.Attempts) != 1 {
		t.Errorf("attempts = %+v, want only us-shop's: a filtered delivery makes none", d.Attempts)
	}
	// The filter changed between two deliveries of one message: the
	// decision after the failed attempt ends the round, whatever the order
	// of the records.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		Filtered("ev-changed", "erp", 5, base.Add(time.Minute), ""),
		RoundAttempt("ev-changed", "erp", 5, 1, base, 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
	}})
	if x := delivery(t, st, "ev-changed", "erp"); x.Status != auditapi.StatusFiltered || x.LastStatusCode != 503 || x.Attempts != 1 {
		t.Errorf("ev-changed = %s, want filtered after its one failed attempt", showDelivery(x))
	}
	// A replay of it is a later round: attempted, it is no longer filtered.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		RoundAttempt("ev-changed", "erp", 9, 1, base.Add(time.Hour), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, "EVENTS:5:erp"),
	}})
	if x := delivery(t, st, "ev-changed", "erp"); x.Status != auditapi.StatusDelivered {
		t.Errorf("ev-changed after a replay = %s, want delivered", showDelivery(x))
	}
	// Listed by status, and kept whole as a record of its kind.
	got, _, err := st.ListDeliveries(ctx(t), store.DeliveryFilter{Status: auditapi.StatusFiltered}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].EventID != "ev-filtered" {
		t.Errorf("filtered deliveries = %+v, want ev-filtered's to eu-shop", got)
	}
	kept, _, err := st.ListRecords(ctx(t), store.RecordFilter{Kind: auditlog.KindFiltered, Key: "eu-shop"}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 {
		t.Errorf("%d filtered records of eu-shop, want 1 (written twice, kept once)", len(kept))
	}
}

func delivery(t *testing.T, st store.Store, eventID, destination string) store.Delivery {
	t.Helper()
	d := get(t, st, eventID)
	for _, x := range d.Deliveries {
		if x.Destination == destination {
			return x
		}
	}
	t.Fatalf("no delivery of %s to %s in %+v", eventID, destination, d.Deliveries)
	return store.Delivery{}
}

func ptr(t time.Time) *time.Time { return &t }

func testDeliveries(t *testing.T, st store.Store) {
	migrate(t, st)
	write(t, st, FullBatch("ev-d"))
	d := get(t, st, "ev-d")
	if len(d.Deliveries) != 2 || d.Deliveries[0].Destination != "crm" || d.Deliveries[1].Destination != "erp" {
		t.Fatalf("deliveries = %+v, want crm and erp", d.Deliveries)
	}
	crm, erp := d.Deliveries[0], d.Deliveries[1]
	wantCRM := store.Delivery{
		EventID: "ev-d", Destination: "crm", Status: auditapi.StatusDelivered, Attempts: 1, TotalAttempts: 1, LastStatusCode: 200,
		FirstAttemptAt: ptr(base.Add(90 * time.Second)), LastAttemptAt: ptr(base.Add(90 * time.Second)),
		DeliveredAt: ptr(base.Add(90*time.Second + 1500*time.Microsecond)), UpdatedAt: base.Add(90*time.Second + 1500*time.Microsecond),
	}
	checkDelivery(t, crm, wantCRM)
	wantERP := store.Delivery{
		EventID: "ev-d", Destination: "erp", Status: auditapi.StatusDeadLettered, Attempts: 3, TotalAttempts: 3,
		LastStatusCode: 503, LastError: "HTTP 503",
		FirstAttemptAt: ptr(base.Add(time.Minute)), LastAttemptAt: ptr(base.Add(3 * time.Minute)),
		DeadLetterID: "EVENTS:42:erp:ev-d", UpdatedAt: base.Add(4 * time.Minute),
	}
	checkDelivery(t, erp, wantERP)
}

func checkDelivery(t *testing.T, got, want store.Delivery) {
	t.Helper()
	if !reflect.DeepEqual(normDelivery(got), normDelivery(want)) {
		t.Errorf("delivery =\n%s\nwant\n%s", showDelivery(got), showDelivery(want))
	}
}

// normDelivery makes times comparable with ==.
func normDelivery(d store.Delivery) store.Delivery {
	n := func(p *time.Time) *time.Time {
		if p == nil {
			return nil
		}
		u := p.UTC()
		return &u
	}
	d.FirstAttemptAt, d.LastAttemptAt, d.DeliveredAt = n(d.FirstAttemptAt), n(d.LastAttemptAt), n(d.DeliveredAt)
	d.UpdatedAt = d.UpdatedAt.UTC()
	return d
}

func showDelivery(d store.Delivery) string {
	s := func(p *time.Time) string {
		if p == nil {
			return "nil"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{%s->%s %s attempts %d/%d last %d %q first %s last %s delivered %s dl %q replay_of %q updated %s}",
		d.EventID, d.Destination, d.Status, d.Attempts, d.TotalAttempts, d.LastStatusCode, d.LastError,
		s(d.FirstAttemptAt), s(d.LastAttemptAt), s(d.DeliveredAt), d.DeadLetterID, d.ReplayOf, s(&d.UpdatedAt))
}

// writeShuffled writes recs with up to maxRepeats-1 of them twice, in a
// random order, cut into random batches.
func writeShuffled(t *testing.T, st store.Store, rng *rand.Rand, recs []*switchyardv1.AuditRecord, maxRepeats int) {
	t.Helper()
	for range rng.IntN(maxRepeats) {
		recs = append(recs, recs[rng.IntN(len(recs))])
	}
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	for len(recs) > 0 {
		n := 1 + rng.IntN(len(recs))
		write(t, st, store.Batch{Records: recs[:n]})
		recs = recs[n:]
	}
}

// The delivery row must not depend on the order records arrive in, how they
// are batched, or how often each arrives (AUDIT replayed, re-emitted).
func testDeliveriesAnyOrder(t *testing.T, st store.Store) {
	migrate(t, st)
	story := ReplayStory("ev-ref", "erp", 42, 97)
	write(t, st, store.Batch{Records: story})
	final := func(eventID string, orig uint64) store.Delivery {
		dlID := fmt.Sprintf("EVENTS:%d:erp", orig)
		return store.Delivery{
			EventID: eventID, Destination: "erp", Status: auditapi.StatusDelivered, Attempts: 2, TotalAttempts: 5,
			LastStatusCode: 200, FirstAttemptAt: ptr(base), LastAttemptAt: ptr(base.Add(time.Hour + time.Minute)),
			DeliveredAt: ptr(base.Add(time.Hour + time.Minute + 2*time.Millisecond)), DeadLetterID: dlID, ReplayOf: dlID,
			UpdatedAt: base.Add(time.Hour + time.Minute + 2*time.Millisecond),
		}
	}
	checkDelivery(t, delivery(t, st, "ev-ref", "erp"), final("ev-ref", 42))

	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 12 {
		id := fmt.Sprint("ev-shuffled-", trial)
		orig := uint64(1000 + 10*trial)
		recs := ReplayStory(id, "erp", orig, orig+5)
		writeShuffled(t, st, rng, recs, 4)
		got, want := delivery(t, st, id, "erp"), final(id, orig)
		if !reflect.DeepEqual(normDelivery(got), normDelivery(want)) {
			t.Errorf("trial %d: delivery =\n%s\nwant (as if all came in order, once)\n%s", trial, showDelivery(got), showDelivery(want))
		}
	}

	// Midway states: each prefix of the story, in order.
	midway := []struct {
		upTo     int
		status   string
		attempts int
		total    int
		lastCode int
	}{
		{1, auditapi.StatusRetrying, 1, 1, 503},
		{3, auditapi.StatusDeadLettered, 3, 3, 500},
		{4, auditapi.StatusDeadLettered, 3, 3, 500},
		{5, auditapi.StatusReplayed, 0, 3, 500},
		{6, auditapi.StatusRetrying, 1, 4, 502},
	}
	for _, m := range midway {
		id := fmt.Sprint("ev-midway-", m.upTo)
		orig := uint64(2000 + 10*m.upTo)
		write(t, st, store.Batch{Records: ReplayStory(id, "erp", orig, orig+5)[:m.upTo]})
		d := delivery(t, st, id, "erp")
		if d.Status != m.status || d.Attempts != m.attempts || d.TotalAttempts != m.total || d.LastStatusCode != m.lastCode {
			t.Errorf("after %d records: %s, want status %s attempts %d/%d last %d", m.upTo, showDelivery(d), m.status, m.attempts, m.total, m.lastCode)
		}
	}
}

// DeliveredThenDeadLettered is a round that succeeded and still ended in a
// dead letter: attempt 2 was delivered but its ack was lost, so the event
// came again, attempt 3 (the last allowed) failed, and the dispatcher
// dead-lettered the round. (A dead letter the reconciler writes for a final
// attempt whose outcome it cannot know, which was in fact delivered, looks
// the same.)
func DeliveredThenDeadLettered(eventID, destination string, seq uint64) []*switchyardv1.AuditRecord {
	return []*switchyardv1.AuditRecord{
		RoundAttempt(eventID, destination, seq, 1, base, 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
		RoundAttempt(eventID, destination, seq, 2, base.Add(time.Minute), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
		RoundAttempt(eventID, destination, seq, 3, base.Add(2*time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, true, ""),
		RoundDeadLetter(eventID, destination, seq, base.Add(2*time.Minute+time.Second), ""),
	}
}

// A delivered attempt outranks the dead letter (and the later failed
// attempts) of its round, in whatever order and batches the records come:
// the partner has the event, so the delivery must not be listed as
// dead-lettered (where a bulk replay would send it a second time).
func testDeliveredOutranksDeadLetter(t *testing.T, st store.Store) {
	migrate(t, st)
	want := func(eventID string, seq uint64) store.Delivery {
		delivered := base.Add(time.Minute + 2*time.Millisecond)
		return store.Delivery{
			EventID: eventID, Destination: "erp", Status: auditapi.StatusDelivered, Attempts: 3, TotalAttempts: 3,
			LastStatusCode: 503, LastError: "HTTP 503", FirstAttemptAt: ptr(base), LastAttemptAt: ptr(base.Add(2 * time.Minute)),
			DeliveredAt: ptr(delivered), DeadLetterID: fmt.Sprintf("EVENTS:%d:erp", seq), UpdatedAt: delivered,
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 16 {
		id := fmt.Sprint("ev-won-", trial)
		seq := uint64(3000 + trial)
		recs := DeliveredThenDeadLettered(id, "erp", seq)
		if trial%4 == 3 {
			// The reconciler's dead letter: the final attempt's record never
			// came (the dispatcher died during it).
			recs = append(recs[:2], recs[3])
		}
		writeShuffled(t, st, rng, recs, 3)
		w := want(id, seq)
		if trial%4 == 3 {
			w.Attempts, w.TotalAttempts, w.LastStatusCode, w.LastError, w.LastAttemptAt = 2, 2, 200, "", ptr(base.Add(time.Minute))
		}
		checkDelivery(t, delivery(t, st, id, "erp"), w)
	}
	dead, _, err := st.ListDeliveries(ctx(t), store.DeliveryFilter{Destination: "erp", Status: auditapi.StatusDeadLettered}, store.Page{})
	if err != nil || len(dead) != 0 {
		t.Errorf("dead-lettered deliveries = %+v (%v), want none: every round was delivered", dead, err)
	}
	if s, err := st.DestinationStatus(ctx(t), "erp", base.Add(-time.Hour)); err != nil || s.DeadLettered != 0 {
		t.Errorf("destination status = %+v (%v), want 0 dead-lettered", s, err)
	}
	// The dead letters themselves are kept and listed.
	dls, _, err := st.ListDeadLetters(ctx(t), store.DeadLetterFilter{Destination: "erp"}, store.Page{})
	if err != nil || len(dls) != 16 {
		t.Errorf("%d dead letters (%v), want 16", len(dls), err)
	}
	// A replay asked for anyway is a new round, and wins as before.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		ReplayRecord("replay-ev-won-0", "ev-won-0", "erp", "EVENTS:3000:erp", 9000, base.Add(time.Hour)),
	}})
	if d := delivery(t, st, "ev-won-0", "erp"); d.Status != auditapi.StatusReplayed {
		t.Errorf("after a replay: %s, want replayed", showDelivery(d))
	}
}

// A reconciled dead letter of an event EVENTS no longer held has no event
// id: an empty one (older dispatchers) or the placeholder
// unknown:EVENTS:<seq>. Both are stored under the placeholder and listed;
// neither makes a delivery row (which would be keyed by no event).
func testUnknownEventDeadLetters(t *testing.T, st store.Store) {
	migrate(t, st)
	empty := RoundDeadLetter("", "erp", 77, base, "")
	placeholder := RoundDeadLetter(store.UnknownEventID("EVENTS", 78), "erp", 78, base.Add(time.Second), "")
	// The same dead letter as 77, as a newer dispatcher sends it: the same row.
	again := RoundDeadLetter(store.UnknownEventID("EVENTS", 77), "erp", 77, base, "")
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{empty, placeholder}})
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{again, empty}})

	for seq, id := range map[uint64]string{77: "EVENTS:77:erp", 78: "EVENTS:78:erp"} {
		dl, err := st.GetDeadLetter(ctx(t), id)
		if err != nil || dl.EventID != fmt.Sprintf("unknown:EVENTS:%d", seq) || dl.Destination != "erp" {
			t.Errorf("dead letter %s = %+v (%v), want event id unknown:EVENTS:%d", id, dl, err, seq)
		}
	}
	dls, _, err := st.ListDeadLetters(ctx(t), store.DeadLetterFilter{Destination: "erp"}, store.Page{})
	if err != nil || len(dls) != 2 {
		t.Errorf("dead letters = %+v (%v), want the two", dls, err)
	}
	ds, _, err := st.ListDeliveries(ctx(t), store.DeliveryFilter{}, store.Page{})
	if err != nil || len(ds) != 0 {
		t.Errorf("deliveries = %+v (%v), want none for unknown events", ds, err)
	}
	if _, err := st.GetEvent(ctx(t), ""); !isNotFound(err) {
		t.Errorf("GetEvent(\"\") = %v, want ErrNotFound", err)
	}
	if d := get(t, st, "unknown:EVENTS:77"); len(d.DeadLetters) != 1 || len(d.Deliveries) != 0 || d.Event != nil {
		t.Errorf("detail of the placeholder = %+v, want its dead letter only", d)
	}
}

func testDeliveryPending(t *testing.T, st store.Store) {
	migrate(t, st)
	ev := Event("ev-routed", []byte(`{}`))
	ev.Destinations = []string{"erp", "crm"}
	write(t, st, store.Batch{Events: []store.Routed{ev}})
	d := get(t, st, "ev-routed")
	if len(d.Deliveries) != 2 {
		t.Fatalf("deliveries = %+v", d.Deliveries)
	}
	for _, x := range d.Deliveries {
		if x.Status != auditapi.StatusPending || x.Attempts != 0 || !x.UpdatedAt.Equal(base) {
			t.Errorf("routed delivery = %s, want pending since the event arrived", showDelivery(x))
		}
	}
	// The attempt moves it on; the event arriving again (or late, after
	// the attempt) does not move it back.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		Attempt("ev-routed", "erp", 1, base.Add(time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
	}})
	write(t, st, store.Batch{Events: []store.Routed{ev}})
	if x := delivery(t, st, "ev-routed", "erp"); x.Status != auditapi.StatusDelivered || x.Attempts != 1 {
		t.Errorf("erp = %s, want delivered", showDelivery(x))
	}
	if x := delivery(t, st, "ev-routed", "crm"); x.Status != auditapi.StatusPending {
		t.Errorf("crm = %s, want still pending", showDelivery(x))
	}
	// An attempt before its event: the event does not reset it to pending.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		Attempt("ev-late", "erp", 1, base, 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, false),
	}})
	late := Event("ev-late", nil)
	late.Destinations = []string{"erp"}
	write(t, st, store.Batch{Events: []store.Routed{late}})
	if x := delivery(t, st, "ev-late", "erp"); x.Status != auditapi.StatusRetrying {
		t.Errorf("ev-late = %s, want retrying", showDelivery(x))
	}
}

func testReplayBookkeeping(t *testing.T, st store.Store) {
	migrate(t, st)
	story := ReplayStory("ev-rp", "erp", 42, 97)
	write(t, st, store.Batch{Events: []store.Routed{Event("ev-rp", []byte(`{}`))}, Records: story[:4]})
	dl, err := st.GetDeadLetter(ctx(t), "EVENTS:42:erp")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Replays != 0 || dl.EventID != "ev-rp" {
		t.Errorf("dead letter before replay = %+v", dl)
	}
	write(t, st, store.Batch{Records: story[4:5]})
	write(t, st, store.Batch{Records: story[4:5]}) // recorded twice
	dl, err = st.GetDeadLetter(ctx(t), "EVENTS:42:erp")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Replays != 1 {
		t.Errorf("replays = %d after one replay recorded twice, want 1", dl.Replays)
	}
	d := get(t, st, "ev-rp")
	if len(d.Replays) != 1 {
		t.Fatalf("replays = %+v", d.Replays)
	}
	want := store.Replay{ID: "replay-ev-rp", DeadLetterID: "EVENTS:42:erp", EventID: "ev-rp", Destination: "erp",
		Subject: "replay.erp.webhooks.shop.order_created", StreamSeq: 97, RequestedBy: "test"}
	got := d.Replays[0]
	if !got.At.Equal(base.Add(time.Minute)) {
		t.Errorf("replay at %v", got.At)
	}
	got.At = time.Time{}
	if got != want {
		t.Errorf("replay = %+v\nwant %+v", got, want)
	}
	if x := delivery(t, st, "ev-rp", "erp"); x.Status != auditapi.StatusReplayed || x.ReplayOf != "EVENTS:42:erp" {
		t.Errorf("delivery after the replay = %s", showDelivery(x))
	}
	// The replay's own dead letter becomes the delivery's current one.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		RoundAttempt("ev-rp", "erp", 97, 1, base.Add(time.Hour), 400, switchyardv1.Outcome_OUTCOME_PERMANENT, true, "EVENTS:42:erp"),
		RoundDeadLetter("ev-rp", "erp", 97, base.Add(time.Hour), "EVENTS:42:erp"),
	}})
	x := delivery(t, st, "ev-rp", "erp")
	if x.Status != auditapi.StatusDeadLettered || x.DeadLetterID != "EVENTS:97:erp" || x.Attempts != 1 || x.TotalAttempts != 4 {
		t.Errorf("delivery after the replay failed = %s", showDelivery(x))
	}
	again, err := st.GetDeadLetter(ctx(t), "EVENTS:97:erp")
	if err != nil || again.ReplayOf != "EVENTS:42:erp" {
		t.Errorf("second dead letter = %+v, %v", again, err)
	}
	if _, err := st.GetDeadLetter(ctx(t), "EVENTS:1:nope"); !isNotFound(err) {
		t.Errorf("GetDeadLetter(unknown) = %v, want ErrNotFound", err)
	}
}

func testPark(t *testing.T, st store.Store) {
	migrate(t, st)
	ps := []store.Parked{
		{ID: "AUDIT:7", Stream: "AUDIT", Subject: "audit.other.x", StreamSeq: 7, Data: []byte{0xff, 0, 1}, Headers: map[string]string{"Nats-Msg-Id": "x"}, Error: "decode: bad", ParkedAt: base},
		{ID: "AUDIT:9", Stream: "AUDIT", Subject: "audit.rejected.shop", StreamSeq: 9, Data: []byte("x\x00"), Error: "check \x00 violated", ParkedAt: base.Add(time.Second)},
	}
	if err := st.Park(ctx(t), ps); err != nil {
		t.Fatal(err)
	}
	if err := st.Park(ctx(t), ps[:1]); err != nil { // parked twice: kept once
		t.Fatal(err)
	}
	got, next, err := st.ListParked(ctx(t), store.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || next != "" || got[0].ID != "AUDIT:9" || got[1].ID != "AUDIT:7" {
		t.Fatalf("parked = %+v (next %q)", got, next)
	}
	if string(got[1].Data) != string(ps[0].Data) || got[1].StreamSeq != 7 || got[1].Stream != "AUDIT" || got[1].Error != "decode: bad" || got[1].Headers["Nats-Msg-Id"] != "x" {
		t.Errorf("parked[1] = %+v", got[1])
	}
}

func testDestinationStatus(t *testing.T, st store.Store) {
	migrate(t, st)
	now := base.Add(time.Hour)
	var recs []*switchyardv1.AuditRecord
	// 20 attempts in the window: 1..20 ms; 15 delivered, 5 failed.
	for i := 1; i <= 20; i++ {
		outcome, code := switchyardv1.Outcome_OUTCOME_DELIVERED, 200
		if i%4 == 0 {
			outcome, code = switchyardv1.Outcome_OUTCOME_RETRYABLE, 503
		}
		rec := RoundAttempt(fmt.Sprint("ev-ds-", i), "erp", uint64(i), 1, now.Add(-time.Duration(30-i)*time.Minute), code, outcome, outcome == switchyardv1.Outcome_OUTCOME_DELIVERED, "")
		rec.GetDeliveryAttempt().Duration = durationpb.New(time.Duration(i) * time.Millisecond)
		recs = append(recs, rec)
	}
	// Before the window: not counted, and not the last error either.
	recs = append(recs, RoundAttempt("ev-old", "erp", 100, 1, now.Add(-2*time.Hour), 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""))
	recs = append(recs, RoundDeadLetter("ev-ds-4", "erp", 4, now, ""))
	recs = append(recs,
		&switchyardv1.AuditRecord{Id: "cc-1", Time: timestamppb.New(now.Add(-20 * time.Minute)), Detail: &switchyardv1.AuditRecord_CircuitChanged{
			CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", From: switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED, To: switchyardv1.CircuitState_CIRCUIT_STATE_OPEN}}},
		&switchyardv1.AuditRecord{Id: "cc-2", Time: timestamppb.New(now.Add(-10 * time.Minute)), Detail: &switchyardv1.AuditRecord_CircuitChanged{
			CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", From: switchyardv1.CircuitState_CIRCUIT_STATE_OPEN, To: switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN}}},
		RoundAttempt("ev-crm", "crm", 1, 1, now, 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
	)
	write(t, st, store.Batch{Records: recs})

	got, err := st.DestinationStatus(ctx(t), "erp", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 20 || got.Delivered != 15 || got.SuccessRate != 0.75 {
		t.Errorf("attempts %d delivered %d rate %v, want 20 15 0.75", got.Attempts, got.Delivered, got.SuccessRate)
	}
	if got.P95LatencyMS != 19 {
		t.Errorf("p95 = %v ms, want 19 (nearest rank of 1..20 ms)", got.P95LatencyMS)
	}
	if got.Breaker != "half_open" || got.BreakerSince == nil || !got.BreakerSince.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("breaker = %q since %v, want half_open since the latest change", got.Breaker, got.BreakerSince)
	}
	if got.LastError != "HTTP 503" || got.LastErrorAt == nil || !got.LastErrorAt.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("last error = %q at %v", got.LastError, got.LastErrorAt)
	}
	if got.DeadLettered != 1 {
		t.Errorf("dead lettered = %d, want 1", got.DeadLettered)
	}
	crm, err := st.DestinationStatus(ctx(t), "crm", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if crm.Breaker != "closed" || crm.LastError != "" || crm.Attempts != 1 || crm.SuccessRate != 1 || crm.P95LatencyMS != 1 {
		t.Errorf("crm = %+v", crm)
	}
	none, err := st.DestinationStatus(ctx(t), "unknown", now.Add(-time.Hour))
	if err != nil || none.Attempts != 0 || none.SuccessRate != 0 || none.Breaker != "closed" {
		t.Errorf("unknown destination = %+v, %v", none, err)
	}
	names, err := st.Destinations(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"crm", "erp"}) {
		t.Errorf("destinations = %v, want [crm erp]", names)
	}
}
