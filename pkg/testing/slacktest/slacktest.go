// Package slacktest is a fake Slack incoming webhook for tests: it answers
// the way Slack does (200 "ok"; 400 "invalid_payload" for a body that is not
// JSON; 400 "no_text" for a message with neither text nor blocks; 400
// "invalid_blocks" for blocks over Slack's limits; 404 "no_service" for a
// wrong URL; or a scripted answer such as a 429 with Retry-After) and keeps
// every message it received.
package slacktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// SecretPath is the secret part of the fake webhook URL; tests check that
// it never appears in logs or errors.
const SecretPath = "/services/T0000SECRET/B0000SECRET/XXXXXXXXXXXXXXXXSECRETXX"

// Answer is one scripted answer.
type Answer struct {
	Status     int
	Text       string
	RetryAfter string
}

// OK is Slack's answer to an accepted message.
var OK = Answer{Status: http.StatusOK, Text: "ok"}

// Message is one request the fake received.
type Message struct {
	At     time.Time
	Raw    []byte
	Header http.Header
	// Text is the top-level notification text.
	Text string
	// Fields are the mrkdwn field texts of every section, in order.
	Fields []string
	// Color is the first attachment's colour bar.
	Color string
	// Status is what the fake answered.
	Status int
}

// Server is the fake Slack.
type Server struct {
	*httptest.Server
	// generic accepts any JSON object (NewJSON).
	generic bool
	mu      sync.Mutex
	script  []Answer
	// scripted counts the well-formed requests, which take the script's
	// answers in turn.
	scripted int
	got      []Message
}

// New starts a fake that answers from script in order, repeating the last
// answer (OK when the script is empty). It stops at t.Cleanup.
func New(t testing.TB, script ...Answer) *Server {
	if len(script) == 0 {
		script = []Answer{OK}
	}
	s := &Server{script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NewJSON starts a fake generic JSON webhook (a PagerDuty or Opsgenie
// bridge): it takes any JSON object at WebhookURL, answering from script
// like New, and 400 to a body that is not one.
func NewJSON(t testing.TB, script ...Answer) *Server {
	s := New(t, script...)
	s.generic = true
	return s
}

// WebhookURL is the URL to configure as the Slack webhook.
func (s *Server) WebhookURL() string { return s.URL + SecretPath }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m := Message{At: time.Now(), Raw: body, Header: r.Header.Clone()}
	ans := s.answer(r.URL.Path, body, &m)
	m.Status = ans.Status
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
	if ans.RetryAfter != "" {
		w.Header().Set("Retry-After", ans.RetryAfter)
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(ans.Status)
	_, _ = io.WriteString(w, ans.Text)
}

func (s *Server) answer(path string, body []byte, m *Message) Answer {
	if path != SecretPath {
		return Answer{Status: http.StatusNotFound, Text: "no_service"}
	}
	var p struct {
		Text        string `json:"text"`
		Attachments []struct {
			Color  string  `json:"color"`
			Blocks []block `json:"blocks"`
		} `json:"attachments"`
		Blocks []block `json:"blocks"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Answer{Status: http.StatusBadRequest, Text: "invalid_payload"}
	}
	m.Text = p.Text
	if s.generic {
		var obj map[string]any
		if json.Unmarshal(body, &obj) != nil {
			return Answer{Status: http.StatusBadRequest, Text: "not a JSON object"}
		}
		return s.next()
	}
	blocks := p.Blocks
	for i, a := range p.Attachments {
		if i == 0 {
			m.Color = a.Color
		}
		blocks = append(blocks, a.Blocks...)
	}
	if p.Text == "" && len(blocks) == 0 {
		return Answer{Status: http.StatusBadRequest, Text: "no_text"}
	}
	if len(blocks) > 50 {
		return Answer{Status: http.StatusBadRequest, Text: "invalid_blocks"}
	}
	for _, b := range blocks {
		if !b.valid() {
			return Answer{Status: http.StatusBadRequest, Text: "invalid_blocks"}
		}
		for _, f := range b.Fields {
			m.Fields = append(m.Fields, f.Text)
		}
	}
	return s.next()
}

// Script replaces the script from now on: the next requests take answers
// in order, the last repeating (an outage and its end, say).
func (s *Server) Script(answers ...Answer) {
	if len(answers) == 0 {
		answers = []Answer{OK}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script, s.scripted = answers, 0
}

// next takes the script's next answer.
func (s *Server) next() Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	ans := s.script[min(s.scripted, len(s.script)-1)]
	s.scripted++
	return ans
}

// Messages returns every request received so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.got...)
}

// Accepted returns the messages that were answered 200.
func (s *Server) Accepted() []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Status == http.StatusOK {
			out = append(out, m)
		}
	}
	return out
}

// block is the part of a Block Kit block the fake checks.
type block struct {
	Type string `json:"type"`
	Text *struct {
		Text string `json:"text"`
	} `json:"text"`
	Fields []struct {
		Text string `json:"text"`
	} `json:"fields"`
}

// valid applies Slack's length limits: header 150 characters, section text
// 3000, at most 10 fields of 2000 each.
func (b block) valid() bool {
	limit := 3000
	if b.Type == "header" {
		limit = 150
	}
	if b.Text != nil && (b.Text.Text == "" || utf8.RuneCountInString(b.Text.Text) > limit) {
		return false
	}
	if len(b.Fields) > 10 {
		return false
	}
	for _, f := range b.Fields {
		if f.Text == "" || utf8.RuneCountInString(f.Text) > 2000 {
			return false
		}
	}
	return true
}
