package signing_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// A Standard Webhooks request (the specification's own test vector) is
// verified against the source's secret, within the timestamp tolerance;
// the same request with its body changed is not.
func ExampleStandardWebhooks_Verify() {
	v, err := signing.New("standard-webhooks", signing.Options{
		Secrets:   []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		Tolerance: 5 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := http.Header{}
	h.Set(signing.HeaderWebhookID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(signing.HeaderWebhookTimestamp, "1614265330")
	h.Set(signing.HeaderWebhookSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	signedAt := time.Unix(1614265330, 0)

	got, err := v.Verify(signing.Request{Header: h, Body: body, Now: signedAt.Add(30 * time.Second)})
	fmt.Println(got.DeliveryID, got.Timestamp.UTC().Format(time.RFC3339), err)

	_, err = v.Verify(signing.Request{Header: h, Body: []byte(`{"test": 1}`), Now: signedAt})
	fmt.Println(errors.Is(err, signing.ErrBadSignature))

	_, err = v.Verify(signing.Request{Header: h, Body: body, Now: signedAt.Add(time.Hour)})
	fmt.Println(errors.Is(err, signing.ErrStaleTimestamp))
	// Output:
	// msg_p5jXN8AQM9LWM0D4loKWxJek 2021-02-25T15:02:10Z <nil>
	// true
	// true
}

// A GitHub webhook carries the hex HMAC-SHA256 of its body in
// X-Hub-Signature-256; the delivery id and event type come from GitHub's
// headers.
func ExampleGitHub_Verify() {
	const secret = "It's a Secret to Everybody"
	v, err := signing.New("github", signing.Options{Secrets: []string{secret}})
	if err != nil {
		fmt.Println(err)
		return
	}
	body := []byte(`{"action":"opened","number":42}`)
	mac := hmac.New(sha256.New, []byte(secret)) // what GitHub computes
	mac.Write(body)
	h := http.Header{}
	h.Set(signing.HeaderGitHubSignature256, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	h.Set(signing.HeaderGitHubDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	h.Set(signing.HeaderGitHubEvent, "pull_request")

	got, err := v.Verify(signing.Request{Header: h, Body: body, Now: time.Now()})
	fmt.Println(got.DeliveryID, got.EventType, err)

	h.Del(signing.HeaderGitHubSignature256)
	_, err = v.Verify(signing.Request{Header: h, Body: body, Now: time.Now()})
	fmt.Println(errors.Is(err, signing.ErrMissingSignature))
	// Output:
	// 72d3162e-cc78-11e3-81ab-4c9367dc0958 pull_request <nil>
	// true
}
