package auditapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the audit API. Every method returns an *Error (errors.As)
// when the API answers with a non-2xx status, and an error wrapping
// ErrUnreachable when no answer comes back.
type Client struct {
	// BaseURL is the API's root, e.g. http://127.0.0.1:8081.
	BaseURL string
	// Token is the admin bearer token; empty sends none.
	Token string
	// RequestedBy names the caller in replay audit records. It is sent
	// as Switchyard-Requested-By ("api" when empty) on every request that
	// changes something, which the API requires of requests without a
	// JSON body (a browser cannot be made to send it to another site).
	RequestedBy string
	// HTTP is the client to use; nil uses one with a 30s timeout.
	HTTP *http.Client
}

// HeaderRequestedBy names the caller of a replay or a silence change for
// the audit log; it also marks a request as sent by a program.
const HeaderRequestedBy = "Switchyard-Requested-By"

// ErrUnreachable is wrapped by the errors that mean no answer came back
// (the auditor is not running, or not at BaseURL).
var ErrUnreachable = errors.New("the audit API did not answer")

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any, idemKey string, out any) (int, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("audit API URL %q: %w", c.BaseURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	switch by := c.RequestedBy; {
	case by != "":
		req.Header.Set(HeaderRequestedBy, by)
	case method != http.MethodGet:
		req.Header.Set(HeaderRequestedBy, "api")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.BaseURL, err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			e = Error{Code: CodeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		e.Status = resp.StatusCode
		return resp.StatusCode, &e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode the answer of %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// ListEvents is GET /v1/events with the given filters (source, type,
// subject, destination, status, since, until, event_id, q, limit, cursor).
func (c *Client) ListEvents(ctx context.Context, filters url.Values) (List[Event], error) {
	var out List[Event]
	_, err := c.do(ctx, http.MethodGet, "/v1/events", filters, nil, "", &out)
	return out, err
}

// GetEvent is GET /v1/events/{id}.
func (c *Client) GetEvent(ctx context.Context, id string) (EventDetail, error) {
	var out EventDetail
	_, err := c.do(ctx, http.MethodGet, "/v1/events/"+url.PathEscape(id), nil, nil, "", &out)
	return out, err
}

// ListDeliveries is GET /v1/deliveries (event_id, destination, status,
// source, type, since, until, q, limit, cursor).
func (c *Client) ListDeliveries(ctx context.Context, filters url.Values) (List[Delivery], error) {
	var out List[Delivery]
	_, err := c.do(ctx, http.MethodGet, "/v1/deliveries", filters, nil, "", &out)
	return out, err
}

// ListDeadLetters is GET /v1/dead-letters (event_id, destination,
// reason, since, until, q, limit, cursor).
func (c *Client) ListDeadLetters(ctx context.Context, filters url.Values) (List[DeadLetter], error) {
	var out List[DeadLetter]
	_, err := c.do(ctx, http.MethodGet, "/v1/dead-letters", filters, nil, "", &out)
	return out, err
}

// GetDeadLetter is GET /v1/dead-letters/{id}.
func (c *Client) GetDeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	var out DeadLetter
	_, err := c.do(ctx, http.MethodGet, "/v1/dead-letters/"+url.PathEscape(id), nil, nil, "", &out)
	return out, err
}

// ListRejections is GET /v1/rejections (source, reason, since, until, q,
// limit, cursor).
func (c *Client) ListRejections(ctx context.Context, filters url.Values) (List[Rejection], error) {
	var out List[Rejection]
	_, err := c.do(ctx, http.MethodGet, "/v1/rejections", filters, nil, "", &out)
	return out, err
}

// ListAlerts is GET /v1/alerts (rule, destination, source, state, sender,
// delivered, since, until, limit, cursor).
func (c *Client) ListAlerts(ctx context.Context, filters url.Values) (List[Alert], error) {
	var out List[Alert]
	_, err := c.do(ctx, http.MethodGet, "/v1/alerts", filters, nil, "", &out)
	return out, err
}

// ListRecords is GET /v1/records (kind, key, since, until, limit, cursor).
func (c *Client) ListRecords(ctx context.Context, filters url.Values) (List[Record], error) {
	var out List[Record]
	_, err := c.do(ctx, http.MethodGet, "/v1/records", filters, nil, "", &out)
	return out, err
}

// Replay is POST /v1/dead-letters/{id}/replay. key, when set, names the
// request (Idempotency-Key): the same key replays once.
func (c *Client) Replay(ctx context.Context, id, key string) (ReplayResult, error) {
	var out ReplayResult
	_, err := c.do(ctx, http.MethodPost, "/v1/dead-letters/"+url.PathEscape(id)+"/replay", nil, nil, key, &out)
	return out, err
}

// BulkReplay is POST /v1/dead-letters/replay.
func (c *Client) BulkReplay(ctx context.Context, req BulkReplayRequest, key string) (BulkReplayResult, error) {
	var out BulkReplayResult
	_, err := c.do(ctx, http.MethodPost, "/v1/dead-letters/replay", nil, req, key, &out)
	return out, err
}

// ListDestinations is GET /v1/destinations: every destination's backlog,
// success rate, latency and breaker state over window (a duration such as
// 15m or 1d; empty for the API's default, 1h).
func (c *Client) ListDestinations(ctx context.Context, window string) (List[DestinationStatus], error) {
	var q url.Values
	if window != "" {
		q = url.Values{"window": {window}}
	}
	var out List[DestinationStatus]
	_, err := c.do(ctx, http.MethodGet, "/v1/destinations", q, nil, "", &out)
	return out, err
}

// ListParked is GET /v1/parked (limit, cursor): the messages the auditor
// could not store.
func (c *Client) ListParked(ctx context.Context, filters url.Values) (List[Parked], error) {
	var out List[Parked]
	_, err := c.do(ctx, http.MethodGet, "/v1/parked", filters, nil, "", &out)
	return out, err
}

// ListSilences is GET /v1/silences.
func (c *Client) ListSilences(ctx context.Context) ([]Silence, error) {
	var out SilenceList
	_, err := c.do(ctx, http.MethodGet, "/v1/silences", nil, nil, "", &out)
	return out.Silences, err
}

// GetSilence is GET /v1/silences/{id}.
func (c *Client) GetSilence(ctx context.Context, id string) (Silence, error) {
	var out Silence
	_, err := c.do(ctx, http.MethodGet, "/v1/silences/"+url.PathEscape(id), nil, nil, "", &out)
	return out, err
}

// CreateSilence is POST /v1/silences.
func (c *Client) CreateSilence(ctx context.Context, s NewSilence) (Silence, error) {
	var out Silence
	_, err := c.do(ctx, http.MethodPost, "/v1/silences", nil, s, "", &out)
	return out, err
}

// ExpireSilence is DELETE /v1/silences/{id}: the silence ends now. by
// names who ended it ("api" when empty).
func (c *Client) ExpireSilence(ctx context.Context, id, by string) (Silence, error) {
	var q url.Values
	if by != "" {
		q = url.Values{"by": {by}}
	}
	var out Silence
	_, err := c.do(ctx, http.MethodDelete, "/v1/silences/"+url.PathEscape(id), q, nil, "", &out)
	return out, err
}
