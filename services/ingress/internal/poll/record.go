package poll

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

var protoStatus = map[Status]switchyardv1.PollStatus{
	StatusOK:          switchyardv1.PollStatus_POLL_STATUS_OK,
	StatusTimeout:     switchyardv1.PollStatus_POLL_STATUS_TIMEOUT,
	StatusUnavailable: switchyardv1.PollStatus_POLL_STATUS_UNAVAILABLE,
	StatusRateLimited: switchyardv1.PollStatus_POLL_STATUS_RATE_LIMITED,
	StatusCredentials: switchyardv1.PollStatus_POLL_STATUS_CREDENTIALS,
	StatusRejected:    switchyardv1.PollStatus_POLL_STATUS_REJECTED,
	StatusBadAnswer:   switchyardv1.PollStatus_POLL_STATUS_BAD_ANSWER,
	StatusStoreFailed: switchyardv1.PollStatus_POLL_STATUS_STORE_FAILED,
	StatusInterrupted: switchyardv1.PollStatus_POLL_STATUS_INTERRUPTED,
}

// Record is the round's audit record (audit.poll.<source>). Its id is a
// new ULID: a round is recorded once, by the replica that ran it.
func (r Round) Record() *switchyardv1.AuditRecord {
	pr := &switchyardv1.PollRound{
		Source:          r.Source,
		Status:          protoStatus[r.Status],
		StartedAt:       timestamppb.New(r.Started),
		Took:            durationpb.New(r.Took),
		StatusCode:      int32(r.StatusCode),
		Error:           r.Error,
		ResponseSnippet: r.Snippet,
		Pages:           int32(r.Pages),
		Items:           int32(r.Items),
		NewItems:        int32(r.New),
		Duplicates:      int32(r.Duplicates),
		Quarantined:     int32(r.Quarantined),
		CursorBefore:    r.CursorBefore,
		CursorAfter:     r.CursorAfter,
		Exhausted:       r.Exhausted,
	}
	if r.RetryAfter > 0 {
		pr.RetryAfter = durationpb.New(r.RetryAfter)
	}
	return &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PollRound{PollRound: pr}}
}
