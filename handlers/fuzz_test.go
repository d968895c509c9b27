package handlers

// Fuzz tests of the parsers of outside input that need no appliance: JSON
// bodies (the API's and the node API's), forms, and the values read from
// URLs. Each must refuse bad input with a 4xx error that says what is
// wrong, and never panic. web/fuzz_test.go sends the same kinds of input
// to a running appliance.

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"conclave/cluster"
)

// jsonTargets are the shapes request bodies are read into.
var jsonTargets = []func() any{
	func() any { return new(struct{ Username, Password string }) },
	func() any {
		return new(struct {
			Role     *string `json:"role"`
			Password *string `json:"password"`
			Disabled *bool   `json:"disabled"`
		})
	},
	func() any {
		return new(struct {
			MemberIDs []string `json:"memberIds"`
			PrimaryID string   `json:"primaryId"`
			Confirm   string   `json:"confirm"`
		})
	},
	func() any { return new(cluster.PrepareRequest) },
	func() any { return new(cluster.OperationRequest) },
	func() any { return new([]cluster.ResetServer) },
	func() any { return new(cluster.Command) },
	func() any { return new(map[string]any) },
}

func wantClientError(t *testing.T, err error) {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an API error", err, err)
	}
	if ae.Status < 400 || ae.Status > 499 || strings.TrimSpace(ae.Message) == "" {
		t.Fatalf("error status %d %q", ae.Status, ae.Message)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"username":"a","password":"b"}`, `{"role":null}`, `[{"id":"x","address":"y"}]`, `{"a":` + strings.Repeat("[", 5000),
		`{"username":"a\u0000"}`, `{} {}`, `{"memberIds":["a",1]}`, "\xff\xfe", `{"type":"user.create","data":{"x":1}}`, `{"ca":{"certPem":"AAAA"}}`} {
		f.Add(uint8(0), "application/json", []byte(s))
	}
	f.Add(uint8(3), "text/plain", []byte(`{}`))
	f.Add(uint8(5), "application/json; charset=utf-8", []byte(`[]`))
	f.Fuzz(func(t *testing.T, target uint8, contentType string, body []byte) {
		v := jsonTargets[int(target)%len(jsonTargets)]()
		r := httptest.NewRequest(http.MethodPost, "/api/v1/x", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", contentType)
		err := decodeJSON(httptest.NewRecorder(), r, v)
		if err != nil {
			wantClientError(t, err)
		}
	})
}

func FuzzParseForm(f *testing.F) {
	for _, s := range []string{"username=admin&password=x", "a=%00", "a=%ff%fe", "%zz", strings.Repeat("a=b&", 20000), "confirm=Restore"} {
		f.Add("application/x-www-form-urlencoded", s)
	}
	f.Add("multipart/form-data; boundary=x", "--x--")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/users", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if err := parseForm(httptest.NewRecorder(), r); err != nil {
			wantClientError(t, err)
			return
		}
		for k, vs := range r.PostForm {
			for _, v := range append(vs, k) {
				if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
					t.Fatalf("form value %q accepted", v)
				}
			}
		}
	})
}

// FuzzURLValues: the sign-in return path, a replica's address and the
// Activity Center's filter, all typed or linked by people.
func FuzzURLValues(f *testing.F) {
	for _, s := range []string{"/", "//evil.example", "/\t/evil", "https://x/", "/activity?type=a", "10.0.0.5", "[::1]:8441", "host:8441/x", "2026-01-02T03:04:05Z", "\\\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ret := safeReturn(s); ret != "/" && (!strings.HasPrefix(ret, "/") || strings.HasPrefix(ret, "//") || strings.ContainsAny(ret, "\\\t\r\n ")) {
			t.Fatalf("safeReturn(%q) = %q leads away", s, ret)
		}
		if addr, err := normalizeAddress(s); err != nil {
			wantClientError(t, err)
		} else if addr == "" || strings.ContainsAny(addr, " /?#@") {
			t.Fatalf("normalizeAddress(%q) = %q", s, addr)
		}
		q := url.Values{"type": {s}, "member": {s}, "actor": {s}, "since": {s}, "until": {s}}
		if _, err := parseEventFilter(q); err != nil {
			wantClientError(t, err)
		}
		if label := returnLabel(s); label == "" {
			t.Fatal("no label")
		}
	})
}
