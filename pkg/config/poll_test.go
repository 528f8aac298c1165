package config_test

import (
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
)

const pollYAML = `
sources:
  - name: shop-orders
    poll:
      url: https://api.shop.example/v2/orders
      query: {after: "{cursor}", limit: "100"}
      auth: {type: bearer, token: "t0ken"}
      items: $.orders
      id: $.id
      type: .event
      cursor: {mode: response, path: $.next}
destinations:
  - name: crm
    url: https://crm.example.com/hooks
    subjects: ["webhooks.shop-orders.>"]
`

func TestPollDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(pollYAML), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Sources[0].Poll
	if p == nil || !c.Sources[0].IsPolled() {
		t.Fatal("the poll block was not read")
	}
	if p.Method != "GET" || p.Interval.D() != time.Minute || p.Jitter.D() != 6*time.Second || p.Timeout.D() != 10*time.Second ||
		p.MaxPages != 10 || p.MaxResponse != 8<<20 || p.DefaultType != "item" || p.DownAfter() != 10*time.Minute {
		t.Errorf("defaults: %+v", *p)
	}
	if c.Sources[0].Tolerance != 0 || c.Sources[0].MaxBody != c.Ingress.MaxBody {
		t.Errorf("webhook defaults applied to a polled source: %+v", c.Sources[0])
	}
}

func TestValidatePoll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(s *config.Source)
		field   string
		problem string
	}{
		{"valid", func(*config.Source) {}, "", ""},
		{"scheme too", func(s *config.Source) { s.Scheme = "github" }, "sources[0].poll", "receives no webhooks"},
		{"bad url", func(s *config.Source) { s.Poll.URL = "ftp://x" }, "sources[0].poll.url", "http(s) URL"},
		{"cursor in host", func(s *config.Source) { s.Poll.URL = "https://{cursor}.example/x" }, "sources[0].poll.url", "not in the host"},
		{"method", func(s *config.Source) { s.Poll.Method = "DELETE" }, "sources[0].poll.method", "GET or POST"},
		{"body with GET", func(s *config.Source) { s.Poll.Body = "{}" }, "sources[0].poll.body", "POST"},
		{"interval", func(s *config.Source) { s.Poll.Interval = config.Duration(time.Millisecond) }, "sources[0].poll.interval", "at least 1s"},
		{"jitter", func(s *config.Source) { s.Poll.Jitter = config.Duration(2 * time.Hour) }, "sources[0].poll.jitter", "between 0 and the interval"},
		{"max pages", func(s *config.Source) { s.Poll.MaxPages = 0 }, "sources[0].poll.max_pages", "between 1 and 1000"},
		{"items missing", func(s *config.Source) { s.Poll.Items = "" }, "sources[0].poll.items", "is required"},
		{"items bad", func(s *config.Source) { s.Poll.Items = "$..x" }, "sources[0].poll.items", "recursive descent"},
		{"id bad gojq", func(s *config.Source) { s.Poll.ID = ".id |" }, "sources[0].poll.id", "gojq expression"},
		{"auth", func(s *config.Source) { s.Poll.Auth = config.Auth{Type: config.AuthBasic} }, "sources[0].poll.auth.username", "required"},
		{"cursor mode", func(s *config.Source) { s.Poll.Cursor.Mode = "page" }, "sources[0].poll.cursor.mode", "must be one of"},
		{"cursor path missing", func(s *config.Source) { s.Poll.Cursor.Path = "" }, "sources[0].poll.cursor.path", "is required"},
		{"cursor unused", func(s *config.Source) { s.Poll.Query = map[string]string{"limit": "100"} }, "sources[0].poll.url", "must use {cursor}"},
		{"link with cursor", func(s *config.Source) {
			s.Poll.Cursor = config.PollCursor{Mode: config.CursorLink}
		}, "sources[0].poll.cursor.mode", "not used with it"},
		{"link", func(s *config.Source) {
			s.Poll.Cursor = config.PollCursor{Mode: config.CursorLink}
			s.Poll.Query = nil
		}, "", ""},
		{"timestamp format", func(s *config.Source) {
			s.Poll.Cursor = config.PollCursor{Mode: config.CursorTimestamp, Path: "$.updated_at", Format: "iso"}
		}, "sources[0].poll.cursor.format", "must be one of"},
		{"format without timestamp", func(s *config.Source) { s.Poll.Cursor.Format = "unix" }, "sources[0].poll.cursor.format", "only used by cursor mode timestamp"},
		{"none with cursor", func(s *config.Source) { s.Poll.Cursor = config.PollCursor{Mode: config.CursorNone} }, "sources[0].poll.cursor.mode", "is none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Parse([]byte(pollYAML), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			p := *c.Sources[0].Poll
			c.Sources[0].Poll = &p
			tt.mutate(&c.Sources[0])
			err = c.Validate()
			if tt.field == "" {
				checkErr(t, err, nil, "", "")
				return
			}
			checkErr(t, err, config.ErrInvalid, tt.field, tt.problem)
		})
	}
}

func TestSyncSettings(t *testing.T) {
	t.Parallel()
	c := validConfig(t)
	if c.Ingress.Sync.MaxWait.D() != 30*time.Second || c.Ingress.Sync.DefaultWait.D() != 5*time.Second ||
		c.Destinations[0].Mode != config.ModeAsync || c.Ingress.PollLeaseTTL.D() != 30*time.Second {
		t.Errorf("defaults: %+v, mode %q", c.Ingress.Sync, c.Destinations[0].Mode)
	}
	for _, tt := range []struct {
		name           string
		mutate         func(c *config.Config)
		field, problem string
	}{
		{"mode", func(c *config.Config) { c.Destinations[0].Mode = "fast" }, "destinations[0].mode", "async or sync"},
		{"sync header", func(c *config.Config) { c.Destinations[0].SyncHeaders = []string{"X-Order-Url", "Set-Cookie"} },
			"destinations[0].sync_headers[1]", "never passed on"},
		{"max wait", func(c *config.Config) { c.Ingress.Sync.MaxWait = config.Duration(time.Hour) }, "ingress.sync.max_wait", "between 0 and 5m"},
		{"default wait", func(c *config.Config) { c.Ingress.Sync.DefaultWait = config.Duration(time.Minute) }, "ingress.sync.default_wait", "at most max_wait"},
		{"lease", func(c *config.Config) { c.Ingress.PollLeaseTTL = config.Duration(time.Millisecond) }, "ingress.poll_lease_ttl", "between 1s and 10m"},
	} {
		c := validConfig(t)
		tt.mutate(&c)
		checkErr(t, c.Validate(), config.ErrInvalid, tt.field, tt.problem)
	}
}
