// Package handlers holds the HTTP handlers: browser pages, the JSON API
// under /api/v1 and the status endpoints. Handlers are thin: they parse and
// check input, call the cluster, auth or store, and render a view.
package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/a-h/templ"

	"conclave/auth"
	"conclave/cluster"
	"conclave/session"
	"conclave/store"
	"conclave/views"
	"conclave/workflow"
)

// Deps are what the handlers need.
type Deps struct {
	Store    *store.Store
	Node     *cluster.Node
	Auth     *auth.Service
	OIDC     *auth.OIDC
	Sessions *session.Store
	Log      *slog.Logger
	Version  string
	// ApplianceURL is this appliance's own https:// address.
	ApplianceURL string
	// OIDCOverride, when set, is the OIDC configuration from flags or the
	// environment; it wins over the settings page.
	OIDCOverride *cluster.OIDCSettings
	// Started is closed once the appliance finished starting.
	Started <-chan struct{}
	// Workflow is the access-request workflow.
	Workflow *workflow.Service
}

// Handlers serves the console and the API.
type Handlers struct {
	Deps
	// What the busiest pages read, shared between viewers (viewcache.go).
	clusterViews *viewCache[clusterData]
	networkViews *viewCache[networkData]
	chrome       *viewCache[pageChrome]
}

// viewMaxAge is how old the shared data of a page may be: member states
// and link round trips change once a second.
const viewMaxAge = time.Second

// New returns the handlers.
func New(d Deps) *Handlers {
	return &Handlers{Deps: d,
		clusterViews: newViewCache[clusterData](viewMaxAge, d.Node.AppliedIndex),
		networkViews: newViewCache[networkData](viewMaxAge, d.Node.AppliedIndex),
		chrome:       newViewCache[pageChrome](viewMaxAge, d.Node.AppliedIndex),
	}
}

// Limits on request bodies.
const (
	maxJSONBody = 1 << 20
	maxFormBody = 64 << 10
)

// apiError is the JSON API's error body.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(field, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...), Field: field}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError answers an API request with the error in JSON. Errors that are
// not an *apiError are turned into a status by their kind.
func (h *Handlers) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := h.errorStatus(r, err)
	writeJSON(w, status, body)
}

func (h *Handlers) errorStatus(r *http.Request, err error) (int, *apiError) {
	var ae *apiError
	var rej *store.Rejection
	var thr *auth.ThrottledError
	switch {
	case errors.As(err, &ae):
		return ae.Status, ae
	case errors.As(err, &rej):
		status := http.StatusConflict
		if rej.Field != "" && rej.Field != "id" {
			status = http.StatusUnprocessableEntity
		}
		return status, &apiError{Message: rej.Message, Field: rej.Field}
	case errors.As(err, &thr):
		return http.StatusTooManyRequests, &apiError{Message: thr.Error()}
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, &apiError{Message: "not found"}
	case errors.Is(err, cluster.ErrNotLeader):
		return http.StatusServiceUnavailable, &apiError{Message: "this appliance is not the primary and cannot make changes now; try again in a few seconds or use the primary"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, &apiError{Message: "the cluster did not answer in time; try again"}
	}
	h.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusServiceUnavailable, &apiError{Message: "the appliance could not complete the request; its log has the details"}
}

// decodeJSON reads a JSON body into v: the content type must be JSON, the
// body at most 1 MiB, one object with no unknown fields, nothing after it,
// and no NUL character in its strings.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		return &apiError{Status: http.StatusUnsupportedMediaType, Message: "send the body as JSON with Content-Type: application/json"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			return jsonError(err)
		}
		return badRequest("", "the body must hold one JSON object and nothing after it")
	}
	if field := nulField(reflect.ValueOf(v), ""); field != "" {
		return badRequest(field, "field %q holds a NUL character (\\u0000), which is not allowed", field)
	}
	return nil
}

// nulField names the first string field of v (by its JSON name) that holds
// a NUL character: the database refuses them.
func nulField(v reflect.Value, name string) string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return nulField(v.Elem(), name)
	case reflect.String:
		if strings.ContainsRune(v.String(), 0) {
			return name
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			fname, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if fname == "-" {
				continue
			}
			if fname == "" {
				fname = f.Name
			}
			if name != "" {
				fname = name + "." + fname
			}
			if got := nulField(v.Field(i), fname); got != "" {
				return got
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if got := nulField(v.Index(i), fmt.Sprintf("%s[%d]", name, i)); got != "" {
				return got
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if got := nulField(iter.Key(), name); got != "" {
				return got
			}
			if got := nulField(iter.Value(), name+"."+fmt.Sprint(iter.Key())); got != "" {
				return got
			}
		}
	}
	return ""
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", big.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "the body ends in the middle of the JSON object")
	case errors.As(err, &syn):
		return badRequest("", "the body is not valid JSON (at byte %d): %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return badRequest("", "the body must be a JSON object, not %s", jsonValueName(typ.Value))
	case errors.As(err, &typ):
		return badRequest(typ.Field, "field %q must be %s, not %s", typ.Field, jsonKind(typ.Type), jsonValueName(typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(field, "unknown field %q", field)
	}
	return badRequest("", "the body could not be read as JSON: %v", err)
}

// jsonKind names, for a person, the JSON value a Go type is read from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// jsonValueName names the kind of JSON value the decoder found ("number",
// "string", "array", "object", "bool" or a number's text).
func jsonValueName(v string) string {
	switch v {
	case "array":
		return "a list"
	case "object":
		return "an object"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "number":
		return "a number"
	}
	if strings.HasPrefix(v, "number") {
		return "the number" + strings.TrimPrefix(v, "number")
	}
	return v
}

// parseForm reads a URL-encoded form body of at most 64 KiB whose values are
// UTF-8 without NUL characters (the database refuses those).
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-www-form-urlencoded" {
			return &apiError{Status: http.StatusUnsupportedMediaType, Message: "send the form as application/x-www-form-urlencoded, as the console's pages do"}
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the form is larger than %d bytes", big.Limit)}
		}
		return badRequest("", "the form could not be read: %v", err)
	}
	for k, vs := range r.PostForm {
		for _, v := range append([]string{k}, vs...) {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				name := strings.ToValidUTF8(strings.ReplaceAll(k, "\x00", ""), "?")
				return badRequest(name, "the form field %q holds a NUL character or bytes that are not UTF-8", name)
			}
		}
	}
	return nil
}

func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	// The page is rendered into memory and sent in one write: templ's many
	// small writes otherwise become several chunks, TLS records and system
	// calls per page (see the console benchmark in bench/).
	buf := pageBuffers.Get().(*bytes.Buffer)
	defer pageBuffers.Put(buf)
	buf.Reset()
	c.Render(r.Context(), buf)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// renderError shows an error page in the console.
func (h *Handlers) renderError(w http.ResponseWriter, r *http.Request, err error) {
	status, ae := h.errorStatus(r, err)
	h.renderMessage(w, r, status, ae.Message)
}

func (h *Handlers) renderMessage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	title := http.StatusText(status)
	switch status {
	case http.StatusForbidden:
		title = "Not allowed"
	case http.StatusNotFound:
		title = "Not found"
	}
	render(w, r, status, views.ErrorView(views.ErrorPage{Page: h.page(r, title, ""), Status: status, Message: msg}))
}

// remoteAddr is the client's IP address, without the port.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// safeReturn keeps a post-sign-in redirect on this site: a path of this
// appliance, without a scheme, host, backslash or control character (a
// browser drops tabs and newlines, so "/\t/evil.example" would lead away).
func safeReturn(s string) string {
	if s == "" || s[0] != '/' || len(s) > 2048 || strings.HasPrefix(s, "//") || !utf8.ValidString(s) {
		return "/"
	}
	for _, c := range s {
		if c == '\\' || unicode.IsControl(c) || unicode.IsSpace(c) {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return s
}

// timeout bounds work done for one request.
func timeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 15*time.Second)
}
