package syncreply

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestFilterPassesOnlySafeHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{
		"Content-Type":  {"application/json"},
		"Location":      {"/orders/42"},
		"Set-Cookie":    {"session=secret"},
		"Authorization": {"Bearer x"},
		"X-Order-Url":   {"https://erp.example/o/42"},
		"X-Internal":    {"keep me in"},
		"Etag":          {strings.Repeat("e", 5000)},
	}
	got := map[string]string{}
	for _, rh := range Filter(h, []string{"x-order-url", "Set-Cookie"}) {
		got[rh.Name] = rh.Value
	}
	if got["Content-Type"] != "application/json" || got["Location"] != "/orders/42" || got["X-Order-Url"] == "" {
		t.Errorf("safe headers missing: %v", got)
	}
	for _, bad := range []string{"Set-Cookie", "Authorization", "X-Internal"} {
		if _, ok := got[bad]; ok {
			t.Errorf("%s passed on", bad)
		}
	}
	if len(got["Etag"]) != MaxHeaderValue {
		t.Errorf("a long value is %d bytes, want it cut to %d", len(got["Etag"]), MaxHeaderValue)
	}
	many := http.Header{"Link": make([]string, 100)}
	if n := len(Filter(many, nil)); n != MaxHeaders {
		t.Errorf("%d headers carried, want at most %d", n, MaxHeaders)
	}
}

func TestCheckHeaderName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{"X-Order-Url": true, "set-cookie": false, "WWW-Authenticate": false, "bad name": false, "": false} {
		if err := CheckHeaderName(name); (err == nil) != ok {
			t.Errorf("CheckHeaderName(%q) = %v", name, err)
		}
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h := nats.Header{}
	if _, ok := Due(h, now); ok {
		t.Error("an event nobody waits for is due a reply")
	}
	Set(h, "_INBOX.abc.1", now.Add(time.Second))
	if s, ok := Due(h, now); !ok || s != "_INBOX.abc.1" {
		t.Errorf("Due = %q %v before the deadline", s, ok)
	}
	if _, ok := Due(h, now.Add(2*time.Second)); ok {
		t.Error("a reply is due after the waiter stopped listening")
	}
	h.Set(HeaderReplyBy, "soon")
	if _, ok := Due(h, now); ok {
		t.Error("an unreadable deadline is due a reply")
	}
}
