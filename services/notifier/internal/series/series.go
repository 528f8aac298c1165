// Package series aggregates audit records into what the alert rules read:
// per destination, source or audited service, fine time buckets of attempt
// counts and latency histograms (the rolling windows), coarse latency
// histograms (the trailing baseline), the dead-letter run, and the latest
// breaker state, backlog and audit-lag reports.
//
// A Series is both the state kept in KV and the delta a notifier replica
// accumulates between two flushes: Merge adds a delta to the state, so
// several replicas reading different records of the same destination add
// up. Counts add; "latest" values (breaker state, reports) keep the one
// with the later record time.
package series

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/subjects"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Series kinds.
const (
	KindDestination = "destination"
	KindSource      = "source"
	KindAudit       = "audit"
)

// Step is the width of a fine bucket, the resolution of every window.
const Step = config.AlertBucket

// CoarseStep is the width of a baseline bucket.
const CoarseStep = 5 * time.Minute

// MaxRecentDeadLetters bounds the dead-letter ids kept to count a record
// read twice once.
const MaxRecentDeadLetters = 256

// KeyPrefix starts every series key in the state bucket.
const KeyPrefix = "series."

// Key is the KV key of a series.
func Key(kind, name string) string { return KeyPrefix + kind + "." + subjects.Token(name) }

// Target says which series a record feeds, if any.
func Target(rec *switchyardv1.AuditRecord) (kind, name string, ok bool) {
	switch d := rec.Detail.(type) {
	case *switchyardv1.AuditRecord_DeliveryAttempt:
		return KindDestination, d.DeliveryAttempt.GetDestination(), d.DeliveryAttempt.GetDestination() != ""
	case *switchyardv1.AuditRecord_DeadLettered:
		return KindDestination, d.DeadLettered.GetDestination(), d.DeadLettered.GetDestination() != ""
	case *switchyardv1.AuditRecord_CircuitChanged:
		return KindDestination, d.CircuitChanged.GetDestination(), d.CircuitChanged.GetDestination() != ""
	case *switchyardv1.AuditRecord_Backlog:
		return KindDestination, d.Backlog.GetDestination(), d.Backlog.GetDestination() != ""
	case *switchyardv1.AuditRecord_WebhookRejected:
		if !SignatureRejection(d.WebhookRejected) {
			return "", "", false
		}
		return KindSource, d.WebhookRejected.GetSource(), d.WebhookRejected.GetSource() != ""
	case *switchyardv1.AuditRecord_WebhookDuplicate:
		if !SuspectedReplay(d.WebhookDuplicate) {
			return "", "", false
		}
		return KindSource, d.WebhookDuplicate.GetSource(), d.WebhookDuplicate.GetSource() != ""
	case *switchyardv1.AuditRecord_AuditLag:
		return KindAudit, rec.GetService(), true
	case *switchyardv1.AuditRecord_PollRound:
		return KindSource, d.PollRound.GetSource(), d.PollRound.GetSource() != ""
	case *switchyardv1.AuditRecord_PayloadQuarantined:
		// A publish API key's series is a source series named after the
		// key: the two share no names (config.Validate).
		name := cmp.Or(d.PayloadQuarantined.GetSource(), d.PayloadQuarantined.GetApiKey())
		return KindSource, name, name != ""
	case *switchyardv1.AuditRecord_PayloadsValid:
		name := cmp.Or(d.PayloadsValid.GetSource(), d.PayloadsValid.GetApiKey())
		return KindSource, name, name != ""
	}
	return "", "", false
}

// SignatureRejection reports whether a rejection means the request did not
// prove it came from the partner: the SignatureFailures rule counts these.
// A malformed signature header (or undecodable Basic credentials) is one
// too: ingress answers it 401 like a bad signature. Other malformed
// requests (a body that could not be read, a publish-API request that is
// not valid) are answered 400 and say nothing about the credentials.
func SignatureRejection(r *switchyardv1.WebhookRejected) bool {
	switch r.GetReason() {
	case switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
		switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE,
		switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP,
		switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED:
		return true
	case switchyardv1.RejectReason_REJECT_REASON_MALFORMED:
		return r.GetStatusCode() == http.StatusUnauthorized
	}
	return false
}

// SuspectedReplay reports whether a duplicate is a signed body sent again
// under a fresh delivery id (ingress recognised it by the body's hash): the
// signature was valid, but the request did not come from the partner as
// sent, so the SignatureFailures rule counts it with the refusals.
func SuspectedReplay(d *switchyardv1.WebhookDuplicate) bool {
	return d.GetVia() == switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH
}

// New returns an empty series.
func New(kind, name string) *switchyardv1.Series {
	return &switchyardv1.Series{Kind: kind, Name: name}
}

// Apply adds one record to a delta. seen is when the notifier read it: dead
// letters are timed by it (a dead letter read late after an outage of the
// notifier must still page), everything else by its own time, never later
// than seen.
func Apply(d *switchyardv1.Series, rec *switchyardv1.AuditRecord, seen time.Time) {
	at := seen
	if t := rec.GetTime(); t != nil && t.AsTime().Before(seen) {
		at = t.AsTime()
	}
	switch x := rec.Detail.(type) {
	case *switchyardv1.AuditRecord_DeliveryAttempt:
		applyAttempt(d, x.DeliveryAttempt, at, seen)
	case *switchyardv1.AuditRecord_DeadLettered:
		applyDeadLetter(d, rec.GetId(), x.DeadLettered, seen)
	case *switchyardv1.AuditRecord_CircuitChanged:
		c := x.CircuitChanged
		d.Circuit = ObserveCircuit(d.Circuit, &switchyardv1.CircuitStatus{
			State: c.GetTo(), ObservedAt: timestamppb.New(at), Reason: c.GetReason(), LastError: c.GetLastError(),
		})
	case *switchyardv1.AuditRecord_Backlog:
		if d.BacklogAt == nil || !at.Before(d.BacklogAt.AsTime()) {
			d.Backlog, d.BacklogAt = x.Backlog, timestamppb.New(at)
		}
		// The report carries the breaker's state when it was measured: it
		// mends a lost (or never sent) CircuitChanged record.
		if st := x.Backlog.GetCircuit(); st != switchyardv1.CircuitState_CIRCUIT_STATE_UNSPECIFIED {
			d.Circuit = ObserveCircuit(d.Circuit, &switchyardv1.CircuitStatus{State: st, ObservedAt: timestamppb.New(at)})
		}
	case *switchyardv1.AuditRecord_AuditLag:
		if d.AuditLagAt == nil || !at.Before(d.AuditLagAt.AsTime()) {
			d.AuditLag, d.AuditLagAt = x.AuditLag, timestamppb.New(at)
		}
	case *switchyardv1.AuditRecord_PollRound:
		d.Poll = MergePoll(d.Poll, pollObservation(x.PollRound, at))
	case *switchyardv1.AuditRecord_PayloadQuarantined:
		applyMalformed(d, rec.GetId(), x.PayloadQuarantined, at)
	case *switchyardv1.AuditRecord_PayloadsValid:
		m := malformedRun(d)
		if m.ValidAt == nil || at.After(m.ValidAt.AsTime()) {
			m.ValidAt = timestamppb.New(at)
		}
	case *switchyardv1.AuditRecord_WebhookRejected:
		r := x.WebhookRejected
		// A summary from ingress's rejection audit limit stands for
		// Summarized rejections.
		bucket(d, at).Rejections += max(1, r.GetSummarized())
		text := r.GetReason().String()
		if r.GetDetail() != "" {
			text += ": " + r.GetDetail()
		}
		setLatest(&d.LastFailure, &switchyardv1.LastFailure{At: timestamppb.New(at), StatusCode: r.GetStatusCode(), Error: text, EventId: r.GetEventId()})
	case *switchyardv1.AuditRecord_WebhookDuplicate:
		if !SuspectedReplay(x.WebhookDuplicate) {
			return
		}
		bucket(d, at).Rejections++
		text := "suspected replay: a body stored before on " + x.WebhookDuplicate.GetSubject() + " sent again under a new delivery id"
		setLatest(&d.LastFailure, &switchyardv1.LastFailure{At: timestamppb.New(at), StatusCode: 200, Error: text, EventId: x.WebhookDuplicate.GetEventId()})
	}
}

func malformedRun(d *switchyardv1.Series) *switchyardv1.MalformedRun {
	if d.Malformed == nil {
		d.Malformed = &switchyardv1.MalformedRun{}
	}
	return d.Malformed
}

// applyMalformed adds a payload that broke its contract to a delta: its
// count, its earliest and its latest.
func applyMalformed(d *switchyardv1.Series, _ string, p *switchyardv1.PayloadQuarantined, at time.Time) {
	m := malformedRun(d)
	m.Total++
	ts := timestamppb.New(at)
	if m.FirstAt == nil || at.Before(m.FirstAt.AsTime()) {
		m.FirstAt = ts
	}
	if m.LastAt == nil || !at.Before(m.LastAt.AsTime()) {
		m.LastAt, m.LastEventId = ts, p.GetEventId()
		m.LastError = "(none recorded)"
		if vs := p.GetViolations(); len(vs) > 0 {
			path := vs[0].GetPath()
			if path == "" {
				path = "/"
			}
			m.LastError = path + ": " + vs[0].GetMessage()
		}
		if p.GetRejected() {
			m.LastError += " (answered 422)"
		}
	}
}

// mergeMalformed adds a delta's malformed payloads to the state. A run is
// the malformed payloads since valid ones last flowed, or since a gap of
// at least gap without one.
func mergeMalformed(state *switchyardv1.Series, d *switchyardv1.MalformedRun, gap time.Duration) {
	if d == nil {
		return
	}
	s := malformedRun(state)
	if d.ValidAt != nil && (s.ValidAt == nil || d.ValidAt.AsTime().After(s.ValidAt.AsTime())) {
		s.ValidAt = d.ValidAt
	}
	if d.GetTotal() == 0 {
		return
	}
	ended := s.LastAt == nil || (s.ValidAt != nil && !s.LastAt.AsTime().After(s.ValidAt.AsTime())) ||
		(gap > 0 && d.GetFirstAt().AsTime().Sub(s.LastAt.AsTime()) >= gap)
	if ended {
		s.RunStartTotal, s.RunStartedAt = s.Total, d.FirstAt
	}
	s.Total += d.Total
	if s.LastAt == nil || !d.GetLastAt().AsTime().Before(s.LastAt.AsTime()) {
		s.LastAt, s.LastEventId, s.LastError = d.LastAt, d.LastEventId, d.LastError
	}
}

func applyAttempt(d *switchyardv1.Series, a *switchyardv1.DeliveryAttempt, at, seen time.Time) {
	if s := a.GetStartedAt(); s != nil && s.AsTime().Before(seen) {
		at = s.AsTime()
	}
	b := bucket(d, at)
	b.Attempts++
	fail := &switchyardv1.LastFailure{At: timestamppb.New(at), StatusCode: a.GetStatusCode(), Error: a.GetError(), EventId: a.GetEventId()}
	if a.GetOutcome() == switchyardv1.Outcome_OUTCOME_RETRYABLE {
		b.Retryable++
		setLatest(&d.LastFailure, fail)
	}
	if AuthFailure(a.GetAuthFailure(), a.GetStatusCode()) {
		b.AuthFailures++
		setLatest(&d.LastAuthFailure, fail)
	}
	if dur := a.GetDuration(); dur != nil {
		i := LatencyIndex(dur.AsDuration())
		if b.Latency == nil {
			b.Latency = map[int32]int64{}
		}
		b.Latency[i]++
		c := coarse(d, at)
		if c.Latency == nil {
			c.Latency = map[int32]int64{}
		}
		c.Latency[i]++
	}
}

func applyDeadLetter(d *switchyardv1.Series, recID string, dl *switchyardv1.DeadLetter, seen time.Time) {
	id := dl.GetId()
	if id == "" {
		id = recID
	}
	r := d.DeadLetters
	if r == nil {
		r = &switchyardv1.DeadLetterRun{RunStartedAt: timestamppb.New(seen)}
		d.DeadLetters = r
	}
	if slices.Contains(r.RecentIds, id) {
		return
	}
	// In a delta, recent_ids are exactly the dead letters it holds: Merge
	// counts the ones the state has not seen.
	r.RecentIds = append(r.RecentIds, id)
	r.Total++
	r.LastAt = timestamppb.New(seen)
	r.LastId, r.LastEventId, r.LastError, r.LastTraceId = id, dl.GetEventId(), dl.GetLastError(), dl.GetTraceId()
	r.LastStatusCode, r.LastReason = dl.GetLastStatusCode(), dl.GetReason().String()
	if code := dl.GetLastStatusCode(); AuthFailure(dl.GetAuthFailure(), code) {
		// One refused delivery of a quiet partner is enough to say its
		// credentials fail: there may be no other attempt for hours.
		bucket(d, seen).AuthDeadLetters++
		setLatest(&d.LastAuthFailure, &switchyardv1.LastFailure{At: timestamppb.New(seen), StatusCode: code, Error: dl.GetLastError(), EventId: dl.GetEventId()})
	}
}

// AuthFailure reports whether an attempt (or the last attempt of a dead
// letter) failed on the destination's credentials: the dispatcher says so
// (auth_failure, which also covers an OAuth2 token endpoint refusing the
// client, with no status code of the destination's own), or the destination
// answered 401 or 403.
func AuthFailure(flagged bool, status int32) bool {
	return flagged || status == http.StatusUnauthorized || status == http.StatusForbidden
}

// ObserveCircuit combines what is known of a breaker (cur, nil if nothing)
// with one more observation of it (a CircuitChanged record, or the state a
// BacklogReport carries) and returns the result. The observation with the
// latest time decides the state (at the same time, the state further from
// closed),
// whatever the order they are combined in, so that replicas merging their
// parts agree and a lost CircuitChanged record is mended by the next
// report. changed_at is as close as the observations at hand tell: the
// first observation of the state after one of another, moved earlier by an
// older observation of the same state and later by an older one of another.
func ObserveCircuit(cur, obs *switchyardv1.CircuitStatus) *switchyardv1.CircuitStatus {
	if obs == nil {
		return cur
	}
	at := obs.GetObservedAt().AsTime()
	// began is when obs says its state began: a merged part knows, a single
	// observation is its own beginning.
	began := at
	if obs.GetChangedAt() != nil && obs.GetChangedAt().AsTime().Before(at) {
		began = obs.GetChangedAt().AsTime()
	}
	if cur == nil {
		c := proto.Clone(obs).(*switchyardv1.CircuitStatus)
		c.ChangedAt = timestamppb.New(began)
		return c
	}
	seen := cur.GetObservedAt().AsTime()
	if cur.GetObservedAt() == nil {
		// Written before observed_at existed: its change is its latest
		// observation.
		seen = cur.GetChangedAt().AsTime()
	}
	c := proto.Clone(cur).(*switchyardv1.CircuitStatus)
	switch {
	case obs.GetState() == cur.GetState():
		c.ObservedAt = timestamppb.New(maxTime(at, seen))
		if began.Before(c.GetChangedAt().AsTime()) {
			c.ChangedAt = timestamppb.New(began)
		}
		if c.Reason == "" && c.LastError == "" {
			c.Reason, c.LastError = obs.GetReason(), obs.GetLastError()
		}
	case at.After(seen) || (at.Equal(seen) && obs.GetState() > cur.GetState()):
		// Newer: the breaker changed since, and not before cur's state was
		// last seen.
		c = proto.Clone(obs).(*switchyardv1.CircuitStatus)
		if !began.After(seen) {
			began = at
		}
		c.ChangedAt = timestamppb.New(began)
	case at.After(c.GetChangedAt().AsTime()):
		// Older, of another state: the current one began after it.
		c.ChangedAt = timestamppb.New(at)
	}
	return c
}

// pollObservation is what one poll round says of its source; nil for a
// round that says nothing about the partner (interrupted: shutdown, a lost
// lease).
func pollObservation(r *switchyardv1.PollRound, at time.Time) *switchyardv1.PollHealth {
	ts := timestamppb.New(at)
	switch r.GetStatus() {
	case switchyardv1.PollStatus_POLL_STATUS_UNSPECIFIED, switchyardv1.PollStatus_POLL_STATUS_INTERRUPTED:
		return nil
	case switchyardv1.PollStatus_POLL_STATUS_OK:
		return &switchyardv1.PollHealth{FirstRoundAt: ts, LastSuccessAt: ts}
	}
	return &switchyardv1.PollHealth{
		FirstRoundAt: ts, FailingSince: ts, LastFailureStatus: r.GetStatus(),
		LastFailure: &switchyardv1.LastFailure{At: ts, StatusCode: r.GetStatusCode(), Error: r.GetError()},
	}
}

// MergePoll combines two views of a polled source's health (nil: none)
// into a new one, whatever their order: the first round, the latest
// success, the latest failure, and the earliest failure known after the
// latest success.
func MergePoll(a, b *switchyardv1.PollHealth) *switchyardv1.PollHealth {
	if b == nil {
		return a
	}
	if a == nil {
		return proto.Clone(b).(*switchyardv1.PollHealth)
	}
	out := proto.Clone(a).(*switchyardv1.PollHealth)
	if out.FirstRoundAt == nil || (b.FirstRoundAt != nil && b.FirstRoundAt.AsTime().Before(out.FirstRoundAt.AsTime())) {
		out.FirstRoundAt = b.FirstRoundAt
	}
	if b.LastSuccessAt != nil && (out.LastSuccessAt == nil || b.LastSuccessAt.AsTime().After(out.LastSuccessAt.AsTime())) {
		out.LastSuccessAt = b.LastSuccessAt
	}
	if f := b.GetLastFailure(); f != nil && (out.LastFailure == nil || f.GetAt().AsTime().After(out.LastFailure.GetAt().AsTime())) {
		out.LastFailure, out.LastFailureStatus = proto.Clone(f).(*switchyardv1.LastFailure), b.LastFailureStatus
	}
	out.FailingSince = nil
	for _, t := range []*timestamppb.Timestamp{a.FailingSince, b.FailingSince, a.GetLastFailure().GetAt(), b.GetLastFailure().GetAt()} {
		if t == nil || (out.LastSuccessAt != nil && !t.AsTime().After(out.LastSuccessAt.AsTime())) {
			continue
		}
		if out.FailingSince == nil || t.AsTime().Before(out.FailingSince.AsTime()) {
			out.FailingSince = t
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func setLatest(dst **switchyardv1.LastFailure, f *switchyardv1.LastFailure) {
	if *dst == nil || !f.GetAt().AsTime().Before((*dst).GetAt().AsTime()) {
		*dst = f
	}
}

func bucketStart(t time.Time, step time.Duration) int64 {
	s := int64(step / time.Second)
	u := t.Unix()
	return u - ((u%s)+s)%s
}

// bucket returns the fine bucket holding t, adding it in order if needed.
func bucket(d *switchyardv1.Series, t time.Time) *switchyardv1.SeriesBucket {
	return findOrInsert(&d.Buckets, bucketStart(t, Step), func(start int64) *switchyardv1.SeriesBucket {
		return &switchyardv1.SeriesBucket{Start: start}
	})
}

// coarse returns the baseline bucket holding t.
func coarse(d *switchyardv1.Series, t time.Time) *switchyardv1.LatencyBucket {
	return findOrInsert(&d.Baseline, bucketStart(t, CoarseStep), func(start int64) *switchyardv1.LatencyBucket {
		return &switchyardv1.LatencyBucket{Start: start}
	})
}

// findOrInsert finds the bucket starting at start in a list sorted by
// start, or inserts a new one in its place. Records mostly arrive in time
// order, so it looks from the end.
func findOrInsert[B interface{ GetStart() int64 }](list *[]B, start int64, newBucket func(int64) B) B {
	i := len(*list)
	for i > 0 && (*list)[i-1].GetStart() > start {
		i--
	}
	if i > 0 && (*list)[i-1].GetStart() == start {
		return (*list)[i-1]
	}
	b := newBucket(start)
	*list = slices.Insert(*list, i, b)
	return b
}

// Limits say how much history a series keeps.
type Limits struct {
	// Window is the longest rolling window of the series' rules.
	Window time.Duration
	// BaselineWindow is the latency rule's trailing baseline.
	BaselineWindow time.Duration
	// RunGap is the dead-letter rule's resolve time: a dead letter after a
	// longer quiet period starts a new run.
	RunGap time.Duration
	// MalformedGap is the MalformedPayloads rule's quiet_after: a
	// malformed payload after a longer quiet period starts a new run.
	MalformedGap time.Duration
}

// Merge adds delta to state (which it changes and returns; nil starts an
// empty one) and drops what is older than the limits keep.
func Merge(state, delta *switchyardv1.Series, now time.Time, lim Limits) *switchyardv1.Series {
	if state == nil {
		state = New(delta.GetKind(), delta.GetName())
	}
	for _, b := range delta.GetBuckets() {
		add(bucket(state, time.Unix(b.Start, 0)), b)
	}
	for _, b := range delta.GetBaseline() {
		c := coarse(state, time.Unix(b.Start, 0))
		c.Latency = addHist(c.Latency, b.Latency)
	}
	mergeDeadLetters(state, delta.GetDeadLetters(), lim.RunGap)
	if c := delta.GetCircuit(); c != nil {
		state.Circuit = ObserveCircuit(state.Circuit, c)
	}
	if delta.GetBacklogAt() != nil && (state.BacklogAt == nil || !delta.GetBacklogAt().AsTime().Before(state.BacklogAt.AsTime())) {
		state.Backlog, state.BacklogAt = delta.Backlog, delta.BacklogAt
	}
	if delta.GetAuditLagAt() != nil && (state.AuditLagAt == nil || !delta.GetAuditLagAt().AsTime().Before(state.AuditLagAt.AsTime())) {
		state.AuditLag, state.AuditLagAt = delta.AuditLag, delta.AuditLagAt
	}
	if delta.GetAuditorConsumerAt() != nil && (state.AuditorConsumerAt == nil || !delta.GetAuditorConsumerAt().AsTime().Before(state.AuditorConsumerAt.AsTime())) {
		state.AuditorConsumer, state.AuditorConsumerAt = delta.AuditorConsumer, delta.AuditorConsumerAt
	}
	if f := delta.GetLastFailure(); f != nil {
		setLatest(&state.LastFailure, f)
	}
	state.Poll = MergePoll(state.Poll, delta.GetPoll())
	mergeMalformed(state, delta.GetMalformed(), lim.MalformedGap)
	if f := delta.GetLastAuthFailure(); f != nil {
		setLatest(&state.LastAuthFailure, f)
	}
	Prune(state, now, lim)
	state.UpdatedAt = timestamppb.New(now)
	return state
}

// Prune drops buckets the limits no longer keep.
func Prune(s *switchyardv1.Series, now time.Time, lim Limits) {
	oldest := bucketStart(now.Add(-lim.Window), Step) - int64(Step/time.Second)
	s.Buckets = slices.DeleteFunc(s.Buckets, func(b *switchyardv1.SeriesBucket) bool { return b.Start < oldest })
	oldestCoarse := bucketStart(now.Add(-lim.Window-lim.BaselineWindow), CoarseStep) - int64(CoarseStep/time.Second)
	s.Baseline = slices.DeleteFunc(s.Baseline, func(b *switchyardv1.LatencyBucket) bool { return b.Start < oldestCoarse })
}

func add(dst, src *switchyardv1.SeriesBucket) {
	dst.Attempts += src.Attempts
	dst.Retryable += src.Retryable
	dst.AuthFailures += src.AuthFailures
	dst.Rejections += src.Rejections
	dst.AuthDeadLetters += src.AuthDeadLetters
	dst.Latency = addHist(dst.Latency, src.Latency)
}

func addHist(dst, src map[int32]int64) map[int32]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[int32]int64, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

func mergeDeadLetters(state *switchyardv1.Series, d *switchyardv1.DeadLetterRun, gap time.Duration) {
	if d == nil {
		return
	}
	r := state.DeadLetters
	if r == nil {
		r = &switchyardv1.DeadLetterRun{}
		state.DeadLetters = r
	}
	var fresh int64
	for _, id := range d.RecentIds {
		if !slices.Contains(r.RecentIds, id) {
			r.RecentIds = append(r.RecentIds, id)
			fresh++
		}
	}
	if over := len(r.RecentIds) - MaxRecentDeadLetters; over > 0 {
		r.RecentIds = slices.Delete(r.RecentIds, 0, over)
	}
	if fresh == 0 {
		return
	}
	if r.LastAt == nil || d.GetRunStartedAt().AsTime().Sub(r.LastAt.AsTime()) >= gap {
		r.RunStartTotal = r.Total
		r.RunStartedAt = d.RunStartedAt
	}
	r.Total += fresh
	if r.LastAt == nil || !d.GetLastAt().AsTime().Before(r.LastAt.AsTime()) {
		r.LastAt, r.LastId, r.LastEventId, r.LastError, r.LastTraceId = d.LastAt, d.LastId, d.LastEventId, d.LastError, d.LastTraceId
		r.LastStatusCode, r.LastReason = d.LastStatusCode, d.LastReason
	}
}

// Totals are the sums over a window.
type Totals struct {
	Attempts, Retryable, AuthFailures, Rejections, AuthDeadLetters int64
	Latency                                                        map[int32]int64
}

// Window sums the fine buckets of the last w before now.
func Window(s *switchyardv1.Series, now time.Time, w time.Duration) Totals {
	from := bucketStart(now.Add(-w), Step)
	var t Totals
	for _, b := range s.GetBuckets() {
		if b.Start < from || b.Start > now.Unix() {
			continue
		}
		t.Attempts += b.Attempts
		t.Retryable += b.Retryable
		t.AuthFailures += b.AuthFailures
		t.Rejections += b.Rejections
		t.AuthDeadLetters += b.AuthDeadLetters
		t.Latency = addHist(t.Latency, b.Latency)
	}
	return t
}

// Baseline returns the latency histogram of the baseline window that ends
// where the current window begins.
func Baseline(s *switchyardv1.Series, now time.Time, window, baseline time.Duration) map[int32]int64 {
	end := now.Add(-window).Unix()
	from := bucketStart(now.Add(-window-baseline), CoarseStep)
	var h map[int32]int64
	for _, b := range s.GetBaseline() {
		if b.Start >= from && b.Start+int64(CoarseStep/time.Second) <= end {
			h = addHist(h, b.Latency)
		}
	}
	return h
}

// Latency histogram: index i holds durations up to 2^(i/4) ms, so a
// quantile read from it is at most 19% above the true value.
const (
	latencySteps    = 4
	maxLatencyIndex = 100 // 2^25 ms, about 9 hours
)

// LatencyIndex is the histogram index of d.
func LatencyIndex(d time.Duration) int32 {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 1 {
		return 0
	}
	i := int32(math.Ceil(math.Log2(ms) * latencySteps))
	return min(i, maxLatencyIndex)
}

// LatencyValue is the upper bound of index i.
func LatencyValue(i int32) time.Duration {
	return time.Duration(math.Pow(2, float64(i)/latencySteps) * float64(time.Millisecond))
}

// Quantile returns the q-quantile (0.95 for the p95) of a histogram, and the
// number of samples in it.
func Quantile(h map[int32]int64, q float64) (time.Duration, int64) {
	var n int64
	idx := make([]int32, 0, len(h))
	for i, c := range h {
		n += c
		idx = append(idx, i)
	}
	if n == 0 {
		return 0, 0
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	rank := int64(math.Ceil(q * float64(n)))
	var cum int64
	for _, i := range idx {
		cum += h[i]
		if cum >= rank {
			return LatencyValue(i), n
		}
	}
	return LatencyValue(idx[len(idx)-1]), n
}
