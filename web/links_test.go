package web_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

// linkRow is a link in GET /api/v1/cluster/links.
type linkRow struct {
	From, To, FromName, ToName, Level string
	Reachable                         *bool
	Stale                             bool
	CurrentMs, MinMs, AvgMs, MaxMs    *float64
	LossPercent                       *float64
	MeasuredAt                        *time.Time
	Reason                            string
}

func (l linkRow) String() string {
	f := func(p *float64) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprintf("%.2f", *p)
	}
	r := "null"
	if l.Reachable != nil {
		r = fmt.Sprint(*l.Reachable)
	}
	return fmt.Sprintf("%s→%s %s reachable=%s now=%s min=%s avg=%s max=%s %s", l.FromName, l.ToName, l.Level, r, f(l.CurrentMs), f(l.MinMs), f(l.AvgMs), f(l.MaxMs), l.Reason)
}

// linksOf asks app for every link, by "from->to" member names.
func linksOf(t *testing.T, app *testapp.App, token string) map[string]linkRow {
	t.Helper()
	var ls []linkRow
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/cluster/links", nil, &ls); status != http.StatusOK {
		t.Fatalf("links: status %d", status)
	}
	out := map[string]linkRow{}
	for _, l := range ls {
		out[l.FromName+"->"+l.ToName] = l
	}
	return out
}

// waitLinks asks app for the links until cond holds, until the deadline.
func waitLinks(t *testing.T, app *testapp.App, token string, deadline time.Time, what string, cond func(map[string]linkRow) bool) map[string]linkRow {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ls := linksOf(t, app, token)
		if cond(ls) {
			return ls
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, l := range ls {
				lines = append(lines, l.String())
			}
			slices.Sort(lines)
			t.Fatalf("%s: not by the deadline; %s's links:\n%s", what, app.Cfg.Name, strings.Join(lines, "\n"))
		}
		<-tick.C
	}
}

func allLevel(level string, n int) func(map[string]linkRow) bool {
	return func(ls map[string]linkRow) bool {
		if len(ls) != n {
			return false
		}
		for _, l := range ls {
			if l.Level != level {
				return false
			}
		}
		return true
	}
}

// waitEvents waits until app has n events of typ whose details match.
func waitEvents(t *testing.T, app *testapp.App, token, typ string, n int, match func(event) bool, within time.Duration) []event {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var got []event
		for _, e := range eventsOfType(t, app, token, typ) {
			if match(e) {
				got = append(got, e)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events after %s, want %d", len(got), typ, within, n)
		}
		<-tick.C
	}
}

func getPage(t *testing.T, app *testapp.App, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get(app.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// matrixLevels reads the level of every cell of the Network page's matrix,
// by "from->to".
func matrixLevels(body string) map[string]string {
	out := map[string]string{}
	rowRe := regexp.MustCompile(`(?s)<tr data-from="([^"]+)">(.*?)</tr>`)
	cellRe := regexp.MustCompile(`data-to="([^"]+)" data-level="([^"]+)"`)
	for _, row := range rowRe.FindAllStringSubmatch(body, -1) {
		for _, c := range cellRe.FindAllStringSubmatch(row[2], -1) {
			out[row[1]+"->"+c[1]] = c[2]
		}
	}
	return out
}

// threeOnNetwork is a cluster of alpha (the primary), beta and gamma on a
// network with faults.
func threeOnNetwork(t *testing.T) (*testnet.Network, *testapp.App, *testapp.App, *testapp.App) {
	t.Helper()
	net := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(net, "alpha"))
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(net, "beta"))
	gamma := testapp.Start(t, named("gamma"), testapp.WithNetwork(net, "gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	return net, alpha, beta, gamma
}

// Every member probes every other one. A known delay on one directed link
// shows as its round trip (within 2 ms) and turns only that link Warning,
// in the API and the Network page of another member; a cut link is Down
// within 3 s, and the outage and the recovery are one event each; a member
// that stops has its own links Unknown. A Helpdesk user reads everything
// and may run Test link, and changes nothing else.
func TestLinkLatencyDelayCutAndEvents(t *testing.T) {
	net, alpha, beta, gamma := threeOnNetwork(t)
	tok := alpha.AdminToken(t)
	btok := beta.AdminToken(t)

	waitLinks(t, alpha, tok, time.Now().Add(30*time.Second), "all six links OK", allLevel(cluster.LinkOK, 6))

	// /metrics: alpha's own links and its probing cost, for a token.
	resp, body := secSend(t, alpha, nil, secRequest{method: "GET", path: "/metrics", token: tok})
	for _, want := range []string{`conclave_link_up{from="alpha",to="beta",`, `conclave_link_up{from="alpha",to="gamma",`, `conclave_link_round_trip_seconds{from="alpha",to="gamma",`,
		`,level="OK"} 1`, `conclave_probe_sent_bytes_total{member="alpha"} `} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics: status %d, no %q in:\n%s", resp.StatusCode, want, secShort(body))
		}
	}
	if m := regexp.MustCompile(`conclave_probe_received_bytes_total\{member="alpha"\} (\d+)`).FindStringSubmatch(body); m == nil || m[1] == "0" {
		t.Errorf("/metrics: no probe bytes received counted: %v", m)
	}
	if c := alpha.Node.ProbeCounters(); c.Probes == 0 || c.BytesSent == 0 || c.BytesReceived == 0 {
		t.Errorf("probe counters: %+v", c)
	}

	// Helpdesk: reads the pages, runs Test link, changes nothing else.
	alpha.CreateUser(t, "helpdesk", secPassword, cluster.RoleHelpdesk)
	ids := map[string]string{"alpha": alpha.Node.ID(), "beta": beta.Node.ID(), "gamma": gamma.Node.ID()}
	hd := alpha.Client()
	alpha.Login(t, hd, "helpdesk", secPassword)
	hdTok := alpha.Token(t, "helpdesk", secPassword)
	before := secSnapshot(t, alpha)
	for _, path := range []string{"/network", "/network?range=day", "/", "/settings"} {
		if status, body := getPage(t, alpha, hd, path); status != http.StatusOK {
			t.Errorf("Helpdesk GET %s: status %d; %s", path, status, secShort(body))
		}
	}
	resp, body = secSend(t, alpha, hd, secRequest{method: "POST", path: "/network/test", form: url.Values{"from": {ids["beta"]}, "to": {ids["gamma"]}}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="link-test"`) || !strings.Contains(body, `data-direction="beta-&gt;gamma"`) || !strings.Contains(body, `data-direction="gamma-&gt;beta"`) {
		t.Errorf("Helpdesk Test link in the page: status %d, want the result of both directions; %s", resp.StatusCode, secShort(body))
	}
	var test cluster.LinkTest
	if status := alpha.JSON(t, hdTok, http.MethodPost, "/api/v1/cluster/links/test", map[string]string{"from": ids["alpha"], "to": ids["gamma"]}, &test); status != http.StatusOK {
		t.Fatalf("Helpdesk Test link through the API: status %d", status)
	}
	if len(test.Results) != 2 || test.Results[0].FromName != "alpha" || test.Results[1].FromName != "gamma" {
		t.Fatalf("Test link alpha ↔ gamma: %+v, want both directions", test.Results)
	}
	for _, r := range test.Results {
		if r.Sent != 10 || r.Received != 10 || r.AvgMs <= 0 || r.MinMs > r.AvgMs || r.AvgMs > r.MaxMs {
			t.Errorf("Test link %s → %s on a healthy link: %+v", r.FromName, r.ToName, r)
		}
	}
	var refused struct{ Error, Field string }
	if status := alpha.JSON(t, hdTok, http.MethodPost, "/api/v1/cluster/links/test", map[string]string{"from": ids["alpha"], "to": "no-such-member"}, &refused); status != http.StatusUnprocessableEntity || refused.Field != "to" {
		t.Errorf("Test link to a member that does not exist: status %d, %+v; want 422 naming the field to", status, refused)
	}
	resp, body = secSend(t, alpha, hd, secRequest{method: "POST", path: "/settings", form: url.Values{"clusterName": {"Helpdesk was here"}, "oidcRolesClaim": {"groups"}, "linkOkBelowMs": {"1"}}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Helpdesk changes the thresholds: status %d, want 403; %s", resp.StatusCode, secShort(body))
	}
	secNoDataChange(t, alpha, before, "Helpdesk on the Network page")
	waitEvents(t, alpha, tok, "ClusterLinkTested", 2, func(e event) bool { return e.Details["from"] != "" }, 10*time.Second)

	// A known delay on beta → gamma: every read and every write of beta's
	// connections to gamma waits it, so a probe's round trip grows by
	// twice the delay.
	const delay = 10 * time.Millisecond
	want := float64(2*delay) / float64(time.Millisecond)
	net.Delay("beta", "gamma", delay)
	ls := waitLinks(t, alpha, tok, time.Now().Add(30*time.Second), "beta → gamma round trip near "+fmt.Sprint(want)+" ms", func(ls map[string]linkRow) bool {
		l := ls["beta->gamma"]
		return l.CurrentMs != nil && math.Abs(*l.CurrentMs-want) <= 2
	})
	t.Logf("with a %s delay: %s", delay, ls["beta->gamma"])
	for k, l := range ls {
		wantLevel := cluster.LinkOK
		if k == "beta->gamma" {
			wantLevel = cluster.LinkWarning
		}
		if l.Level != wantLevel {
			t.Errorf("with a delay on beta → gamma, %s is %s, want %s", l, l.Level, wantLevel)
		}
	}
	if l := ls["beta->gamma"]; l.MaxMs == nil || *l.MaxMs < want-2 {
		t.Errorf("beta → gamma: the last minute's maximum %v is below the delayed round trip", l)
	}
	// The Network page of alpha shows the same: only that cell is Warning.
	admin := alpha.Client()
	alpha.Login(t, admin, "admin", testapp.AdminPassword)
	status, page := getPage(t, alpha, admin, "/network")
	levels := matrixLevels(page)
	if status != http.StatusOK || len(levels) != 6 {
		t.Fatalf("Network page: status %d, %d cells (%v), want 6", status, len(levels), levels)
	}
	for k, lv := range levels {
		if (k == "beta->gamma") != (lv == cluster.LinkWarning) || (k != "beta->gamma" && lv != cluster.LinkOK) {
			t.Errorf("Network page: %s is %s", k, lv)
		}
	}

	// Cut: Down within 3 s, on beta itself and in any other member's view.
	cutAt := time.Now()
	net.Cut("beta", "gamma")
	isDown := func(ls map[string]linkRow) bool {
		l := ls["beta->gamma"]
		return l.Level == cluster.LinkDown && l.Reachable != nil && !*l.Reachable
	}
	waitLinks(t, beta, btok, cutAt.Add(3*time.Second), "beta → gamma Down on beta within 3 s of the cut", isDown)
	ls = waitLinks(t, alpha, tok, cutAt.Add(3*time.Second), "beta → gamma Down on alpha within 3 s of the cut", isDown)
	for k, l := range ls {
		if k != "beta->gamma" && l.Level == cluster.LinkDown {
			t.Errorf("cutting beta → gamma made %s Down too", l)
		}
	}
	isBetaGamma := func(e event) bool { return e.Details["from"] == "beta" && e.Details["to"] == "gamma" }
	waitEvents(t, alpha, tok, "ClusterLinkDown", 1, isBetaGamma, 20*time.Second)

	net.Restore("beta", "gamma")
	net.Delay("beta", "gamma", 0)
	waitLinks(t, alpha, tok, time.Now().Add(30*time.Second), "all six links OK again", allLevel(cluster.LinkOK, 6))
	waitEvents(t, alpha, tok, "ClusterLinkRestored", 1, isBetaGamma, 20*time.Second)
	// Each change is one event (debounced, once per change).
	if n := len(waitEvents(t, alpha, tok, "ClusterLinkDown", 1, func(event) bool { return true }, time.Second)); n != 1 {
		t.Errorf("%d ClusterLinkDown events for one cut, want 1", n)
	}

	// gamma stops: its own measurements are unknown, never the last good
	// values; the links to it are Down.
	gamma.Stop(t)
	ls = waitLinks(t, alpha, tok, time.Now().Add(10*time.Second), "gamma's links Unknown, the links to it Down", func(ls map[string]linkRow) bool {
		return ls["gamma->alpha"].Level == cluster.LinkUnknown && ls["gamma->beta"].Level == cluster.LinkUnknown &&
			ls["alpha->gamma"].Level == cluster.LinkDown && ls["beta->gamma"].Level == cluster.LinkDown
	})
	for _, k := range []string{"gamma->alpha", "gamma->beta"} {
		if l := ls[k]; l.Reachable != nil || l.CurrentMs != nil || l.AvgMs != nil || l.MeasuredAt != nil || l.Reason == "" {
			t.Errorf("%s while gamma is stopped: %s, want no figures and a reason", k, l)
		}
	}
	if ls["alpha->beta"].Level != cluster.LinkOK || ls["beta->alpha"].Level != cluster.LinkOK {
		t.Errorf("alpha ↔ beta while gamma is stopped: %s, %s", ls["alpha->beta"], ls["beta->alpha"])
	}
}

// The Network page renders for one, three and five members: a matrix of
// every directed link (none for one member), and a chart per pair.
func TestNetworkPageSizes(t *testing.T) {
	names := []string{"m1", "m2", "m3", "m4", "m5"}
	apps := make([]*testapp.App, len(names))
	for i, n := range names {
		apps[i] = testapp.Start(t, named(n))
	}
	first := apps[0]
	c := first.Client()
	first.Login(t, c, "admin", testapp.AdminPassword)
	tok := first.AdminToken(t)
	check := func(n int) {
		t.Helper()
		if n > 1 {
			waitLinks(t, first, tok, time.Now().Add(30*time.Second), fmt.Sprintf("%d links measured", n*(n-1)), allLevel(cluster.LinkOK, n*(n-1)))
		}
		status, body := getPage(t, first, c, "/network")
		if status != http.StatusOK {
			t.Fatalf("%d members: status %d; %s", n, status, secShort(body))
		}
		levels := matrixLevels(body)
		if len(levels) != n*(n-1) {
			t.Errorf("%d members: %d cells with a level, want %d", n, len(levels), n*(n-1))
		}
		if got := strings.Count(body, `<td class="cell self"`); got != n && n > 1 {
			t.Errorf("%d members: %d cells on the diagonal, want %d", n, got, n)
		}
		if got, want := strings.Count(body, `<figure class="chart"`), n*(n-1)/2; got != want {
			t.Errorf("%d members: %d charts, want %d (one per pair)", n, got, want)
		}
		if n == 1 && !strings.Contains(body, "only member") {
			t.Errorf("one member: the page does not say there is no link to measure")
		}
	}
	check(1)
	addReplica(t, first, apps[1])
	addReplica(t, first, apps[2])
	check(3)
	addReplica(t, first, apps[3])
	addReplica(t, first, apps[4])
	check(5)
}

// The thresholds are cluster settings: an administrator changes them on
// the Settings page; values that make no sense are refused naming the
// field, and nothing is saved.
func TestLinkThresholdsSetting(t *testing.T) {
	app := testapp.Start(t)
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	base := url.Values{"clusterName": {"Conclave"}, "oidcRolesClaim": {"groups"}}
	for _, tc := range []struct{ ok, warn, field, says string }{
		{"abc", "50", "linkOkBelowMs", "not a number"},
		{"0", "50", "linkOkBelowMs", "above 0"},
		{"20", "15", "linkWarningBelowMs", "above the OK threshold"},
	} {
		form := url.Values{"linkOkBelowMs": {tc.ok}, "linkWarningBelowMs": {tc.warn}}
		for k, v := range base {
			form[k] = v
		}
		resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/settings", form: form})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="`+tc.field+`-error"`) || !strings.Contains(body, tc.says) {
			t.Errorf("thresholds %s / %s: status %d, want 422 at %s saying %q; %s", tc.ok, tc.warn, resp.StatusCode, tc.field, tc.says, secShort(body))
		}
	}
	if s, err := cluster.LoadSettings(t.Context(), app.Store); err != nil || s.Links != cluster.DefaultLinkThresholds() {
		t.Fatalf("after refused forms the thresholds are %+v (%v), want the defaults", s.Links, err)
	}
	form := url.Values{"linkOkBelowMs": {"2.5"}, "linkWarningBelowMs": {"20"}}
	for k, v := range base {
		form[k] = v
	}
	if resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/settings", form: form}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save thresholds: status %d; %s", resp.StatusCode, secShort(body))
	}
	if s, _ := cluster.LoadSettings(t.Context(), app.Store); s.Links != (cluster.LinkThresholds{OKBelowMs: 2.5, WarningBelowMs: 20}) {
		t.Errorf("saved thresholds = %+v, want 2.5 / 20", s.Links)
	}
	evs := eventsOfType(t, app, app.AdminToken(t), "SettingsChanged")
	if len(evs) == 0 || !strings.Contains(evs[0].Details["changed"], "link latency thresholds") {
		t.Errorf("SettingsChanged events = %+v, want one naming the link latency thresholds", evs)
	}
	if _, body := getPage(t, app, c, "/settings"); !strings.Contains(body, `name="linkOkBelowMs" id="linkOkBelowMs" value="2.5"`) {
		t.Errorf("the Settings page does not show the new thresholds: %s", secShort(body))
	}
}
