// Package silences stores alert silences in a NATS KV bucket: a silence
// mutes every alert whose labels its matchers match, until a time. The
// auditor's admin API and the CLI write them; every notifier replica
// watches the bucket and consults it before it sends a message.
package silences

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Labels are the alert labels a matcher may name.
var Labels = []string{"rule", "destination", "source", "severity"}

// MaxDuration bounds a silence: one that outlives everyone's memory of it
// hides the next real outage.
const MaxDuration = 90 * 24 * time.Hour

// Retention is how long an ended silence stays listed before it is removed.
const Retention = 7 * 24 * time.Hour

// ErrNotFound means no silence has the id.
var ErrNotFound = errors.New("silence not found")

// ErrInvalid wraps every problem with a silence a caller asked for; the
// text says what to change.
var ErrInvalid = errors.New("invalid silence")

// Spec is what a caller asks for.
type Spec struct {
	// Matchers, all of which must match ("destination=erp",
	// "rule=~Partner.*").
	Matchers []*switchyardv1.SilenceMatcher
	// StartsAt defaults to now.
	StartsAt time.Time
	// EndsAt is required and must be in the future.
	EndsAt    time.Time
	CreatedBy string
	Comment   string
}

// Store reads and writes silences.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// Open creates or updates the bucket as t declares it (topology.Silences)
// and returns a store.
func Open(ctx context.Context, js jetstream.JetStream, t topology.Topology) (*Store, error) {
	cfg := t.Silences().Config
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", cfg.Bucket, err)
	}
	return &Store{kv: kv, now: time.Now}, nil
}

// WithClock returns a copy of s that reads the time from now.
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.now = now
	return &c
}

// ParseMatcher reads name=value, name!=value, name=~regex or name!~regex.
// The value may be quoted ("erp|crm") and may then use Go escapes.
func ParseMatcher(s string) (*switchyardv1.SilenceMatcher, error) {
	bad := fmt.Errorf("%w: matcher %q must look like destination=erp, rule!=AuditLag, destination=~\"erp|crm\" or source!~\"test-.*\"", ErrInvalid, s)
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < 'a' || r > 'z') && r != '_' })
	if i <= 0 {
		return nil, bad
	}
	name, rest := t[:i], strings.TrimLeft(t[i:], " ")
	var op switchyardv1.SilenceMatchOp
	for _, o := range []struct {
		tok string
		op  switchyardv1.SilenceMatchOp
	}{
		// Two-character operators first: "=~" also starts with "=".
		{"!=", switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_EQUAL},
		{"=~", switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_REGEX},
		{"!~", switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_REGEX},
		{"=", switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_EQUAL},
	} {
		if strings.HasPrefix(rest, o.tok) {
			op, rest = o.op, rest[len(o.tok):]
			break
		}
	}
	if op == switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_UNSPECIFIED {
		return nil, bad
	}
	v := strings.TrimSpace(rest)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		u, err := strconv.Unquote(v)
		if err != nil {
			return nil, fmt.Errorf("%w: matcher %q: the quoted value is not a valid Go string", ErrInvalid, s)
		}
		v = u
	}
	m := &switchyardv1.SilenceMatcher{Name: name, Value: v, Op: op}
	return m, checkMatcher(m)
}

// FormatMatcher is the inverse of ParseMatcher.
func FormatMatcher(m *switchyardv1.SilenceMatcher) string {
	op := map[switchyardv1.SilenceMatchOp]string{
		switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_EQUAL:     "=",
		switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_EQUAL: "!=",
		switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_REGEX:     "=~",
		switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_REGEX: "!~",
	}[m.GetOp()]
	v := m.GetValue()
	// Quote a value that would not read back as itself.
	if v != strings.TrimSpace(v) || strings.HasPrefix(v, "~") || strings.HasPrefix(v, `"`) || strings.ContainsAny(v, "\n\r") {
		v = strconv.Quote(v)
	}
	return m.GetName() + op + v
}

func checkMatcher(m *switchyardv1.SilenceMatcher) error {
	if !slices.Contains(Labels, m.GetName()) {
		return fmt.Errorf("%w: matcher label %q: must be one of %s", ErrInvalid, m.GetName(), strings.Join(Labels, ", "))
	}
	switch m.GetOp() {
	case switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_EQUAL, switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_EQUAL:
	case switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_REGEX, switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_REGEX:
		if _, err := compile(m.GetValue()); err != nil {
			return fmt.Errorf("%w: matcher %s: %v", ErrInvalid, FormatMatcher(m), err)
		}
	default:
		return fmt.Errorf("%w: matcher on %q has no operator", ErrInvalid, m.GetName())
	}
	return nil
}

func compile(expr string) (*regexp.Regexp, error) {
	if len(expr) > 1024 {
		return nil, errors.New("regular expression longer than 1024 bytes")
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// Create validates spec and stores a new silence.
func (s *Store) Create(ctx context.Context, spec Spec) (*switchyardv1.Silence, error) {
	now := s.now()
	if spec.StartsAt.IsZero() {
		spec.StartsAt = now
	}
	if len(spec.Matchers) == 0 {
		return nil, fmt.Errorf("%w: give at least one matcher, e.g. destination=erp (a silence without one would mute every alert)", ErrInvalid)
	}
	for _, m := range spec.Matchers {
		if err := checkMatcher(m); err != nil {
			return nil, err
		}
	}
	switch {
	case spec.EndsAt.IsZero():
		return nil, fmt.Errorf("%w: an end time is required", ErrInvalid)
	case !spec.EndsAt.After(now):
		return nil, fmt.Errorf("%w: the end time %s is not in the future", ErrInvalid, spec.EndsAt.UTC().Format(time.RFC3339))
	case !spec.EndsAt.After(spec.StartsAt):
		return nil, fmt.Errorf("%w: the end time must be after the start time", ErrInvalid)
	case spec.EndsAt.Sub(spec.StartsAt) > MaxDuration:
		return nil, fmt.Errorf("%w: a silence may last at most %d days", ErrInvalid, int(MaxDuration/(24*time.Hour)))
	case len(spec.Comment) > 1024 || len(spec.CreatedBy) > 256:
		return nil, fmt.Errorf("%w: comment (1024 bytes) or created_by (256 bytes) too long", ErrInvalid)
	}
	sil := &switchyardv1.Silence{
		Id:        ulid.Make().String(),
		Matchers:  spec.Matchers,
		StartsAt:  timestamppb.New(spec.StartsAt),
		EndsAt:    timestamppb.New(spec.EndsAt),
		CreatedAt: timestamppb.New(now),
		CreatedBy: spec.CreatedBy,
		Comment:   spec.Comment,
	}
	data, err := proto.Marshal(sil)
	if err != nil {
		return nil, err
	}
	if _, err := s.kv.Create(ctx, sil.Id, data); err != nil {
		return nil, fmt.Errorf("store silence: %w", err)
	}
	return sil, nil
}

// Get returns one silence.
func (s *Store) Get(ctx context.Context, id string) (*switchyardv1.Silence, error) {
	sil, _, err := s.get(ctx, id)
	return sil, err
}

func (s *Store) get(ctx context.Context, id string) (*switchyardv1.Silence, uint64, error) {
	if !validID(id) {
		return nil, 0, ErrNotFound
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read silence %s: %w", id, err)
	}
	var sil switchyardv1.Silence
	if err := proto.Unmarshal(e.Value(), &sil); err != nil {
		return nil, 0, fmt.Errorf("decode silence %s: %w", id, err)
	}
	return &sil, e.Revision(), nil
}

// validID accepts what Create makes (ULIDs), so that a request cannot name
// a key outside the bucket's key syntax.
func validID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil
}

// List returns every silence, newest first, and removes the ones that ended
// more than Retention ago.
func (s *Store) List(ctx context.Context) ([]*switchyardv1.Silence, error) {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	var out []*switchyardv1.Silence
	for k := range keys.Keys() {
		sil, rev, err := s.get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.now().Sub(sil.GetEndsAt().AsTime()) > Retention {
			// Another lister may have removed it first; either is fine.
			_ = s.kv.Delete(ctx, k, jetstream.LastRevision(rev))
			continue
		}
		out = append(out, sil)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() > out[j].GetId() })
	return out, nil
}

// Expire ends a silence now. Expiring one that has ended changes nothing.
func (s *Store) Expire(ctx context.Context, id, by string) (*switchyardv1.Silence, error) {
	for {
		sil, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		now := s.now()
		if !sil.GetEndsAt().AsTime().After(now) {
			return sil, nil
		}
		sil.EndsAt = timestamppb.New(now)
		if sil.GetStartsAt().AsTime().After(now) {
			sil.StartsAt = sil.EndsAt
		}
		sil.ExpiredBy = by
		data, err := proto.Marshal(sil)
		if err != nil {
			return nil, err
		}
		_, err = s.kv.Update(ctx, id, data, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return nil, fmt.Errorf("expire silence %s: %w", id, err)
		}
		return sil, nil
	}
}

// State is pending, active or expired at now.
func State(sil *switchyardv1.Silence, now time.Time) string {
	switch {
	case now.Before(sil.GetStartsAt().AsTime()):
		return "pending"
	case now.Before(sil.GetEndsAt().AsTime()):
		return "active"
	default:
		return "expired"
	}
}

// Matches reports whether every matcher of sil matches labels. A missing
// label is the empty string, as in Alertmanager.
func Matches(sil *switchyardv1.Silence, labels map[string]string) bool {
	for _, m := range sil.GetMatchers() {
		v := labels[m.GetName()]
		var ok bool
		switch m.GetOp() {
		case switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_EQUAL:
			ok = v == m.GetValue()
		case switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_EQUAL:
			ok = v != m.GetValue()
		case switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_REGEX, switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_NOT_REGEX:
			re, err := compileCached(m.GetValue())
			if err != nil {
				return false
			}
			ok = re.MatchString(v) == (m.GetOp() == switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_REGEX)
		}
		if !ok {
			return false
		}
	}
	return len(sil.GetMatchers()) > 0
}

var regexCache sync.Map // string -> *regexp.Regexp

func compileCached(expr string) (*regexp.Regexp, error) {
	if re, ok := regexCache.Load(expr); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := compile(expr)
	if err != nil {
		return nil, err
	}
	regexCache.Store(expr, re)
	return re, nil
}

// Set is a live copy of the bucket, kept current by a KV watch.
type Set struct {
	mu   sync.RWMutex
	byID map[string]*switchyardv1.Silence
}

// Watch keeps a Set current until ctx is done, watching the bucket again
// (and logging it to log, if not nil) whenever the watch stops. It returns
// once the current silences are loaded.
func (s *Store) Watch(ctx context.Context, log *slog.Logger) (*Set, error) {
	set := &Set{byID: map[string]*switchyardv1.Silence{}}
	if err := natsx.WatchKV(ctx, s.kv, natsx.KVWatch{Apply: set.apply, Logger: log}); err != nil {
		return nil, fmt.Errorf("watch silences: %w", err)
	}
	return set, nil
}

// Follow calls fn with every silence in the bucket, then with each one
// stored or changed, until ctx is done (watching again after a NATS
// reconnect, which hands every current silence to fn again). Calls come
// from one goroutine. It returns once the current silences were handed
// over, or with the error of the first attempt to watch.
func (s *Store) Follow(ctx context.Context, log *slog.Logger, fn func(*switchyardv1.Silence)) error {
	return natsx.WatchKV(ctx, s.kv, natsx.KVWatch{Logger: log, Apply: func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			return
		}
		var sil switchyardv1.Silence
		if err := proto.Unmarshal(e.Value(), &sil); err == nil {
			fn(&sil)
		}
	}})
}

// Changes are the audit records a stored silence stands for: its creation
// and, when a person ended it early, its expiry. Their ids are derived from
// the silence, so a silence seen again gives records that are already
// stored.
func Changes(sil *switchyardv1.Silence) []*switchyardv1.AuditRecord {
	rec := func(action, by string, at *timestamppb.Timestamp) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{
			Id:   "silence:" + sil.GetId() + ":" + action,
			Time: at,
			Detail: &switchyardv1.AuditRecord_SilenceChanged{SilenceChanged: &switchyardv1.SilenceChanged{
				Action: action, Silence: sil, By: by,
			}},
		}
	}
	out := []*switchyardv1.AuditRecord{rec(ActionCreated, sil.GetCreatedBy(), sil.GetCreatedAt())}
	if sil.GetExpiredBy() != "" {
		out = append(out, rec(ActionExpired, sil.GetExpiredBy(), sil.GetEndsAt()))
	}
	return out
}

// Actions of SilenceChanged records.
const (
	ActionCreated = "created"
	ActionExpired = "expired"
)

func (set *Set) apply(e jetstream.KeyValueEntry) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(set.byID, e.Key())
		return
	}
	var sil switchyardv1.Silence
	if err := proto.Unmarshal(e.Value(), &sil); err != nil {
		return // not ours to fix; it mutes nothing
	}
	set.byID[e.Key()] = &sil
}

// Muting returns the id of an active silence that matches labels at now,
// or "".
func (set *Set) Muting(labels map[string]string, now time.Time) string {
	set.mu.RLock()
	defer set.mu.RUnlock()
	ids := make([]string, 0, len(set.byID))
	for id := range set.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		sil := set.byID[id]
		if State(sil, now) == "active" && Matches(sil, labels) {
			return id
		}
	}
	return ""
}
