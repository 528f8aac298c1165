package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Headers of a replay request.
const (
	// HeaderIdempotencyKey names one replay request: the same key replays
	// a dead letter once, however often it is sent (within the EVENTS
	// duplicate window).
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderRequestedBy says who asked, for the audit log.
	HeaderRequestedBy = auditapi.HeaderRequestedBy
)

// MaxRequestedBy bounds the Switchyard-Requested-By value kept in the
// audit record, in bytes.
const MaxRequestedBy = 200

// CleanRequestedBy makes a caller's name safe for the audit record: valid
// UTF-8 without control characters, at most MaxRequestedBy bytes; "api"
// when nothing is left.
func CleanRequestedBy(s string) string {
	if v := strings.TrimSpace(untrusted.Text(s, MaxRequestedBy)); v != "" {
		return v
	}
	return "api"
}

// ErrPayloadGone is returned when neither the events table nor the
// DEAD_LETTERS stream still holds the payload of a dead letter.
var ErrPayloadGone = errors.New("the payload is no longer kept")

// replayer republishes dead letters to their destination's replay subject.
type replayer struct {
	cfg Config
}

// MsgID is the replay's Nats-Msg-Id. The key names the request: "k:" and
// the client's Idempotency-Key, or else one more than the number of
// replays of this dead letter recorded before the duplicate window. So a
// double click or a retried request gets the same id as the first and
// JetStream stores it once; a replay asked for after the window gets the
// next number and goes out. (Within the window, a client that means it
// sends a fresh Idempotency-Key: the CLI's --force.)
func MsgID(deadLetterID, key string) string { return "replay:" + deadLetterID + ":" + key }

// Replay sends one dead letter again and records it.
func (r *replayer) Replay(ctx context.Context, dl store.DeadLetter, key, requestedBy string) (auditapi.ReplayResult, error) {
	res := auditapi.ReplayResult{DeadLetterID: dl.ID, EventID: dl.EventID, Destination: dl.Destination}
	if r.cfg.JS == nil {
		return res, apiError(http.StatusServiceUnavailable, auditapi.CodeUnavailable, "replay needs NATS, and this API has no connection")
	}
	payload, headers, subject, earlier, err := r.source(ctx, dl)
	if err != nil {
		return res, err
	}
	if key != "" {
		key = "k:" + key
	} else {
		settled := 0
		for _, rp := range earlier {
			if rp.DeadLetterID == dl.ID && rp.At.Before(r.cfg.Now().Add(-r.cfg.Topology.DuplicateWindow)) {
				settled++
			}
		}
		key = strconv.Itoa(settled + 1)
	}
	res.MsgID = MsgID(dl.ID, key)
	res.Subject = events.ReplaySubject(dl.Destination, subject)
	requestedBy = CleanRequestedBy(requestedBy)
	// The record is made, and checked to encode, before the replay goes
	// out: a replay must never be published without its record.
	rec := &switchyardv1.AuditRecord{
		Id:      "replayed:" + res.MsgID,
		Time:    timestamppb.New(r.cfg.Now()),
		Service: "auditor",
		Detail: &switchyardv1.AuditRecord_Replayed{Replayed: &switchyardv1.Replayed{
			DeadLetterId: dl.ID, EventId: dl.EventID, Destination: dl.Destination,
			Subject: res.Subject, RequestedBy: requestedBy,
		}},
	}
	if err := auditlog.Check(rec); err != nil {
		return res, fmt.Errorf("replay of %s not sent: %w", dl.ID, err)
	}
	m := nats.NewMsg(res.Subject)
	for k, v := range headers {
		if !strings.HasPrefix(k, "Nats-") {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set(events.HeaderEventID, dl.EventID)
	m.Header.Set(events.HeaderReplayOf, dl.ID)
	ctx, span := r.startReplay(ctx, m, dl)
	defer span.End()
	m.Header.Set(nats.MsgIdHdr, res.MsgID)
	m.Data = payload
	// The request's context bounds it; a PubAck lost to a leader change is
	// waited for again under the same Nats-Msg-Id.
	ack, err := publish.Msg(ctx, r.cfg.JS, m)
	if err != nil {
		return res, fmt.Errorf("publish replay of %s: %w", dl.ID, err)
	}
	res.StreamSeq, res.Duplicate = ack.Sequence, ack.Duplicate
	// Recorded even for a duplicate publish (same record id, so stored
	// once): the first request may have died between the two.
	rec.GetReplayed().StreamSeq = ack.Sequence
	if r.cfg.Audit != nil {
		if err := r.cfg.Audit.Emit(ctx, rec); err != nil {
			// The replay went out unrecorded: the caller is told to send
			// the same request again, which publishes nothing new (same
			// Nats-Msg-Id within the duplicate window) and records it.
			r.cfg.Logger.ErrorContext(ctx, "replay sent but its audit record was not", slog.String("dead_letter_id", dl.ID), slog.Any("error", err))
			return res, apiError(http.StatusServiceUnavailable, auditapi.CodeUnavailable, fmt.Sprintf(
				"dead letter %q was replayed (%s) but its audit record could not be published (%v): send the same request again to record it",
				dl.ID, res.MsgID, err))
		}
	}
	// Also straight into the store, so that the replay count (and the next
	// replay's key) is right at once even while the writer is behind.
	if err := r.cfg.Store.Write(ctx, store.Batch{Records: []*switchyardv1.AuditRecord{rec}}); err != nil {
		r.cfg.Logger.WarnContext(ctx, "replay not yet in the audit store; the writer will add it", slog.String("dead_letter_id", dl.ID), slog.Any("error", err))
	}
	r.cfg.Logger.InfoContext(ctx, "dead letter replayed", slog.String("dead_letter_id", dl.ID), slog.String("event_id", dl.EventID),
		slog.String("destination", dl.Destination), slog.String("msg_id", res.MsgID), slog.Bool("duplicate", res.Duplicate),
		slog.String("requested_by", requestedBy))
	return res, nil
}

// source finds the payload, headers and original subject of a dead letter
// (and the event's recorded replays): from the events table; when retention
// dropped the body there, from the DEAD_LETTERS stream, which carries the
// payload; and when the dead letter carries none because it was too large
// (payload_omitted), or DEAD_LETTERS no longer holds it, from EVENTS by
// stream sequence while EVENTS keeps the message.
func (r *replayer) source(ctx context.Context, dl store.DeadLetter) ([]byte, map[string]string, string, []store.Replay, error) {
	d, err := r.cfg.Store.GetEvent(ctx, dl.EventID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, "", nil, err
	}
	if d.Event != nil && d.Event.Payload != nil && r.sameMessage(ctx, dl, d.Event) {
		h := d.Event.Headers
		if h == nil {
			h = map[string]string{}
		}
		if d.Event.ContentType != "" {
			h[events.HeaderContentType] = d.Event.ContentType
		}
		return d.Event.Payload, h, d.Event.Subject, d.Replays, nil
	}
	if strings.HasPrefix(dl.EventID, store.UnknownEventPrefix) {
		return nil, nil, "", nil, apiError(http.StatusGone, auditapi.CodePayloadGone, fmt.Sprintf(
			"dead letter %q has no payload: its event was no longer in EVENTS when it was dead-lettered, so neither its id nor its body is known", dl.ID))
	}
	full, err := r.fromStream(ctx, dl)
	switch {
	case err == nil && !full.PayloadOmitted:
		return full.Payload, full.Headers, originalSubject(dl), d.Replays, nil
	case err != nil && !errors.Is(err, ErrPayloadGone):
		return nil, nil, "", nil, err
	}
	raw, err := r.fromEvents(ctx, dl)
	if err != nil {
		return nil, nil, "", nil, err
	}
	h := map[string]string{}
	for k := range raw.Header {
		h[k] = raw.Header.Get(k)
	}
	return raw.Data, h, originalSubject(dl), d.Replays, nil
}

// maxReplayChain bounds the dead letters followed back through ReplayOf
// to the one of the original message.
const maxReplayChain = 32

// sameMessage reports whether ev, the events table's row for the dead
// letter's event id, is the EVENTS message the dead letter was made from:
// an id can be used again (a publish-API key after the idempotency
// horizon, a pkg/events id after the duplicate window, a recreated
// stream), and the table keeps the first message. A replay's dead letter
// is traced back to the dead letter of the original message, whose stream
// sequence and incarnation the row must have. When it cannot tell, the
// answer is no: the dead letter's own copy of the payload is used.
func (r *replayer) sameMessage(ctx context.Context, dl store.DeadLetter, ev *store.Event) bool {
	root := dl
	for range maxReplayChain {
		if root.ReplayOf == "" {
			break
		}
		parent, err := r.cfg.Store.GetDeadLetter(ctx, root.ReplayOf)
		if err != nil {
			return false
		}
		root = parent
	}
	if root.ReplayOf != "" || root.StreamSeq != ev.StreamSeq {
		return false
	}
	inc := store.DeadLetterIncarnation(root.ID)
	return inc == "" || ev.Incarnation == "" || inc == ev.Incarnation
}

// fromEvents reads the message the dead letter was made from out of EVENTS
// by its stream sequence, checking that it is the same event.
func (r *replayer) fromEvents(ctx context.Context, dl store.DeadLetter) (*jetstream.RawStreamMsg, error) {
	stream, err := r.cfg.JS.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", natsx.StreamEvents, err)
	}
	raw, err := stream.GetMsg(ctx, dl.StreamSeq)
	if natsx.IsNotFound(err) {
		return nil, r.gone(dl)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s #%d: %w", natsx.StreamEvents, dl.StreamSeq, err)
	}
	if id := events.FromMsg(raw.Subject, raw.Header, raw.Data).ID; id != dl.EventID {
		// The stream was recreated and the sequence reused.
		return nil, r.gone(dl)
	}
	if inc := store.DeadLetterIncarnation(dl.ID); inc != "" && inc != store.Incarnation(stream.CachedInfo().Created) {
		// The same id at the same sequence of another stream.
		return nil, r.gone(dl)
	}
	return raw, nil
}

// originalSubject is the subject the event was first stored on: a replay's
// dead letter carries the replay subject.
func originalSubject(dl store.DeadLetter) string {
	if rest, ok := strings.CutPrefix(dl.Subject, "replay."+dl.Destination+"."); ok {
		return rest
	}
	return dl.Subject
}

// fromStream reads the dead letter from DEAD_LETTERS: an ordered consumer
// on the destination's subject from shortly before it was stored, until
// the message whose Nats-Msg-Id is the dead letter id.
func (r *replayer) fromStream(ctx context.Context, dl store.DeadLetter) (*switchyardv1.DeadLetter, error) {
	start := dl.DeadLetteredAt.Add(-time.Minute)
	cons, err := r.cfg.JS.OrderedConsumer(ctx, natsx.StreamDeadLetters, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"dlq." + dl.Destination},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		if natsx.IsNotFound(err) {
			return nil, r.gone(dl)
		}
		return nil, fmt.Errorf("read %s: %w", natsx.StreamDeadLetters, err)
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", natsx.StreamDeadLetters, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(nats.MsgIdHdr) != dl.ID {
				continue
			}
			var full switchyardv1.DeadLetter
			if err := proto.Unmarshal(m.Data(), &full); err != nil {
				return nil, fmt.Errorf("decode dead letter %s: %w", dl.ID, err)
			}
			return &full, nil
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("read %s: %w", natsx.StreamDeadLetters, err)
		}
		if n == 0 {
			return nil, r.gone(dl)
		}
	}
}

func (r *replayer) gone(dl store.DeadLetter) error {
	return &apiErr{status: http.StatusGone, body: auditapi.Error{Code: auditapi.CodePayloadGone, Message: fmt.Sprintf(
		"%v: retention dropped the body of event %q, and neither DEAD_LETTERS (dead letter %q) nor EVENTS (#%d) holds it any more",
		ErrPayloadGone, dl.EventID, dl.ID, dl.StreamSeq)}, cause: ErrPayloadGone}
}

func requestedBy(c echo.Context) string {
	return CleanRequestedBy(c.Request().Header.Get(HeaderRequestedBy))
}

// configured reports whether destination is configured here: a replay goes
// to replay.<destination>.>, which only a configured destination's
// consumer reads.
func (h *handlers) configured(destination string) bool {
	return slices.Contains(h.cfg.Destinations, destination)
}

func (h *handlers) notConfigured(status int, what, destination string) error {
	names := "none"
	if len(h.cfg.Destinations) > 0 {
		names = strings.Join(h.cfg.Destinations, ", ")
	}
	return apiError(status, auditapi.CodeDestinationNotConfigured, fmt.Sprintf(
		"%s destination %q, which is not configured (configured: %s): no dispatcher would deliver the replay. "+
			"Configure the destination again to replay to it.", what, destination, names))
}

// replayOne is POST /v1/dead-letters/{id}/replay.
func (h *handlers) replayOne(c echo.Context) error {
	res, err := h.replayDeadLetter(c.Request().Context(), param(c, "id"),
		strings.TrimSpace(c.Request().Header.Get(HeaderIdempotencyKey)), requestedBy(c))
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	return c.JSON(status, res)
}

// replayDeadLetter replays dead letter id, if its destination is still
// configured.
func (h *handlers) replayDeadLetter(ctx context.Context, id, key, by string) (auditapi.ReplayResult, error) {
	dl, err := h.store.GetDeadLetter(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return auditapi.ReplayResult{}, apiError(http.StatusNotFound, auditapi.CodeNotFound, "no dead letter with id "+strconv.Quote(id))
	}
	if err != nil {
		return auditapi.ReplayResult{}, err
	}
	if !h.configured(dl.Destination) {
		return auditapi.ReplayResult{}, h.notConfigured(http.StatusConflict, "dead letter "+strconv.Quote(dl.ID)+" belongs to", dl.Destination)
	}
	return h.replay.Replay(ctx, dl, key, by)
}

// MaxBulkReplay bounds one bulk replay request.
const MaxBulkReplay = 1000

// replayBulk is POST /v1/dead-letters/replay: replay the current dead
// letter of every delivery that matches and ended dead-lettered. A
// delivery that was replayed is "replayed" (or further on) at once, so
// sending the same request twice does not replay anything twice.
func (h *handlers) replayBulk(c echo.Context) error {
	var req auditapi.BulkReplayRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	out, err := h.bulkReplay(c.Request().Context(), req, strings.TrimSpace(c.Request().Header.Get(HeaderIdempotencyKey)), requestedBy(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// bulkReplay replays (or with DryRun counts) what req matches, within the
// time budget.
func (h *handlers) bulkReplay(ctx context.Context, req auditapi.BulkReplayRequest, key, by string) (auditapi.BulkReplayResult, error) {
	var none auditapi.BulkReplayResult
	if req.Destination == "" {
		return none, badRequest("destination is required: a bulk replay goes to one destination")
	}
	if !h.configured(req.Destination) {
		return none, h.notConfigured(http.StatusUnprocessableEntity, "the bulk replay names", req.Destination)
	}
	if req.Limit == 0 {
		req.Limit = 100
	}
	if req.Limit < 0 || req.Limit > MaxBulkReplay {
		return none, badRequest(fmt.Sprintf("limit must be 1-%d", MaxBulkReplay))
	}
	f := store.DeliveryFilter{Destination: req.Destination, Status: auditapi.StatusDeadLettered, EventID: req.EventID, Source: req.Source, Q: req.Q}
	if req.Since != nil {
		f.Since = *req.Since
	}
	if req.Until != nil {
		f.Until = *req.Until
	}
	var matched []store.Delivery
	for p := (store.Page{Limit: min(req.Limit, store.MaxLimit)}); len(matched) < req.Limit; {
		ds, next, err := h.store.ListDeliveries(ctx, f, p)
		if err != nil {
			return none, err
		}
		matched = append(matched, ds...)
		if next == "" {
			break
		}
		p.Cursor = next
	}
	matched = matched[:min(len(matched), req.Limit)]
	out := auditapi.BulkReplayResult{Matched: len(matched), DryRun: req.DryRun, Results: []auditapi.ReplayResult{}}
	deadline := time.Now().Add(h.cfg.BulkReplayBudget)
	for i, d := range matched {
		if i > 0 && !req.DryRun && time.Now().After(deadline) {
			// The answer must go out before the server's write timeout:
			// the rest are left for the next request, which will match
			// them again (what was replayed here no longer matches).
			out.Incomplete, out.Remaining = true, len(matched)-i
			break
		}
		res := auditapi.ReplayResult{DeadLetterID: d.DeadLetterID, EventID: d.EventID, Destination: d.Destination}
		dl, err := h.store.GetDeadLetter(ctx, d.DeadLetterID)
		if err == nil && !req.DryRun {
			res, err = h.replay.Replay(ctx, dl, key, by)
		}
		switch {
		case err != nil:
			res.Error = err.Error()
			out.Failed++
		case !req.DryRun && !res.Duplicate:
			out.Replayed++
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}
