package web

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"conclave/handlers"
	"conclave/static"
	"conclave/views"
)

// NewRouter is the appliance's HTTP handler: Routes, as it is served.
func NewRouter(h *handlers.Handlers, log *slog.Logger) http.Handler {
	return Routes(h, log)
}

// Routes wires every route with its middleware. State-changing routes are
// only ever POST, PATCH or DELETE, and every one of them passes the
// cross-origin check. It builds nothing but the router (no handler runs), so
// tests can list the routes with chi.Walk.
func Routes(h *handlers.Handlers, log *slog.Logger) chi.Router {
	r := chi.NewRouter()
	member := "" // no node when tests only list the routes
	if h.Node != nil {
		member = h.Node.Name()
	}
	// The security headers come before the cross-origin check, so that its
	// refusals carry them too.
	r.Use(recoverPanics(log, member), logRequests(log), securityHeaders, crossOriginProtection, rejectUnreadableURL)

	// No sign-in.
	r.Get("/healthz", h.Healthz)
	r.Get("/readyz", h.Readyz)
	r.Get("/service/notification/v4/Status/Availability", h.Availability)
	static := http.StripPrefix("/static/", staticFiles())
	r.Method(http.MethodGet, "/static/*", static)
	r.Method(http.MethodHead, "/static/*", static)

	// The node API: appliances talking to each other.
	r.Get("/node/v1/info", h.NodeInfo)
	r.Post("/node/v1/enroll/prepare", h.EnrollPrepare)
	r.Post("/node/v1/enroll/credentials", h.EnrollCredentials)
	r.Post("/node/v1/enroll/snapshot", h.EnrollSnapshot)
	r.Post("/node/v1/enroll/abort", h.EnrollAbort)
	r.Group(func(r chi.Router) {
		r.Use(h.RequirePeer)
		r.Get("/node/v1/status", h.NodeStatus)
		r.Get("/node/v1/checksums", h.NodeChecksums)
		r.Post("/node/v1/propose", h.NodePropose)
		r.Post("/node/v1/leave", h.NodeLeave)
		r.Post("/node/v1/standalone", h.NodeStandalone)
		r.Post("/node/v1/enroll/complete", h.EnrollComplete)
		r.Post("/node/v1/operations/{kind}", h.NodeStartOperation)
		r.Post("/node/v1/reset/follow", h.NodeResetFollow)
		r.Post("/node/v1/reset/lead", h.NodeResetLead)
		// Link latency.
		r.Get("/node/v1/probe", h.NodeProbe)
		r.Get("/node/v1/links/history", h.NodeLinkHistory)
		r.Post("/node/v1/links/test", h.NodeLinkTest)
	})

	r.Group(func(r chi.Router) {
		r.Use(h.Authenticate)
		r.Get("/login", h.LoginPage)
		r.Post("/login", h.Login)
		r.Post("/logout", h.Logout)
		r.Get("/auth/oidc/start", h.OIDCStart)
		r.Get("/auth/oidc/callback", h.OIDCCallback)
		r.Post("/api/v1/auth/token", h.IssueToken)
		// Prometheus: a bearer token (or session) of any role; 401 without.
		r.Get("/metrics", h.Metrics)

		// Signed in: every role may read.
		r.Group(func(r chi.Router) {
			r.Use(h.RequireUser)
			r.Get("/", h.ClusterPage)
			r.Get("/operations/{id}", h.OperationPage)
			r.Get("/activity", h.ActivityPage)
			r.Get("/users", h.UsersPage)
			r.Get("/settings", h.SettingsPage)

			r.Delete("/api/v1/auth/token", h.RevokeToken)
			r.Get("/api/v1/cluster/members", h.APIMembers)
			r.Get("/api/v1/cluster/status", h.APIStatus)
			r.Get("/api/v1/operations/{id}", h.APIOperation)
			r.Get("/api/v1/events", h.APIEvents)
			r.Get("/api/v1/events/chain", h.APIAuditChain)
			r.Get("/api/v1/users", h.APIUsers)
			// Link latency: every role reads, and every role may run Test
			// link (probes only; Helpdesk changes nothing else).
			r.Get("/network", h.NetworkPage)
			r.Post("/network/test", h.NetworkTest)
			r.Get("/api/v1/cluster/links", h.APILinks)
			r.Post("/api/v1/cluster/links/test", h.APITestLink)
			// The access-request workflow (web/workflow_routes.go).
			workflowUserRoutes(h, r)

			// Administrators only.
			r.Group(func(r chi.Router) {
				r.Use(h.RequireAdmin)
				r.With(h.RequireWritable).Post("/users", h.CreateUserForm)
				r.With(h.RequireWritable).Post("/users/{id}/{field}", h.UpdateUserForm)
				r.With(h.RequireWritable).Post("/settings", h.SaveSettings)
				r.Get("/cluster/add-replica", h.AddReplicaPage)
				r.Post("/cluster/add-replica", h.AddReplicaLookup)
				r.Get("/cluster/add-replica/confirm", h.AddReplicaConfirmPage)
				r.Post("/cluster/add-replica/confirm", h.AddReplicaStart)
				r.With(approvalFormAction).Get("/enroll/authorize", h.EnrollAuthorizePage)
				r.Post("/enroll/authorize", h.EnrollAuthorize)
				r.Get("/cluster/members/{id}/unjoin", h.UnjoinPage)
				r.Post("/cluster/members/{id}/unjoin", h.UnjoinStart)
				r.Get("/cluster/activate", h.ActivatePage)
				r.Post("/cluster/activate", h.ActivateStart)
				r.Post("/api/v1/cluster/members", h.APIAddReplica)
				r.Delete("/api/v1/cluster/members/{id}", h.APIUnjoin)
				r.Post("/api/v1/cluster/activate", h.APIActivate)
				r.Get("/cluster/members/{id}/failover", h.FailoverPage)
				r.Post("/cluster/members/{id}/failover", h.FailoverStart)
				r.Get("/cluster/reset", h.ResetPage)
				r.Post("/cluster/reset", h.ResetStart)
				r.Get("/cluster/unlock", h.UnlockPage)
				r.Post("/cluster/unlock", h.UnlockStart)
				r.Post("/api/v1/cluster/members/{id}/promote", h.APIFailover)
				r.Post("/api/v1/cluster/unlock", h.APIUnlock)
				r.Post("/api/v1/cluster/reset", h.APIReset)
				// Offline Workflow Mode (handlers/offline.go).
				r.Get("/cluster/isolate", h.IsolatePage)
				r.Post("/cluster/isolate", h.IsolateStart)
				r.Get("/cluster/reintegrate", h.ReintegratePage)
				r.Post("/cluster/reintegrate", h.ReintegrateStart)
				r.Post("/api/v1/cluster/isolate", h.APIIsolate)
				r.Post("/api/v1/cluster/reintegrate", h.APIReintegrate)
				r.With(h.RequireWritable).Post("/api/v1/users", h.APICreateUser)
				r.With(h.RequireWritable).Patch("/api/v1/users/{id}", h.APIUpdateUser)
				r.With(h.RequireWritable).Delete("/api/v1/users/{id}", h.APIDisableUser)
				// The access-request workflow (web/workflow_routes.go).
				workflowAdminRoutes(h, r)

				// Backup and restore (handlers/backups.go).
				r.Get("/backups", h.BackupsPage)
				r.Post("/backups", h.CreateBackupForm)
				r.Get("/backups/{name}", h.DownloadBackup)
				r.Post("/backups/restore", h.RestoreForm)
				r.Get("/api/v1/backups", h.APIBackups)
				r.Post("/api/v1/backups", h.APICreateBackup)
				r.Get("/api/v1/backups/{name}", h.DownloadBackup)
				r.Post("/api/v1/backups/restore", h.APIRestore)

				// Data keys and their rotation (handlers/keys.go).
				r.Get("/keys", h.KeysPage)
				r.Post("/keys/rotate", h.RotateKeyForm)
				r.Get("/api/v1/keys", h.APIKeys)
				r.Post("/api/v1/keys/rotate", h.APIRotateKey)
			})
		})
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			jsonError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
		http.Error(w, "Not found. The console starts at /.", http.StatusNotFound)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		jsonError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	})
	return r
}

// rejectUnreadableURL refuses a path with a control character and a query
// with a NUL character, or either with bytes that are not UTF-8: no page or
// ID has them, and the database refuses NUL and bytes that are not UTF-8,
// so they would otherwise end in a server error.
func rejectUnreadableURL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := !plainText(r.URL.Path)
		for k, vs := range r.URL.Query() {
			for _, v := range append(vs, k) {
				bad = bad || !utf8.ValidString(v) || strings.ContainsRune(v, 0)
			}
		}
		if !bad {
			next.ServeHTTP(w, r)
			return
		}
		msg := "the address holds a control character or bytes that are not UTF-8; check the link"
		if strings.HasPrefix(r.URL.Path, "/api/") {
			jsonError(w, http.StatusBadRequest, msg)
			return
		}
		http.Error(w, msg, http.StatusBadRequest)
	})
}

// plainText tells whether s is UTF-8 without control characters.
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}

func staticFiles() http.Handler {
	fs := http.FileServerFS(static.FS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fs.ServeHTTP(w, r)
	})
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\": %q}\n", msg)
}

// crossOriginProtection refuses state-changing requests that a browser
// made on behalf of another site (Sec-Fetch-Site / Origin checks). Scripts
// with bearer tokens send neither header and pass.
func crossOriginProtection(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jsonError(w, http.StatusForbidden, "cross-origin request refused: changes can only be made from this appliance's own pages")
	}))
	return cop.Handler(next)
}

// approvalFormAction lets the approval form of Add Replica, on the
// appliance being added, lead back to the primary that asked: the form
// posts to this appliance, whose answer redirects the browser to the
// primary's confirmation page (with the grant), and browsers hold that
// redirect to the form's form-action. Only an https origin of a primary's
// Add Replica page is added; the handler refuses any other return address.
func approvalFormAction(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := url.Parse(r.URL.Query().Get("return"))
		if err == nil && u.Scheme == "https" && u.User == nil && u.Path == "/cluster/add-replica/confirm" && cspHost.MatchString(u.Host) {
			h := w.Header()
			h.Set("Content-Security-Policy", strings.Replace(h.Get("Content-Security-Policy"), "form-action 'self'", "form-action 'self' https://"+u.Host, 1))
		}
		next.ServeHTTP(w, r)
	})
}

// cspHost is a host[:port] that may stand in a Content-Security-Policy:
// a name or IPv4 address, or an IPv6 address in brackets.
var cspHost = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// securityHeaders sets the Content-Security-Policy and the usual headers.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Strict-Transport-Security", "max-age=63072000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func logRequests(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(rec, r)
			level := slog.LevelDebug
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
		})
	}
}

func recoverPanics(log *slog.Logger, member string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
					internalError(w, r, member)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// internalError answers a request whose handler failed unexpectedly:
// scripts get JSON, people a console page that says what to check. The
// page is built from nothing but the member's name, since whatever failed
// may fail again.
func internalError(w http.ResponseWriter, r *http.Request, member string) {
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/node/") {
		jsonError(w, http.StatusInternalServerError, "internal error; the appliance's log has the details")
		return
	}
	msg := "The appliance hit an internal error while answering this request, and its log has the details (look for \"handler panic\"). " +
		"Check the cluster view and the Activity page to see whether the change was made before you try again"
	page := views.ErrorPage{Page: views.Page{Title: "Internal error", ClusterName: "Conclave", Self: views.SelfBadge{Name: member}},
		Status: http.StatusInternalServerError, Message: msg}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	views.ErrorView(page).Render(r.Context(), w)
}
