package poll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/jsonexpr"
	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/untrusted"
)

// snippetLimit bounds the failed answer kept in the round's record.
const snippetLimit = 512

// maxCursorRecorded bounds a cursor in the round's record.
const maxCursorRecorded = 256

// item is one item of a page, ready to store.
type item struct {
	id, typ string
	body    []byte
}

// round reads pages from the cursor on until the partner has no further
// page, max_pages were read, or something fails, storing each page's items
// before moving the cursor past them.
func (s *source) round(ctx context.Context, store Store, cursors Cursors, beforeCursor func(string, int)) Round {
	r := Round{Source: s.name, Started: time.Now()}
	defer func() { r.Took = time.Since(r.Started) }()
	finish := func(st Status, err error) Round {
		r.Status = st
		if err != nil {
			r.Error = untrusted.Text(err.Error(), 1024)
		}
		r.Took = time.Since(r.Started)
		return r
	}
	interrupted := func(err error) (Round, bool) {
		if ctx.Err() != nil {
			return finish(StatusInterrupted, fmt.Errorf("interrupted: %w", context.Cause(ctx))), true
		}
		return Round{}, false
	}

	cur, rev, err := cursors.Get(ctx, s.name)
	if err != nil {
		if rr, ok := interrupted(err); ok {
			return rr
		}
		return finish(StatusStoreFailed, err)
	}
	if rev == 0 {
		cur = s.poll.Cursor.Initial
	}
	r.CursorBefore, r.CursorAfter = recorded(cur), recorded(cur)
	for page := 1; page <= s.poll.MaxPages; page++ {
		reqURL, h, doc, fail := s.fetch(ctx, cur, &r)
		if fail != nil {
			if rr, ok := interrupted(fail.err); ok {
				return rr
			}
			r.RetryAfter = fail.retryAfter
			return finish(fail.status, fail.err)
		}
		r.Pages++
		found, err := s.items.All(ctx, doc)
		if err != nil {
			return finish(StatusBadAnswer, fmt.Errorf("%w: page %d: items: %w", errBadAnswer, page, err))
		}
		if len(found) == 1 {
			if arr, isArr := found[0].([]any); isArr {
				found = arr
			} else if found[0] == nil {
				found = nil
			}
		}
		// Everything is read before anything is stored: an answer this
		// source cannot read fails the page as a whole.
		items := make([]item, 0, len(found))
		for i, v := range found {
			it, err := s.readItem(ctx, v)
			if err != nil {
				return finish(StatusBadAnswer, fmt.Errorf("%w: page %d, item %d: %w", errBadAnswer, page, i, err))
			}
			items = append(items, it)
		}
		next, more, err := s.nextCursor(ctx, cur, reqURL, h, doc, found)
		if err != nil {
			return finish(StatusBadAnswer, fmt.Errorf("page %d: %w", page, err))
		}
		r.Items += len(items)
		received := time.Now()
		for _, it := range items {
			_, dup, quarantined, err := store.StorePolled(ctx, s.name, it.id, it.typ, it.body, received)
			if err != nil {
				if rr, ok := interrupted(err); ok {
					return rr
				}
				return finish(StatusStoreFailed, fmt.Errorf("page %d: item %q not stored (the cursor stays; the page is read again): %w", page, it.id, err))
			}
			switch {
			case dup:
				r.Duplicates++
			case quarantined:
				r.Quarantined++
			default:
				r.New++
			}
		}
		if beforeCursor != nil {
			beforeCursor(s.name, page)
		}
		if next != cur {
			n, err := cursors.Put(ctx, s.name, next, rev)
			if err != nil {
				if rr, ok := interrupted(err); ok {
					return rr
				}
				if errors.Is(err, ErrConflict) {
					return finish(StatusInterrupted, fmt.Errorf("another replica moved the cursor: this one lost the lease"))
				}
				return finish(StatusStoreFailed, err)
			}
			cur, rev = next, n
			r.CursorAfter = recorded(cur)
		}
		if !more {
			r.Exhausted = true
			break
		}
	}
	return finish(StatusOK, nil)
}

// readItem finds an item's id and type and encodes it as the event body.
func (s *source) readItem(ctx context.Context, v any) (item, error) {
	idv, found, err := s.id.First(ctx, v)
	if err != nil {
		return item{}, fmt.Errorf("id: %w", err)
	}
	id, ok := jsonexpr.Text(idv)
	if !found || !ok || strings.TrimSpace(id) == "" {
		return item{}, fmt.Errorf("no id at %s", s.id)
	}
	typ := s.poll.DefaultType
	if s.typ != nil {
		tv, found, err := s.typ.First(ctx, v)
		if err != nil {
			return item{}, fmt.Errorf("type: %w", err)
		}
		if found {
			t, ok := jsonexpr.Text(tv)
			if !ok {
				return item{}, fmt.Errorf("the type at %s is not text", s.typ)
			}
			if t != "" {
				typ = t
			}
		}
	}
	body, err := jsonexpr.Encode(v)
	if err != nil {
		return item{}, fmt.Errorf("encode: %w", err)
	}
	if limit := int64(s.cfg.MaxBody); limit > 0 && int64(len(body)) > limit {
		return item{}, fmt.Errorf("item %q is %d bytes, more than the source's max_body (%d)", id, len(body), limit)
	}
	return item{id: id, typ: typ, body: body}, nil
}

// failure is a page that could not be had.
type failure struct {
	status     Status
	err        error
	retryAfter time.Duration
}

// fetch asks for the page at cur and decodes the answer.
func (s *source) fetch(ctx context.Context, cur string, r *Round) (*url.URL, http.Header, any, *failure) {
	ctx, cancel := context.WithTimeout(ctx, s.poll.Timeout.D())
	defer cancel()
	reqURL, err := s.requestURL(cur)
	if err != nil {
		return nil, nil, nil, &failure{status: StatusBadAnswer, err: err}
	}
	resp, err := s.client.Do(ctx, func(ctx context.Context) (*http.Request, error) {
		var body io.Reader
		if s.poll.Body != "" {
			body = strings.NewReader(strings.ReplaceAll(s.poll.Body, "{cursor}", jsonCursor(cur)))
		}
		req, err := http.NewRequestWithContext(ctx, s.poll.Method, reqURL.String(), body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("User-Agent", outbound.UserAgent())
		return req, nil
	})
	if err != nil {
		return nil, nil, nil, transportFailure(err)
	}
	defer outbound.Drain(resp.Body)
	r.StatusCode = resp.StatusCode
	status := resp.StatusCode
	if status < 200 || status >= 300 {
		f := &failure{err: fmt.Errorf("HTTP %d %s", status, http.StatusText(status))}
		// Redacted: a partner echoing the request would quote the
		// credentials sent with it.
		r.Snippet = resp.ReadSnippet(snippetLimit)
		switch {
		case s.client.Refused(resp):
			f.status = StatusCredentials
			if resp.Renewed {
				f.err = fmt.Errorf("%w, again with renewed credentials", f.err)
			} else {
				f.err = fmt.Errorf("%w: the credentials were refused", f.err)
			}
		case status == http.StatusTooManyRequests:
			f.status = StatusRateLimited
		case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
			f.status = StatusTimeout
		case status >= 500:
			f.status = StatusUnavailable
		default:
			f.status = StatusRejected
		}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			f.retryAfter = outbound.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return nil, nil, nil, f
	}
	limit := int64(s.poll.MaxResponse)
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, nil, nil, transportFailure(err)
	case n > limit:
		return nil, nil, nil, &failure{status: StatusBadAnswer, err: fmt.Errorf("%w: the answer is larger than max_response (%d bytes)", errBadAnswer, limit)}
	}
	doc, err := jsonexpr.Decode(buf.Bytes())
	if err != nil {
		r.Snippet = resp.Snippet(buf.Bytes(), snippetLimit)
		return nil, nil, nil, &failure{status: StatusBadAnswer, err: fmt.Errorf("%w: the answer is not JSON: %w", errBadAnswer, err)}
	}
	return reqURL, resp.Header, doc, nil
}

// transportFailure classifies an error without an answer. The URL is left
// out: it may carry an API key.
func transportFailure(err error) *failure {
	var ae *outbound.AuthError
	if errors.As(err, &ae) {
		if errors.Is(err, outbound.ErrCredentials) {
			return &failure{status: StatusCredentials, err: ae.Err}
		}
		return &failure{status: StatusUnavailable, err: ae.Err}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, outbound.ErrBlockedAddress):
		return &failure{status: StatusRejected, err: err}
	case outbound.IsTimeout(err):
		return &failure{status: StatusTimeout, err: errors.New("timeout: no answer within poll.timeout")}
	}
	return &failure{status: StatusUnavailable, err: err}
}

// requestURL is the address of the page at cur.
func (s *source) requestURL(cur string) (*url.URL, error) {
	if s.poll.Cursor.Mode == "link" && cur != "" {
		return url.Parse(cur)
	}
	u, err := url.Parse(strings.ReplaceAll(s.poll.URL, "{cursor}", urlCursor(cur)))
	if err != nil {
		return nil, fmt.Errorf("poll.url with the cursor: %w", err)
	}
	if len(s.poll.Query) > 0 {
		q := u.Query()
		for k, v := range s.poll.Query {
			if v == "{cursor}" && cur == "" {
				continue
			}
			q.Set(k, strings.ReplaceAll(v, "{cursor}", cur))
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

func recorded(cursor string) string { return untrusted.Text(cursor, maxCursorRecorded) }
