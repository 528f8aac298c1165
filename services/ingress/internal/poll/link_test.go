package poll

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"
)

func TestNextLink(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("https://api.example/v1/orders?page=1")
	for _, tt := range []struct {
		name   string
		values []string
		want   string
	}{
		{"none", nil, ""},
		{"github style", []string{`<https://api.example/v1/orders?page=2>; rel="next", <https://api.example/v1/orders?page=9>; rel="last"`}, "https://api.example/v1/orders?page=2"},
		{"relative", []string{`</v1/orders?page=3>; rel=next`}, "https://api.example/v1/orders?page=3"},
		{"several rels", []string{`<?page=4>; rel="prefetch next"`}, "https://api.example/v1/orders?page=4"},
		{"second header", []string{`<https://api.example/a>; rel="prev"`, `<https://api.example/b>; rel="next"`}, "https://api.example/b"},
		{"comma in quoted param", []string{`<https://api.example/x>; title="a, b"; rel="next"`}, "https://api.example/x"},
		{"upper case", []string{`<https://api.example/x>; REL="NEXT"`}, "https://api.example/x"},
		{"only last", []string{`<https://api.example/v1/orders?page=9>; rel="last"`}, ""},
		{"garbage", []string{`nonsense, <unclosed; rel=next`}, ""},
		{"garbage then link", []string{`nonsense, <https://api.example/y>; rel=next`}, "https://api.example/y"},
	} {
		if got := NextLink(tt.values, base); got != tt.want {
			t.Errorf("%s: NextLink = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzNextLink: whatever a partner sends in Link, parsing neither panics
// nor returns a link that is not an absolute URL.
func FuzzNextLink(f *testing.F) {
	base, _ := url.Parse("https://api.example/v1/orders")
	f.Fuzz(func(t *testing.T, v string) {
		got := NextLink([]string{v}, base)
		if got == "" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || !u.IsAbs() {
			t.Fatalf("NextLink(%q) = %q, not an absolute URL", v, got)
		}
	})
}

func TestSameOrigin(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("https://api.example/v1/orders")
	for u, want := range map[string]bool{
		"https://api.example/v1/orders?page=2": true,
		"https://API.example/other":            true,
		"http://api.example/v1/orders":         false,
		"https://api.example:8443/v1/orders":   false,
		"https://evil.example/v1/orders":       false,
		"https://api.example.evil.example/":    false,
	} {
		if got := sameOrigin(base, u); got != want {
			t.Errorf("sameOrigin(%s) = %v, want %v", u, got, want)
		}
	}
}

func TestParseAndFormatTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)
	for _, tt := range []struct {
		v      any
		format string
		ok     bool
	}{
		{"2026-03-01T12:00:05Z", "rfc3339", true},
		{"2026-03-01T13:00:05+01:00", "rfc3339", true},
		{"1772366405", "unix", true},
		{jsonNumber("1772366405"), "unix", true},
		{jsonNumber("1772366405000"), "unix_ms", true},
		{"yesterday", "rfc3339", false},
		{true, "unix", false},
		{jsonNumber("-5"), "unix", false},
		{"", "rfc3339", false},
	} {
		got, ok := parseTime(tt.v, tt.format)
		if ok != tt.ok || (ok && !got.Equal(want)) {
			t.Errorf("parseTime(%v, %s) = %v %v", tt.v, tt.format, got, ok)
		}
	}
	for format, text := range map[string]string{"rfc3339": "2026-03-01T12:00:05Z", "unix": "1772366405", "unix_ms": "1772366405000"} {
		if got := formatTime(want, format); got != text {
			t.Errorf("formatTime(%s) = %q, want %q", format, got, text)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		interval time.Duration
		n        int
		want     time.Duration
	}{
		{time.Minute, 1, time.Minute},
		{time.Minute, 2, 2 * time.Minute},
		{time.Minute, 4, 5 * time.Minute},
		{time.Minute, 40, 5 * time.Minute},
		{time.Hour, 3, time.Hour}, // never longer than the interval's own wait when it is long
		{10 * time.Second, 3, 40 * time.Second},
	} {
		if got := backoff(tt.interval, tt.n); got != tt.want {
			t.Errorf("backoff(%v, %d) = %v, want %v", tt.interval, tt.n, got, tt.want)
		}
	}
}

func TestRequestURL(t *testing.T) {
	t.Parallel()
	s := &source{}
	s.poll.URL = "https://api.example/v1/{cursor}/orders?fixed=1"
	s.poll.Query = map[string]string{"after": "{cursor}", "limit": "100", "filter": "x-{cursor}"}
	for cur, want := range map[string]string{
		"":      "https://api.example/v1//orders?filter=x-&fixed=1&limit=100",
		"a b&c": "https://api.example/v1/a%20b%26c/orders?after=a+b%26c&filter=x-a+b%26c&fixed=1&limit=100",
	} {
		u, err := s.requestURL(cur)
		if err != nil || u.String() != want {
			t.Errorf("requestURL(%q) = %v %v, want %s", cur, u, err, want)
		}
	}
	if got := jsonCursor(`a"b\c`); got != `a\"b\\c` {
		t.Errorf("jsonCursor = %s", got)
	}
}

func jsonNumber(s string) any { return json.Number(s) }

func TestEveryStatusHasARecordStatus(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, st := range Statuses {
		ps := Round{Status: st}.Record().GetPollRound().GetStatus()
		if ps == 0 || seen[ps.String()] {
			t.Errorf("status %s records as %v", st, ps)
		}
		seen[ps.String()] = true
	}
}
