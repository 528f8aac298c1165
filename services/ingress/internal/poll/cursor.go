package poll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/jsonexpr"
)

// errBadAnswer marks an answer the source's configuration cannot read: not
// JSON, too large, an item without an id, a cursor that is not text.
var errBadAnswer = errors.New("bad answer")

// maxCursor bounds a cursor's length: it is stored, put in URLs and
// recorded.
const maxCursor = 2048

// nextCursor is where the page after this one starts, and whether there is
// such a page. cur is the cursor this page was asked with.
func (s *source) nextCursor(ctx context.Context, cur string, reqURL *url.URL, h http.Header, doc any, items []any) (string, bool, error) {
	c := s.cfg.Poll.Cursor
	var next string
	switch c.Mode {
	case config.CursorNone:
		return cur, false, nil
	case config.CursorResponse:
		v, found, err := s.cursorPath.First(ctx, doc)
		if err != nil {
			return "", false, fmt.Errorf("%w: cursor.path: %w", errBadAnswer, err)
		}
		if !found {
			return cur, false, nil // the last page
		}
		text, ok := jsonexpr.Text(v)
		if !ok {
			return "", false, fmt.Errorf("%w: cursor.path %s is not text or a number", errBadAnswer, s.cursorPath)
		}
		next = text
	case config.CursorLastItem:
		if len(items) == 0 {
			return cur, false, nil
		}
		v, found, err := s.cursorPath.First(ctx, items[len(items)-1])
		if err != nil {
			return "", false, fmt.Errorf("%w: cursor.path on the last item: %w", errBadAnswer, err)
		}
		text, ok := jsonexpr.Text(v)
		if !found || !ok || text == "" {
			return "", false, fmt.Errorf("%w: the last item has no cursor at %s", errBadAnswer, s.cursorPath)
		}
		next = text
	case config.CursorLink:
		next = NextLink(h.Values("Link"), reqURL)
		if next == "" {
			return cur, false, nil
		}
		if !sameOrigin(s.base, next) {
			return "", false, fmt.Errorf("%w: the next-page link points to another server (%s); it is not followed with this source's credentials", errBadAnswer, originOf(next))
		}
	case config.CursorTimestamp:
		latest, ok := parseTime(cur, c.Format)
		found := false
		for i, it := range items {
			v, has, err := s.cursorPath.First(ctx, it)
			if err != nil {
				return "", false, fmt.Errorf("%w: cursor.path on item %d: %w", errBadAnswer, i, err)
			}
			if !has {
				return "", false, fmt.Errorf("%w: item %d has no timestamp at %s", errBadAnswer, i, s.cursorPath)
			}
			t, tok := parseTime(v, c.Format)
			if !tok {
				return "", false, fmt.Errorf("%w: item %d: %v at %s is not a timestamp", errBadAnswer, i, v, s.cursorPath)
			}
			if !ok || t.After(latest) {
				latest, ok, found = t, true, true
			}
		}
		if !found {
			// No item is newer than the cursor: the partner has nothing
			// more (an inclusive parameter hands the newest back again).
			return cur, false, nil
		}
		next = formatTime(latest, c.Format)
	}
	if len(next) > maxCursor {
		return "", false, fmt.Errorf("%w: the cursor is %d bytes, more than %d", errBadAnswer, len(next), maxCursor)
	}
	if next == "" || next == cur {
		return cur, false, nil
	}
	return next, true, nil
}

// parseTime reads a timestamp: RFC 3339 text, or a Unix time in seconds
// (milliseconds with format unix_ms), as a number or digits.
func parseTime(v any, format string) (time.Time, bool) {
	var n *big.Float
	switch x := v.(type) {
	case string:
		if x == "" {
			return time.Time{}, false
		}
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t, true
		}
		f, ok := new(big.Float).SetString(x)
		if !ok {
			return time.Time{}, false
		}
		n = f
	case json.Number:
		f, ok := new(big.Float).SetString(x.String())
		if !ok {
			return time.Time{}, false
		}
		n = f
	default:
		return time.Time{}, false
	}
	if format == "unix_ms" {
		n.Quo(n, big.NewFloat(1000))
	}
	secs, _ := n.Float64()
	if secs < 0 || secs > 1e11 {
		return time.Time{}, false
	}
	whole := int64(secs)
	return time.Unix(whole, int64((secs-float64(whole))*1e9)).UTC(), true
}

func formatTime(t time.Time, format string) string {
	switch format {
	case "unix":
		return strconv.FormatInt(t.Unix(), 10)
	case "unix_ms":
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "an unreadable address"
	}
	return u.Scheme + "://" + u.Host
}

// substitute puts the cursor into a template: escaped for a URL in the
// address and query, for a JSON string in a body.
func urlCursor(cur string) string { return strings.ReplaceAll(url.QueryEscape(cur), "+", "%20") }

func jsonCursor(cur string) string {
	b, _ := json.Marshal(cur)
	return string(b[1 : len(b)-1])
}
