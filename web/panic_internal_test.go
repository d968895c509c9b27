package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A handler that panics gets the request an answer in its own language: a
// console page for a person, JSON for a script, and the stack in the log.
func TestPanicAnswersPeopleWithAPageAndScriptsWithJSON(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	h := recoverPanics(log, "gamma")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		var q []int
		_ = q[1:] // the kind of bug it is there for
	}))
	for _, tc := range []struct {
		path, contentType string
		wants             []string
	}{
		{"/cluster/isolate", "text/html; charset=utf-8", []string{"<!doctype html>", "Internal error · gamma", "internal error while answering this request", "Activity page", `href="/"`}},
		{"/api/v1/cluster/isolate", "application/json; charset=utf-8", []string{`{"error": "internal error; the appliance's log has the details"}`}},
		{"/node/v1/propose", "application/json; charset=utf-8", []string{`"error"`}},
	} {
		logged.Reset()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("%s: status %d; want 500", tc.path, rec.Code)
		}
		if got := rec.Header().Get("Content-Type"); got != tc.contentType {
			t.Errorf("%s: Content-Type %q; want %q", tc.path, got, tc.contentType)
		}
		for _, want := range tc.wants {
			if !strings.Contains(string(body), want) {
				t.Errorf("%s: the answer does not hold %q:\n%s", tc.path, want, body)
			}
		}
		if !strings.Contains(logged.String(), "handler panic") || !strings.Contains(logged.String(), "panic_internal_test.go") {
			t.Errorf("%s: the log does not hold the panic with its stack:\n%s", tc.path, logged.String())
		}
	}
}
