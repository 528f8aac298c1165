package demo

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func getOrders(t *testing.T, h http.Handler, query string) (orders []Order, next string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders"+query, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /orders%s: %d %s", query, rec.Code, rec.Body)
	}
	var answer struct {
		Orders     []Order `json:"orders"`
		NextCursor string  `json:"next_cursor"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatal(err)
	}
	return answer.Orders, answer.NextCursor
}

func TestOrdersArePagedAfterACursor(t *testing.T) {
	t.Parallel()
	// Three at start and one every 10s: 7 orders 40s after the start.
	h := NewOrders(time.Now().Add(-40*time.Second-time.Second/2), 10*time.Second)
	var ids []int
	cursor := ""
	for range 10 {
		q := "?limit=3"
		if cursor != "" {
			q += "&after=" + cursor
		}
		page, next := getOrders(t, h, q)
		for _, o := range page {
			ids = append(ids, o.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) != 7 || ids[0] != 1 || ids[6] != 7 {
		t.Errorf("read %v, want orders 1 to 7 once each", ids)
	}
	if page, next := getOrders(t, h, "?after=7"); len(page) != 0 || next != "" {
		t.Errorf("after the last: %v %q", page, next)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders?after=x", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a bad cursor: %d", rec.Code)
	}
}

func TestPartnerAnswersDeliveriesWithABody(t *testing.T) {
	t.Parallel()
	h := Partner(slog.New(slog.DiscardHandler))
	req := httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(`{"order_id": 1}`))
	req.Header.Set("Idempotency-Key", "orders:o-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"received":"orders:o-1"`) || rec.Header().Get("Location") == "" {
		t.Errorf("delivery answered %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	req = httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(`{"demo": "broken"}`))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a broken event answered %d", rec.Code)
	}
	if page, next := getOrders(t, h, ""); len(page) != 3 || next != "" {
		t.Errorf("the partner's orders API at start: %v next %q, want the first 3 orders on one page", page, next)
	}
}
