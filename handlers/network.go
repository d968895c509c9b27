package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// Link latency: the Network page, the links API, Test link, /metrics, and
// the node API calls behind them.

// linkThresholds are the thresholds in force (defaults when the settings
// cannot be read).
func (h *Handlers) linkThresholds(ctx context.Context) cluster.LinkThresholds {
	s, err := cluster.LoadSettings(ctx, h.Store)
	if err != nil {
		h.Log.Warn("load settings", "err", err)
		return cluster.DefaultLinkThresholds()
	}
	return s.Links
}

// formatMs writes a round trip: a tenth of a millisecond below 10 ms.
func formatMs(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// linkCell is a link as the console shows it.
func linkCell(l cluster.LinkStatus, t cluster.LinkThresholds, now time.Time) views.LinkCell {
	c := views.LinkCell{FromName: l.FromName, ToName: l.ToName, Level: t.Level(l), MeasuredAt: l.MeasuredAt, Stale: l.Stale(now)}
	dir := l.FromName + " → " + l.ToName
	switch c.Level {
	case cluster.LinkUnknown:
		c.Tone, c.Label = "unknown", "unknown"
		c.Title = dir + ": unknown. " + views.Sentence(l.Reason)
		return c
	case cluster.LinkDown:
		c.Tone, c.Label = "down", "Down"
		c.Detail = "no answer"
		c.Title = dir + ": Down, no answer. " + views.Sentence(l.Reason)
		if !l.MeasuredAt.IsZero() {
			c.Title += " Last answered " + views.When(l.MeasuredAt) + "."
		}
		return c
	case cluster.LinkOK:
		c.Tone = "ok"
	case cluster.LinkWarning:
		c.Tone = "warn"
	default:
		c.Tone = "bad"
	}
	c.Label = formatMs(l.CurrentMs)
	c.Detail = fmt.Sprintf("%.1f / %.1f / %.1f ms", l.MinMs, l.AvgMs, l.MaxMs)
	if l.LossPercent > 0 {
		c.Detail += fmt.Sprintf(", %.0f%% lost", l.LossPercent)
	}
	c.Title = fmt.Sprintf("%s: %s, round trip now %s. Last minute: min %.1f, avg %.1f, max %.1f ms, jitter %.1f ms, %.0f%% lost (%d probes). Last measured %s.",
		dir, c.Level, formatMs(l.CurrentMs), l.MinMs, l.AvgMs, l.MaxMs, l.JitterMs, l.LossPercent, l.Probes, views.When(l.MeasuredAt))
	if c.Stale {
		c.Tone = "stale"
		c.Label += " · stale"
		c.Title = "STALE: not measured for " + views.Duration(now.Sub(l.MeasuredAt)) + ". " + c.Title
	}
	return c
}

// levelRank orders link cells from harmless to worst, for a connector that
// stands for both directions.
var levelRank = map[string]int{"unknown": 0, "ok": 1, "stale": 2, "warn": 3, "bad": 4, "down": 5}

// linkIndex finds links by their ends.
type linkIndex map[[2]string]cluster.LinkStatus

func indexLinks(ls []cluster.LinkStatus) linkIndex {
	out := linkIndex{}
	for _, l := range ls {
		out[[2]string{l.From, l.To}] = l
	}
	return out
}

// connector is the label and tone of the connector between a and b in the
// cluster diagram: the worse direction, with both in its title.
func connector(idx linkIndex, a, b string, t cluster.LinkThresholds, now time.Time) (views.LinkCell, string, bool) {
	ab, ok1 := idx[[2]string{a, b}]
	ba, ok2 := idx[[2]string{b, a}]
	if !ok1 && !ok2 {
		return views.LinkCell{}, "", false
	}
	ca, cb := linkCell(ab, t, now), linkCell(ba, t, now)
	worst := ca
	if levelRank[cb.Tone] > levelRank[ca.Tone] {
		worst = cb
	}
	return worst, ca.Title + "\n" + cb.Title, true
}

// diagramTone turns a link cell's tone into the diagram's tones.
func diagramTone(tone string) string {
	switch tone {
	case "ok", "warn", "bad":
		return tone
	case "down":
		return "bad"
	}
	return ""
}

// NetworkPage is GET /network: the matrix of round trips and the charts.
func (h *Handlers) NetworkPage(w http.ResponseWriter, r *http.Request) {
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = cluster.RangeHour
	}
	if rng != cluster.RangeHour && rng != cluster.RangeDay {
		h.renderMessage(w, r, http.StatusBadRequest, "range must be hour or day")
		return
	}
	h.renderNetwork(w, r, http.StatusOK, rng, nil, "")
}

func (h *Handlers) renderNetwork(w http.ResponseWriter, r *http.Request, status int, rng string, test *cluster.LinkTest, formErr string) {
	ctx, cancel := timeout(r)
	defer cancel()
	p, err := h.networkPage(ctx, r, rng)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	if test != nil {
		p.Test = testView(*test, h.linkThresholds(ctx))
	}
	p.FormError = formErr
	if r.Method == http.MethodGet {
		// Without script the page reloads now and then; with it, app.js
		// updates the headline and the matrix every second.
		p.Page.Refresh, p.Live = 10, true
	}
	render(w, r, status, views.NetworkView(p))
}

// networkData is the Network page but for its frame: the same for every
// viewer, built at most once a second per range (viewCache). Its charts
// need the link history of every member.
type networkData = views.NetworkPage

func (h *Handlers) networkPage(ctx context.Context, r *http.Request, rng string) (views.NetworkPage, error) {
	p, err := h.networkViews.get(ctx, rng, func(ctx context.Context) (networkData, error) { return h.loadNetwork(ctx, rng) })
	if err != nil {
		return p, err
	}
	p.Page = h.page(r, "Network", "network")
	return p, nil
}

func (h *Handlers) loadNetwork(ctx context.Context, rng string) (networkData, error) {
	p := views.NetworkPage{Range: rng, Now: time.Now()}
	members, err := h.Store.Members(ctx)
	if err != nil {
		return p, err
	}
	sort.SliceStable(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	links, err := h.Node.Links(ctx)
	if err != nil {
		return p, err
	}
	t := h.linkThresholds(ctx)
	p.Thresholds = views.LinkLegend{OKBelow: formatMs(t.OKBelowMs), WarningBelow: formatMs(t.WarningBelowMs)}
	idx := indexLinks(links)
	counts := map[string]int{}
	for _, m := range members {
		p.Members = append(p.Members, views.NetworkMember{ID: m.ID, Name: m.Name, IsSelf: m.ID == h.Node.ID()})
	}
	for _, from := range p.Members {
		row := views.LinkRow{From: from}
		for _, to := range p.Members {
			if from.ID == to.ID {
				row.Cells = append(row.Cells, views.LinkCell{Self: true, FromName: from.Name, ToName: to.Name})
				continue
			}
			c := linkCell(idx[[2]string{from.ID, to.ID}], t, p.Now)
			c.FromName, c.ToName = from.Name, to.Name
			counts[c.Tone]++
			row.Cells = append(row.Cells, c)
		}
		p.Rows = append(p.Rows, row)
	}
	p.Tone, p.Headline, p.Summary = networkHeadline(len(members), counts, t)
	var charts strings.Builder
	if err := views.LinkCharts(h.linkCharts(ctx, members, rng, t), rng).Render(ctx, &charts); err != nil {
		return p, fmt.Errorf("render the link charts: %w", err)
	}
	p.ChartsHTML = charts.String()
	return p, nil
}

// networkHeadline sums the links up in a few words.
func networkHeadline(members int, counts map[string]int, t cluster.LinkThresholds) (tone, headline, summary string) {
	total := 0
	for _, c := range counts {
		total += c
	}
	if members < 2 {
		return "info", "One member", "This appliance is the only member, so there is no link to measure. Links appear here once a replica is added."
	}
	switch {
	case counts["down"] > 0:
		tone, headline = "bad", fmt.Sprintf("%d of %d links down", counts["down"], total)
	case counts["bad"] > 0:
		tone, headline = "bad", fmt.Sprintf("%d of %d links slow", counts["bad"], total)
	case counts["warn"] > 0:
		tone, headline = "warn", fmt.Sprintf("%d of %d links need attention", counts["warn"], total)
	case counts["unknown"]+counts["stale"] > 0:
		tone, headline = "info", fmt.Sprintf("%d of %d links unknown", counts["unknown"]+counts["stale"], total)
	default:
		tone, headline = "ok", "All links OK"
	}
	summary = fmt.Sprintf("Each member sends a probe to every other member once a second and measures the round trip (there and back). "+
		"OK below %s, Warning below %s, Bad above, Down when the probe gets no answer.", formatMs(t.OKBelowMs), formatMs(t.WarningBelowMs))
	return tone, headline, summary
}

// linkCharts draws a chart per pair of members, both directions, reading
// each direction's history from the member at its start.
func (h *Handlers) linkCharts(ctx context.Context, members []store.Member, rng string, t cluster.LinkThresholds) []views.LinkChart {
	type dir struct{ from, to store.Member }
	var dirs []dir
	for i, a := range members {
		for j, b := range members {
			if i != j {
				dirs = append(dirs, dir{a, b})
			}
		}
	}
	hist := make([][]store.LinkSample, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			hist[i], errs[i] = h.Node.LinkHistory(c, d.from.ID, d.to.ID, rng)
		}()
	}
	wg.Wait()
	byDir := map[[2]string]int{}
	for i, d := range dirs {
		byDir[[2]string{d.from.ID, d.to.ID}] = i
	}
	now := time.Now()
	var charts []views.LinkChart
	for i, a := range members {
		for _, b := range members[i+1:] {
			ab, ba := byDir[[2]string{a.ID, b.ID}], byDir[[2]string{b.ID, a.ID}]
			in := chartInput{Range: rng, Now: now, Thresholds: t, AName: a.Name, BName: b.Name}
			in.Series = [2][]store.LinkSample{hist[ab], hist[ba]}
			for k, e := range []error{errs[ab], errs[ba]} {
				if e != nil {
					from, to := a.Name, b.Name
					if k == 1 {
						from, to = b.Name, a.Name
					}
					in.Notes = append(in.Notes, fmt.Sprintf("The history of %s → %s is kept by %s, which did not answer: %v", from, to, from, e))
				}
			}
			c := drawChart(in)
			c.AID, c.BID = a.ID, b.ID
			charts = append(charts, c)
		}
	}
	return charts
}

// NetworkTest is POST /network/test: a Test link from the Network page,
// shown in the page.
func (h *Handlers) NetworkTest(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	rng := r.PostForm.Get("range")
	if rng != cluster.RangeDay {
		rng = cluster.RangeHour
	}
	me, _ := principal(r)
	ctx, cancel := timeout(r)
	defer cancel()
	test, err := h.Node.TestLink(ctx, me.Username, r.PostForm.Get("from"), r.PostForm.Get("to"))
	var rej *store.Rejection
	if errors.As(err, &rej) {
		h.renderNetwork(w, r, http.StatusUnprocessableEntity, rng, nil, rej.Message)
		return
	}
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	h.renderNetwork(w, r, http.StatusOK, rng, &test, "")
}

// testView shows a Test link; a burst whose probes were all answered is
// rated by its average round trip with the cluster's thresholds.
func testView(t cluster.LinkTest, th cluster.LinkThresholds) *views.LinkTestView {
	v := &views.LinkTestView{At: t.At, Actor: t.Actor}
	for i, res := range t.Results {
		if i == 0 {
			v.AName, v.BName = res.FromName, res.ToName
		}
		row := views.BurstRow{From: res.FromName, To: res.ToName, Sent: res.Sent, Received: res.Received,
			Loss: fmt.Sprintf("%.0f%%", res.LossPercent), Min: "—", Avg: "—", Max: "—", Error: res.Error}
		switch {
		case res.Received == 0:
			row.Tone, row.Verdict = "bad", "No answer"
		case res.Received < res.Sent:
			row.Tone, row.Verdict = "warn", "Some probes lost"
		default:
			level := th.Level(cluster.LinkStatus{Known: true, Reachable: true, Probes: res.Sent, CurrentMs: res.AvgMs})
			row.Tone, row.Verdict = map[string]string{cluster.LinkOK: "ok", cluster.LinkWarning: "warn"}[level], "All answered, "+level
			if row.Tone == "" {
				row.Tone = "bad"
			}
		}
		if res.Received > 0 {
			row.Min, row.Avg, row.Max = formatMs(res.MinMs), formatMs(res.AvgMs), formatMs(res.MaxMs)
		}
		v.Results = append(v.Results, row)
	}
	return v
}

// linkJSON is a link in GET /api/v1/cluster/links. Figures are null when
// the link is unknown or was never measured.
type linkJSON struct {
	From        string     `json:"from"`
	To          string     `json:"to"`
	FromName    string     `json:"fromName"`
	ToName      string     `json:"toName"`
	Level       string     `json:"level"`
	Reachable   *bool      `json:"reachable"`
	Stale       bool       `json:"stale"`
	CurrentMs   *float64   `json:"currentMs"`
	MinMs       *float64   `json:"minMs"`
	AvgMs       *float64   `json:"avgMs"`
	MaxMs       *float64   `json:"maxMs"`
	JitterMs    *float64   `json:"jitterMs"`
	LossPercent *float64   `json:"lossPercent"`
	Probes      int        `json:"probes"`
	MeasuredAt  *time.Time `json:"measuredAt"`
	Reason      string     `json:"reason,omitempty"`
}

// APILinks is GET /api/v1/cluster/links.
func (h *Handlers) APILinks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := timeout(r)
	defer cancel()
	links, err := h.Node.Links(ctx)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	t := h.linkThresholds(ctx)
	now := time.Now()
	out := make([]linkJSON, 0, len(links))
	for _, l := range links {
		j := linkJSON{From: l.From, To: l.To, FromName: l.FromName, ToName: l.ToName, Level: t.Level(l), Stale: l.Stale(now), Probes: l.Probes, Reason: l.Reason}
		if l.Known && l.Probes > 0 {
			reach, loss := l.Reachable, l.LossPercent
			j.Reachable, j.LossPercent = &reach, &loss
		}
		if l.Known && !l.MeasuredAt.IsZero() {
			cur, mn, avg, mx, jit, at := l.CurrentMs, l.MinMs, l.AvgMs, l.MaxMs, l.JitterMs, l.MeasuredAt
			j.CurrentMs, j.MinMs, j.AvgMs, j.MaxMs, j.JitterMs, j.MeasuredAt = &cur, &mn, &avg, &mx, &jit, &at
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

// APITestLink is POST /api/v1/cluster/links/test {from, to}: a burst of
// probes both ways between two members.
func (h *Handlers) APITestLink(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	me, _ := principal(r)
	ctx, cancel := timeout(r)
	defer cancel()
	test, err := h.Node.TestLink(ctx, me.Username, req.From, req.To)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, test)
}

// NodeProbe is GET /node/v1/probe: a member measures the round trip.
func (h *Handlers) NodeProbe(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

// NodeLinkHistory is GET /node/v1/links/history?to=&range=: this member's
// history of its link to another.
func (h *Handlers) NodeLinkHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	hist, err := h.Node.OwnLinkHistory(r.Context(), q.Get("to"), q.Get("range"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if hist == nil {
		hist = []store.LinkSample{}
	}
	writeJSON(w, http.StatusOK, hist)
}

// NodeLinkTest is POST /node/v1/links/test {to}: a burst from this member.
func (h *Handlers) NodeLinkTest(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To string `json:"to"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	res, err := h.Node.BurstTo(r.Context(), req.To)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Metrics is GET /metrics: this member's own link measurements and its
// probing counters, in the Prometheus text format, for a bearer token (or
// a session) of any role.
func (h *Handlers) Metrics(w http.ResponseWriter, r *http.Request) {
	if _, ok := principal(r); !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="conclave"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "send 'Authorization: Bearer <token>' with a token of any role from POST /api/v1/auth/token"})
		return
	}
	t := h.linkThresholds(r.Context())
	now := time.Now()
	var b strings.Builder
	self := promLabel(h.Node.Name())
	gauge := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name) }
	links := h.Node.OwnLinks()
	sort.Slice(links, func(i, j int) bool { return links[i].ToName < links[j].ToName })
	labels := func(l cluster.LinkStatus) string {
		return fmt.Sprintf(`{from=%s,to=%s,from_id=%s,to_id=%s}`, self, promLabel(l.ToName), promLabel(l.From), promLabel(l.To))
	}
	gauge("conclave_link_up", "1 when the last probe of the link was answered, 0 when not (Down).")
	for _, l := range links {
		if l.Probes > 0 {
			fmt.Fprintf(&b, "conclave_link_up%s %d\n", labels(l), boolInt(l.Reachable))
		}
	}
	for _, m := range []struct {
		name, help string
		v          func(cluster.LinkStatus) float64
	}{
		{"conclave_link_round_trip_seconds", "Round trip now (median of the last 5 seconds).", func(l cluster.LinkStatus) float64 { return l.CurrentMs / 1000 }},
		{"conclave_link_round_trip_min_seconds", "Smallest round trip of the last minute.", func(l cluster.LinkStatus) float64 { return l.MinMs / 1000 }},
		{"conclave_link_round_trip_avg_seconds", "Average round trip of the last minute.", func(l cluster.LinkStatus) float64 { return l.AvgMs / 1000 }},
		{"conclave_link_round_trip_max_seconds", "Largest round trip of the last minute.", func(l cluster.LinkStatus) float64 { return l.MaxMs / 1000 }},
		{"conclave_link_jitter_seconds", "Mean difference between consecutive round trips, last minute.", func(l cluster.LinkStatus) float64 { return l.JitterMs / 1000 }},
		{"conclave_link_last_measured_timestamp_seconds", "When the link last answered a probe (Unix time).", func(l cluster.LinkStatus) float64 {
			return float64(l.MeasuredAt.UnixMilli()) / 1000
		}},
	} {
		gauge(m.name, m.help)
		for _, l := range links {
			if !l.MeasuredAt.IsZero() {
				fmt.Fprintf(&b, "%s%s %g\n", m.name, labels(l), m.v(l))
			}
		}
	}
	gauge("conclave_link_loss_ratio", "Share of the last minute's probes that got no answer (0 to 1).")
	for _, l := range links {
		if l.Probes > 0 {
			fmt.Fprintf(&b, "conclave_link_loss_ratio%s %g\n", labels(l), l.LossPercent/100)
		}
	}
	gauge("conclave_link_level", "The link's level by the cluster's thresholds: 1 for the level it has, one series per level.")
	for _, l := range links {
		level := t.Level(l)
		for _, lv := range []string{cluster.LinkOK, cluster.LinkWarning, cluster.LinkBad, cluster.LinkDown, cluster.LinkUnknown} {
			fmt.Fprintf(&b, "conclave_link_level%s,level=%s} %d\n", strings.TrimSuffix(labels(l), "}"), promLabel(lv), boolInt(lv == level))
		}
	}
	gauge("conclave_link_stale", "1 when the link's last answer is older than 5 seconds.")
	for _, l := range links {
		fmt.Fprintf(&b, "conclave_link_stale%s %d\n", labels(l), boolInt(l.Stale(now)))
	}
	c := h.Node.ProbeCounters()
	for _, m := range []struct {
		name, help string
		v          uint64
	}{
		{"conclave_probes_total", "Probes this member sent (Test link bursts included).", c.Probes},
		{"conclave_probe_failures_total", "Probes this member sent that got no answer.", c.Failures},
		{"conclave_probe_sent_bytes_total", "Bytes this member's prober wrote to other members (TLS and TCP payload, handshakes included).", c.BytesSent},
		{"conclave_probe_received_bytes_total", "Bytes this member's prober read from other members.", c.BytesReceived},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s{member=%s} %d\n", m.name, m.help, m.name, m.name, self, m.v)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, b.String())
}

// promLabel quotes a Prometheus label value.
func promLabel(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// labelLinks puts the measured round trip on the diagram's connectors,
// coloured by the thresholds. diagram places the members primary first
// and adds a connector per pair in that order; the same order finds each
// connector's members here.
func labelLinks(d *views.Diagram, ms []views.MemberRow, links []cluster.LinkStatus, t cluster.LinkThresholds) {
	var order []string
	for _, primary := range []bool{true, false} {
		for _, m := range ms {
			if (m.Role == "Primary") == primary {
				order = append(order, m.ID)
			}
		}
	}
	idx := indexLinks(links)
	now := time.Now()
	k := 0
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			if k >= len(d.Links) {
				return
			}
			l := &d.Links[k]
			k++
			c, title, ok := connector(idx, order[i], order[j], t, now)
			if !ok {
				continue
			}
			l.Label, l.Level, l.Stale, l.Title = c.Label, c.Level, c.Stale, title
			l.Tone = diagramTone(c.Tone)
		}
	}
}

// parseLinkThresholds reads the link latency thresholds of the settings
// form; a field left out keeps its value.
func parseLinkThresholds(f url.Values, old cluster.LinkThresholds) (cluster.LinkThresholds, *apiError) {
	t := old
	for _, fld := range []struct {
		name string
		dst  *float64
	}{{"linkOkBelowMs", &t.OKBelowMs}, {"linkWarningBelowMs", &t.WarningBelowMs}} {
		v := strings.TrimSpace(f.Get(fld.name))
		if v == "" {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return t, badRequest(fld.name, "%q is not a number of milliseconds, like 10 or 2.5", v)
		}
		*fld.dst = n
	}
	var rej *store.Rejection
	if err := t.Validate(); errors.As(err, &rej) {
		return t, badRequest(rej.Field, "%s", rej.Message)
	}
	return t, nil
}
