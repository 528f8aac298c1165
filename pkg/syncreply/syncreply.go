// Package syncreply is the contract between ingress and the dispatcher for
// synchronous publishes (POST /v1/events?wait=5s): the event carries a reply
// subject and a deadline in two headers; after an attempt of such an event
// the dispatcher, if the deadline has not passed, publishes the attempt's
// record with the destination's response (headers safe to pass on, body
// bounded) to that subject with core NATS, fire and forget; the ingress
// replica that stored the event listens there and answers its caller. The
// delivery itself stays the usual one: the reply changes nothing about
// retries, acks or dead letters, and a reply nobody hears is lost harmlessly.
package syncreply

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Headers an event waited for carries.
const (
	// HeaderReplyTo is the subject the attempt's reply goes to.
	HeaderReplyTo = "Switchyard-Reply-To"
	// HeaderReplyBy is when the waiter stops listening (RFC 3339): no
	// reply is sent after it.
	HeaderReplyBy = "Switchyard-Reply-By"
)

// Bounds of what a reply carries from the destination's response.
const (
	// MaxBody is the most of the response body carried.
	MaxBody = 64 << 10
	// MaxHeaders is the most response headers carried.
	MaxHeaders = 32
	// MaxHeaderValue bounds one header value.
	MaxHeaderValue = 1024
)

// DefaultHeaders are the response headers passed on to a waiting caller:
// what describes the answer's body and where the created thing is, never
// credentials or cookies. A destination may add names (sync_headers).
var DefaultHeaders = []string{
	"Content-Type", "Content-Language", "Content-Location", "Location", "ETag", "Last-Modified",
	"Retry-After", "Link", "X-Request-Id", "X-Correlation-Id", "Request-Id",
}

// forbidden are headers never passed on, whatever a configuration says:
// credentials, cookies, and the hop-by-hop headers of the destination's
// connection.
var forbidden = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Www-Authenticate": true, "Proxy-Authenticate": true,
	"Set-Cookie": true, "Set-Cookie2": true, "Cookie": true,
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Te": true, "Trailer": true,
	"Upgrade": true, "Content-Length": true, "Content-Encoding": true,
}

// CheckHeaderName refuses a header a configuration may not add to those
// passed on.
func CheckHeaderName(name string) error {
	c := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
	if c == "" || strings.ContainsAny(c, " :\r\n") {
		return fmt.Errorf("%q is not a header name", name)
	}
	if forbidden[c] {
		return fmt.Errorf("%s is never passed on (credentials, cookies and connection headers stay with Switchyard)", c)
	}
	return nil
}

// Filter keeps the response headers that may be passed on: the default
// ones and extra, never a forbidden one, bounded in number and size.
func Filter(h http.Header, extra []string) []*switchyardv1.ReplyHeader {
	var out []*switchyardv1.ReplyHeader
	add := func(name string) {
		c := textproto.CanonicalMIMEHeaderKey(name)
		if forbidden[c] {
			return
		}
		for _, v := range h.Values(c) {
			if len(out) == MaxHeaders {
				return
			}
			if len(v) > MaxHeaderValue {
				v = v[:MaxHeaderValue]
			}
			out = append(out, &switchyardv1.ReplyHeader{Name: c, Value: strings.ToValidUTF8(v, "\uFFFD")})
		}
	}
	seen := map[string]bool{}
	for _, names := range [][]string{DefaultHeaders, extra} {
		for _, n := range names {
			c := textproto.CanonicalMIMEHeaderKey(n)
			if !seen[c] {
				seen[c] = true
				add(c)
			}
		}
	}
	return out
}

// Due returns the reply subject of an event whose waiter may still listen
// at now.
func Due(h nats.Header, now time.Time) (string, bool) {
	subject := h.Get(HeaderReplyTo)
	if subject == "" {
		return "", false
	}
	by, err := time.Parse(time.RFC3339Nano, h.Get(HeaderReplyBy))
	if err != nil || !now.Before(by) {
		return "", false
	}
	return subject, true
}

// Set marks an event for a reply to subject until by.
func Set(h nats.Header, subject string, by time.Time) {
	h.Set(HeaderReplyTo, subject)
	h.Set(HeaderReplyBy, by.UTC().Format(time.RFC3339Nano))
}

// Publish sends a reply with core NATS: no acknowledgement is waited for,
// since a waiter that went away needs nothing.
func Publish(nc *nats.Conn, subject string, r *switchyardv1.DeliveryReply) error {
	data, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode delivery reply: %w", err)
	}
	if err := nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish delivery reply: %w", err)
	}
	return nil
}

// Decode reads a reply.
func Decode(data []byte) (*switchyardv1.DeliveryReply, error) {
	var r switchyardv1.DeliveryReply
	if err := proto.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode delivery reply: %w", err)
	}
	return &r, nil
}
