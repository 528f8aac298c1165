package auditapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// The client lists a page of dead letters, follows the cursor to the next
// page, and tells an answer it can act on (404) from one it cannot.
func ExampleClient() {
	// A stand-in for the auditor's admin API: two pages of dead letters.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dead-letters", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("cursor") == "" {
			fmt.Fprint(w, `{"items":[{"id":"EVENTS@mjuohs00:7:erp","event_id":"shop:msg_7","destination":"erp","reason":"max_attempts","attempts":6}],"next_cursor":"c1"}`)
			return
		}
		fmt.Fprint(w, `{"items":[{"id":"EVENTS@mjuohs00:3:erp","event_id":"shop:msg_3","destination":"erp","reason":"permanent_failure","attempts":1}]}`)
	})
	mux.HandleFunc("GET /v1/events/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(auditapi.Error{Code: auditapi.CodeNotFound, Message: "no event with id " + r.PathValue("id")})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	c := &auditapi.Client{BaseURL: srv.URL, Token: "the auditor.admin_token", RequestedBy: "example"}
	q := url.Values{"destination": {"erp"}, "since": {"24h"}}
	for {
		page, err := c.ListDeadLetters(ctx, q)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, dl := range page.Items {
			fmt.Println(dl.ID, dl.Reason, dl.Attempts)
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}

	_, err := c.GetEvent(ctx, "shop:msg_404")
	var apiErr *auditapi.Error
	switch {
	case errors.Is(err, auditapi.ErrNotFound) && errors.As(err, &apiErr):
		fmt.Println(apiErr.Status, apiErr.Message)
	case errors.Is(err, auditapi.ErrUnreachable):
		fmt.Println("is the auditor running?")
	}
	// Output:
	// EVENTS@mjuohs00:7:erp max_attempts 6
	// EVENTS@mjuohs00:3:erp permanent_failure 1
	// 404 no event with id shop:msg_404
}
