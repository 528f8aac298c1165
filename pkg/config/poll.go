package config

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/jsonexpr"
)

// SourcePoll makes a source one that Switchyard polls, for partners that
// send no webhooks: each round asks the partner's API for what is new since
// the cursor, follows the pages, stores every item as an event on
// webhooks.<source>.<type> and only then moves the cursor.
type SourcePoll struct {
	// URL is the API address. {cursor} in it is replaced by the cursor,
	// query-escaped. Required.
	URL string `yaml:"url"`
	// Method is GET or POST. Default GET.
	Method string `yaml:"method"`
	// Query parameters are added to the URL; {cursor} in a value is
	// replaced by the cursor. A parameter that is only {cursor} is left out
	// while there is no cursor yet.
	Query map[string]string `yaml:"query"`
	// Headers are sent with every request.
	Headers map[string]Secret `yaml:"headers"`
	// Body is sent with POST; {cursor} in it is replaced by the cursor
	// escaped for a JSON string.
	Body string `yaml:"body"`
	// Interval between two rounds. Default 1m.
	Interval Duration `yaml:"interval"`
	// Jitter: each wait is the interval plus a random part of up to this
	// much, so replicas and sources do not poll in step. Default a tenth of
	// the interval.
	Jitter Duration `yaml:"jitter"`
	// Timeout bounds one request, the token request included. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxPages bounds the pages one round reads; the next round goes on
	// from the cursor. Default 10.
	MaxPages int `yaml:"max_pages"`
	// MaxResponse bounds one answer's body. Default 8MiB.
	MaxResponse ByteSize `yaml:"max_response"`
	// AllowPrivateNetwork permits a URL (and token URL) on a loopback,
	// private or link-local address. Default false.
	AllowPrivateNetwork bool `yaml:"allow_private_network"`
	// Auth authenticates the requests, as for destinations. On 401 or 403
	// OAuth2 credentials are renewed once; a second refusal, or one of
	// static credentials, fails the round as a credentials failure.
	Auth Auth `yaml:"auth"`
	// Items finds the items in an answer: a JSON path ($.data.orders) or a
	// gojq expression (.data.orders[] | select(.status != "draft")). An
	// array found is its elements. Required.
	Items string `yaml:"items"`
	// ID is each item's id, a JSON path or gojq expression on the item
	// ($.id, or "\(.id):\(.updated_at)" to make every update an event). The
	// event id is <source>:<id>: an item seen again is the same event.
	// Required.
	ID string `yaml:"id"`
	// Type is each item's event type, a JSON path or gojq expression on
	// the item. Empty: DefaultType.
	Type string `yaml:"type"`
	// DefaultType is the event type of items whose Type yields nothing.
	// Default "item".
	DefaultType string `yaml:"default_type"`
	// Cursor says how a round knows where the previous one stopped.
	Cursor PollCursor `yaml:"cursor"`
}

// Cursor modes.
const (
	// CursorNone reads the same address every round, one page.
	CursorNone = "none"
	// CursorResponse takes the next cursor from a field of the answer.
	CursorResponse = "response"
	// CursorLastItem takes it from a field of the page's last item.
	CursorLastItem = "last_item"
	// CursorLink follows the answer's Link: <...>; rel="next" header; the
	// cursor is the next page's address.
	CursorLink = "link"
	// CursorTimestamp takes the latest of the items' timestamps.
	CursorTimestamp = "timestamp"
)

// CursorModes lists the cursor modes.
var CursorModes = []string{CursorNone, CursorResponse, CursorLastItem, CursorLink, CursorTimestamp}

// Timestamp cursor formats.
var CursorFormats = []string{"rfc3339", "unix", "unix_ms"}

// PollCursor is how a polling source advances.
type PollCursor struct {
	// Mode is none, response, last_item, link or timestamp. Default none.
	Mode string `yaml:"mode"`
	// Path finds the cursor: in the answer (response), or in an item
	// (last_item, timestamp). A JSON path or gojq expression.
	Path string `yaml:"path"`
	// Initial is the cursor of the very first round. Default empty.
	Initial string `yaml:"initial"`
	// Format writes a timestamp cursor: rfc3339, unix or unix_ms. Default
	// rfc3339. Item timestamps are read in any of them.
	Format string `yaml:"format"`
}

// Poll defaults.
const (
	DefaultPollInterval    = Duration(time.Minute)
	DefaultPollTimeout     = Duration(10 * time.Second)
	DefaultPollMaxPages    = 10
	DefaultPollMaxResponse = ByteSize(8 << 20)
	DefaultPollType        = "item"
)

// DownAfter is how long a polled source may go without a successful round
// before PartnerDown fires, unless alerts.rules.source_down.after says:
// ten intervals, at least 5m.
func (p SourcePoll) DownAfter() time.Duration {
	return max(10*p.Interval.D(), 5*time.Minute)
}

// IsPolled reports whether the source is polled rather than posting
// webhooks.
func (s Source) IsPolled() bool { return s.Poll != nil }

// withDefaults fills a polling source's unset fields.
func (p SourcePoll) withDefaults() SourcePoll {
	setDefault(&p.Method, http.MethodGet)
	p.Method = strings.ToUpper(p.Method)
	setDefault(&p.Interval, DefaultPollInterval)
	setDefault(&p.Jitter, p.Interval/10)
	setDefault(&p.Timeout, DefaultPollTimeout)
	setDefault(&p.MaxPages, DefaultPollMaxPages)
	setDefault(&p.MaxResponse, DefaultPollMaxResponse)
	setDefault(&p.DefaultType, DefaultPollType)
	setDefault(&p.Cursor.Mode, CursorNone)
	if p.Cursor.Mode == CursorTimestamp {
		setDefault(&p.Cursor.Format, "rfc3339")
	}
	if p.Auth.Type == AuthOAuth2ClientCredentials {
		setDefault(&p.Auth.ClientAuth, "auto")
	}
	return p
}

// validatePoll checks a polling source; f names it.
func validatePoll(p *problems, f string, s Source) {
	f += ".poll"
	c := s.Poll
	if s.Scheme != "" || len(s.Secrets) > 0 || s.HMAC != (SourceHMAC{}) || s.IDHeader != "" || s.TypeHeader != "" || s.RateLimit != (SourceRateLimit{}) ||
		s.TypeField != "" || s.UnsignedID != "" {
		p.add(f, "a polled source receives no webhooks: remove scheme, secrets, hmac, id_header, type_header, type_field, unsigned_id and rate_limit")
	}
	u, err := url.Parse(strings.ReplaceAll(c.URL, "{cursor}", "c"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.add(f+".url", "must be an http(s) URL, not %q", c.URL)
	} else if _, rest, _ := strings.Cut(c.URL, "://"); strings.Contains(strings.FieldsFunc(rest, func(r rune) bool { return r == '/' || r == '?' })[0], "{cursor}") {
		p.add(f+".url", "{cursor} may stand in the path or the query, not in the host")
	}
	if c.Method != http.MethodGet && c.Method != http.MethodPost {
		p.add(f+".method", "must be GET or POST, not %q", c.Method)
	}
	if c.Body != "" && c.Method != http.MethodPost {
		p.add(f+".body", "is only sent with method POST")
	}
	for name := range c.Headers {
		if !validHeaderName(name) {
			p.add(f+".headers", "header name %q is not valid", name)
		}
	}
	for name := range c.Query {
		if name == "" {
			p.add(f+".query", "a parameter has no name")
		}
	}
	if c.Interval.D() < time.Second {
		p.add(f+".interval", "must be at least 1s, not %s", c.Interval)
	}
	if c.Jitter.D() < 0 || c.Jitter.D() > c.Interval.D() {
		p.add(f+".jitter", "must be between 0 and the interval (%s), not %s", c.Interval, c.Jitter)
	}
	if c.Timeout.D() <= 0 || c.Timeout.D() > 5*time.Minute {
		p.add(f+".timeout", "must be between 0 and 5m, not %s", c.Timeout)
	}
	if c.MaxPages < 1 || c.MaxPages > 1000 {
		p.add(f+".max_pages", "must be between 1 and 1000, not %d", c.MaxPages)
	}
	if c.MaxResponse <= 0 || c.MaxResponse > 256<<20 {
		p.add(f+".max_response", "must be between 1 byte and 256MiB, not %d bytes", int64(c.MaxResponse))
	}
	checkAuth(p, f+".auth", c.Auth)
	checkExpr := func(field, src string, required bool) {
		if src == "" {
			if required {
				p.add(f+"."+field, "is required: a JSON path such as $.id or a gojq expression such as .id")
			}
			return
		}
		if _, err := jsonexpr.Compile(src); err != nil {
			p.add(f+"."+field, "%v", err)
		}
	}
	checkExpr("items", c.Items, true)
	checkExpr("id", c.ID, true)
	checkExpr("type", c.Type, false)
	if c.DefaultType == "" || strings.ContainsFunc(c.DefaultType, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		p.add(f+".default_type", "must be a printable event type such as order, not %q", c.DefaultType)
	}
	cur := c.Cursor
	if !slices.Contains(CursorModes, cur.Mode) {
		p.add(f+".cursor.mode", "must be one of %s, not %q", strings.Join(CursorModes, ", "), cur.Mode)
		return
	}
	switch cur.Mode {
	case CursorResponse, CursorLastItem, CursorTimestamp:
		checkExpr("cursor.path", cur.Path, true)
	default:
		if cur.Path != "" {
			p.add(f+".cursor.path", "is not used by cursor mode %s", cur.Mode)
		}
	}
	if cur.Mode == CursorTimestamp {
		if !slices.Contains(CursorFormats, cur.Format) {
			p.add(f+".cursor.format", "must be one of %s, not %q", strings.Join(CursorFormats, ", "), cur.Format)
		}
	} else if cur.Format != "" {
		p.add(f+".cursor.format", "is only used by cursor mode timestamp")
	}
	uses := strings.Contains(c.URL, "{cursor}") || strings.Contains(c.Body, "{cursor}")
	for _, v := range c.Query {
		uses = uses || strings.Contains(v, "{cursor}")
	}
	switch {
	case cur.Mode == CursorLink && uses:
		p.add(f+".cursor.mode", "link follows the partner's next-page addresses; {cursor} is not used with it")
	case cur.Mode == CursorLink && cur.Initial != "":
		p.add(f+".cursor.initial", "is not used by cursor mode link (the first address is url)")
	case cur.Mode != CursorNone && cur.Mode != CursorLink && !uses:
		p.add(f+".url", "must use {cursor} (in the URL, a query parameter or the body) so that cursor mode %s takes effect", cur.Mode)
	case cur.Mode == CursorNone && uses:
		p.add(f+".cursor.mode", "is none, but {cursor} is used: set a mode (response, last_item, timestamp)")
	}
}
