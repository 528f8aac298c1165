package alerting

import (
	"testing"
	"time"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
)

var (
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	settings = Settings{GroupWait: 30 * time.Second, GroupInterval: 5 * time.Minute, RepeatInterval: 4 * time.Hour, Retention: time.Hour}
	erp      = map[string]string{"destination": "erp"}
)

func dl(count int64, lastAt time.Time) rules.Condition {
	return rules.Condition{Rule: rules.DeliveryDeadLettered, Labels: erp, Firing: true, Severity: rules.Critical,
		Count: count, Digest: true, ResolveAfter: 30 * time.Minute, ClearSince: lastAt}
}

func quiet(lastAt time.Time) rules.Condition {
	c := dl(0, lastAt)
	c.Firing, c.Clear = false, true
	return c
}

// send makes and completes the message due now, and returns its kind.
func send(t *testing.T, a *switchyardv1.Alert, c rules.Condition, now time.Time, delivered bool) string {
	t.Helper()
	kind := Next(a, "slack", c, now, settings)
	if kind == "" {
		return ""
	}
	p := MakePending(a, "slack", kind, c.Count, now)
	if Next(a, "slack", c, now.Add(10*time.Hour), settings) != "" {
		t.Fatal("a second message was due while one is in flight")
	}
	if !Done(a, "slack", p.Sequence, delivered, now) {
		t.Fatal("Done refused the message in flight")
	}
	if Done(a, "slack", p.Sequence, delivered, now) {
		t.Fatal("Done accepted the same message twice")
	}
	return kind
}

func TestDeadLetterLifecycle(t *testing.T) {
	t.Parallel()
	a, changed := Step(nil, dl(1, t0), t0)
	if !changed || !Firing(a) || a.Episode != 1 || a.Fingerprint != Fingerprint(rules.DeliveryDeadLettered, erp) {
		t.Fatalf("first dead letter: %v", a)
	}
	if got := send(t, a, dl(1, t0), t0.Add(29*time.Second), true); got != "" {
		t.Errorf("message %q before the group wait", got)
	}
	if got := send(t, a, dl(3, t0), t0.Add(30*time.Second), true); got != KindFiring {
		t.Errorf("after the group wait: %q, want firing", got)
	}
	// 97 more: a digest, but not before the group interval.
	if got := send(t, a, dl(100, t0.Add(time.Minute)), t0.Add(2*time.Minute), true); got != "" {
		t.Errorf("message %q within the group interval", got)
	}
	if got := send(t, a, dl(100, t0.Add(time.Minute)), t0.Add(5*time.Minute+30*time.Second), true); got != KindUpdate {
		t.Errorf("news after the group interval: %q, want update", got)
	}
	if got := send(t, a, dl(100, t0.Add(time.Minute)), t0.Add(11*time.Minute), true); got != "" {
		t.Errorf("message %q without news", got)
	}
	if got := send(t, a, dl(100, t0.Add(time.Minute)), t0.Add(4*time.Hour+6*time.Minute), true); got != KindRepeat {
		t.Errorf("4h after the last message: %q, want repeat", got)
	}

	// No dead letter for 30 minutes: resolved.
	last := t0.Add(4*time.Hour + 10*time.Minute)
	if _, changed := Step(a, dl(101, last), last); changed {
		t.Error("a new dead letter changed a firing alert's state")
	}
	if a, _ = Step(a, quiet(last), last.Add(29*time.Minute)); !Firing(a) || !a.ClearSince.AsTime().Equal(last) {
		t.Fatalf("29 minutes quiet: %v", a)
	}
	if a, _ = Step(a, quiet(last), last.Add(30*time.Minute)); Firing(a) || a.ResolvedAt == nil {
		t.Fatalf("30 minutes quiet: %v", a)
	}
	end := last.Add(30 * time.Minute)
	if Settled(a, []string{"slack"}, end.Add(2*time.Hour), settings) {
		t.Error("settled before the resolved message went")
	}
	if got := send(t, a, quiet(last), end, true); got != KindResolved {
		t.Errorf("after resolving: %q, want resolved", got)
	}
	if got := send(t, a, quiet(last), end.Add(time.Hour), true); got != "" {
		t.Errorf("a second %q after resolving", got)
	}
	if Settled(a, []string{"slack"}, end.Add(59*time.Minute), settings) || !Settled(a, []string{"slack"}, end.Add(time.Hour), settings) {
		t.Error("Settled does not follow the retention")
	}

	// It fires again: a new episode, a new firing message.
	again := end.Add(2 * time.Hour)
	a, _ = Step(a, dl(1, again), again)
	if a.Episode != 2 || !a.FirstSeen.AsTime().Equal(again) {
		t.Fatalf("second episode: %v", a)
	}
	if got := send(t, a, dl(1, again), again.Add(time.Minute), true); got != KindFiring {
		t.Errorf("second episode: %q, want firing", got)
	}
}

func TestNoResolvedMessageWithoutAFiringOne(t *testing.T) {
	t.Parallel()
	a, _ := Step(nil, dl(1, t0), t0)
	// Slack refused the firing message for good (invalid_payload).
	if got := send(t, a, dl(1, t0), t0.Add(time.Minute), false); got != KindFiring {
		t.Fatalf("firing: %q", got)
	}
	a, _ = Step(a, quiet(t0), t0.Add(31*time.Minute))
	if Firing(a) {
		t.Fatal("not resolved")
	}
	if got := Next(a, "slack", quiet(t0), t0.Add(32*time.Minute), settings); got != "" {
		t.Errorf("%q for an alert whose firing message was never accepted", got)
	}
	// An alert that resolves inside the group wait tells nobody anything.
	b, _ := Step(nil, dl(1, t0), t0)
	c := quiet(t0)
	c.ResolveAfter = 10 * time.Second
	b, _ = Step(b, c, t0.Add(20*time.Second))
	if Firing(b) || Next(b, "slack", c, t0.Add(time.Hour), settings) != "" {
		t.Errorf("a short blip: %v", b)
	}
	if !Settled(b, []string{"slack"}, t0.Add(2*time.Hour), settings) {
		t.Error("a blip nobody heard of is not settled")
	}
}

func TestHysteresisAndEscalation(t *testing.T) {
	t.Parallel()
	cond := func(firing, clear bool, sev string) rules.Condition {
		return rules.Condition{Rule: rules.PartnerErrorRateHigh, Labels: erp, Firing: firing, Clear: clear, Severity: sev, ResolveAfter: 10 * time.Minute}
	}
	a, _ := Step(nil, cond(true, false, rules.Warning), t0)
	if got := send(t, a, cond(true, false, rules.Warning), t0.Add(30*time.Second), true); got != KindFiring {
		t.Fatalf("firing: %q", got)
	}
	a, changed := Step(a, cond(true, false, rules.Critical), t0.Add(time.Minute))
	if !changed || a.Severity != rules.Critical {
		t.Fatalf("escalation: %v", a)
	}
	if got := send(t, a, cond(true, false, rules.Critical), t0.Add(6*time.Minute), true); got != KindUpdate {
		t.Errorf("escalated: %q, want update", got)
	}
	// Clear for 9 minutes, back in the band, clear again: the clock
	// restarts.
	a, _ = Step(a, cond(false, true, rules.Warning), t0.Add(10*time.Minute))
	a, _ = Step(a, cond(false, true, rules.Warning), t0.Add(19*time.Minute))
	if !Firing(a) {
		t.Fatal("resolved after 9 minutes")
	}
	a, _ = Step(a, cond(false, false, rules.Warning), t0.Add(20*time.Minute))
	if a.ClearSince != nil {
		t.Error("the band did not reset the clear time")
	}
	a, _ = Step(a, cond(false, true, rules.Warning), t0.Add(21*time.Minute))
	a, _ = Step(a, cond(false, true, rules.Warning), t0.Add(30*time.Minute))
	if !Firing(a) {
		t.Fatal("resolved 9 minutes after the band")
	}
	a, _ = Step(a, cond(false, true, rules.Warning), t0.Add(31*time.Minute))
	if Firing(a) {
		t.Fatal("not resolved 10 minutes after the band")
	}
	if a.Severity != rules.Critical {
		t.Errorf("severity %s, want the episode's highest", a.Severity)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	a := Fingerprint("R", map[string]string{"destination": "erp", "source": "shop"})
	b := Fingerprint("R", map[string]string{"source": "shop", "destination": "erp"})
	if a != b || len(a) != 24 {
		t.Errorf("fingerprints %q %q", a, b)
	}
	for _, other := range []string{
		Fingerprint("R2", map[string]string{"destination": "erp", "source": "shop"}),
		Fingerprint("R", map[string]string{"destination": "erp"}),
		Fingerprint("R", map[string]string{"destination": "erp\x00source=shop"}),
	} {
		if other == a {
			t.Errorf("collision with %q", other)
		}
	}
}

// The page of episode 1 waits for the receiver while the alert resolves
// and fires again: once it goes, episode 1 is told resolved (late), then
// episode 2 paged.
// latePage is an alert whose first page is still in flight while it
// resolved and fired again at again.
func latePage(t *testing.T) (a *switchyardv1.Alert, page *switchyardv1.PendingNotification, again time.Time) {
	t.Helper()
	a, _ = Step(nil, dl(1, t0), t0)
	page = MakePending(a, "slack", Next(a, "slack", dl(1, t0), t0.Add(time.Minute), settings), 1, t0.Add(time.Minute))
	a, _ = Step(a, quiet(t0), t0.Add(31*time.Minute))
	again = t0.Add(40 * time.Minute)
	a, _ = Step(a, dl(1, again), again)
	return a, page, again
}

func TestLatePageIsResolvedBeforeTheNextEpisode(t *testing.T) {
	t.Parallel()
	a, p, again := latePage(t)
	if a.Episode != 2 || !Firing(a) {
		t.Fatalf("second episode: %v", a)
	}
	if !Done(a, "slack", p.Sequence, true, again.Add(time.Minute)) {
		t.Fatal("Done refused the late page")
	}
	now := again.Add(2 * time.Minute)
	kind := Next(a, "slack", dl(1, again), now, settings)
	if kind != KindResolved {
		t.Fatalf("after the late page: %q, want resolved (episode 1)", kind)
	}
	r := MakePending(a, "slack", kind, 1, now)
	if r.Episode != 1 || !Late(a, r) {
		t.Errorf("the resolved message is of episode %d (late %v), want 1", r.Episode, Late(a, r))
	}
	Done(a, "slack", r.Sequence, true, now)
	if got := send(t, a, dl(1, again), now, true); got != KindFiring {
		t.Errorf("then: %q, want the second episode's page", got)
	}
	if got := Next(a, "slack", dl(1, again), now.Add(time.Minute), settings); got != "" {
		t.Errorf("then %q, want nothing until it resolves", got)
	}
}

// The same, but the second episode ended too before the late page went:
// episode 1 is still told resolved; episode 2, over before anyone could
// be told, is not paged after the fact.
func TestLatePageIsResolvedAfterTheNextEpisodeEnded(t *testing.T) {
	t.Parallel()
	a, p, again := latePage(t)
	a, _ = Step(a, quiet(again), again.Add(31*time.Minute))
	if a.Episode != 2 || Firing(a) {
		t.Fatalf("second episode over: %v", a)
	}
	now := again.Add(time.Hour)
	Done(a, "slack", p.Sequence, true, now)
	if got := send(t, a, quiet(again), now, true); got != KindResolved {
		t.Fatalf("after the late page: %q, want resolved (episode 1)", got)
	}
	if got := Next(a, "slack", quiet(again), now.Add(time.Minute), settings); got != "" {
		t.Errorf("then %q, want nothing", got)
	}
	if !Settled(a, []string{"slack"}, now.Add(2*time.Hour), settings) {
		t.Error("not settled after the late resolved message")
	}
}
