package slacktest_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/testing/slacktest"
)

func post(t *testing.T, url, body string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// The fake answers like Slack: malformed requests are refused whatever the
// script says, and well-formed ones take the script's answers in turn.
func TestFakeAnswersLikeSlack(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, slacktest.Answer{Status: 429, Text: "rate_limited", RetryAfter: "3"}, slacktest.OK)
	long := strings.Repeat("x", 151)
	tests := []struct {
		url, body  string
		status     int
		text       string
		retryAfter bool
	}{
		{s.URL + "/services/wrong", `{"text":"hi"}`, 404, "no_service", false},
		{s.WebhookURL(), `not json`, 400, "invalid_payload", false},
		{s.WebhookURL(), `{}`, 400, "no_text", false},
		{s.WebhookURL(), `{"text":"t","attachments":[{"blocks":[{"type":"header","text":{"type":"plain_text","text":"` + long + `"}}]}]}`, 400, "invalid_blocks", false},
		{s.WebhookURL(), `{"text":"t","blocks":[{"type":"section","fields":[` + strings.Repeat(`{"type":"mrkdwn","text":"f"},`, 10) + `{"type":"mrkdwn","text":"f"}]}]}`, 400, "invalid_blocks", false},
		{s.WebhookURL(), `{"text":"first"}`, 429, "rate_limited", true},
		{s.WebhookURL(), `{"text":"second","attachments":[{"color":"#2eb886","blocks":[{"type":"section","fields":[{"type":"mrkdwn","text":"*A*\nb"}]}]}]}`, 200, "ok", false},
	}
	for i, tt := range tests {
		status, text, after := post(t, tt.url, tt.body)
		if status != tt.status || text != tt.text || (after == "3") != tt.retryAfter {
			t.Errorf("request %d: %d %q Retry-After %q, want %d %q", i, status, text, after, tt.status, tt.text)
		}
	}
	got := s.Accepted()
	if len(got) != 1 || got[0].Text != "second" || got[0].Color != "#2eb886" || len(got[0].Fields) != 1 || got[0].Fields[0] != "*A*\nb" {
		t.Errorf("accepted = %+v", got)
	}
	if n := len(s.Messages()); n != len(tests) {
		t.Errorf("%d messages kept, want %d", n, len(tests))
	}
}

func TestFakeJSONWebhook(t *testing.T) {
	t.Parallel()
	s := slacktest.NewJSON(t)
	if status, _, _ := post(t, s.WebhookURL(), `{"dedup_key":"x"}`); status != 200 {
		t.Errorf("JSON object: %d", status)
	}
	if status, _, _ := post(t, s.WebhookURL(), `[1]`); status != 400 {
		t.Errorf("JSON array: %d", status)
	}
}

// Script changes the answers mid-test: an outage, then Slack back.
func TestScriptReplacesTheAnswers(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t)
	want := []int{200}
	if status, _, _ := post(t, s.WebhookURL(), `{"text":"a"}`); status != 200 {
		t.Fatalf("before the outage: %d", status)
	}
	s.Script(slacktest.Answer{Status: 429, Text: "rate_limited", RetryAfter: "2"}, slacktest.Answer{Status: 500, Text: "internal_error"})
	want = append(want, 429, 500, 500)
	for range 3 {
		post(t, s.WebhookURL(), `{"text":"b"}`)
	}
	s.Script()
	want = append(want, 200)
	post(t, s.WebhookURL(), `{"text":"c"}`)
	var got []int
	for _, m := range s.Messages() {
		got = append(got, m.Status)
	}
	if !slices.Equal(got, want) {
		t.Errorf("answers %v, want %v", got, want)
	}
}
