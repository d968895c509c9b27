package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"conclave/store"
)

// Link latency: every member probes every other member over the node API
// (prober.go) and keeps, per directed link, what it measured. Any member
// shows the whole cluster by asking the others for their rows (they come
// with the member status, /node/v1/status); a member that does not answer
// has its links shown as Unknown, never with the last good value.

// Link levels, with the same names in the console, the API and /metrics.
const (
	LinkOK      = "OK"
	LinkWarning = "Warning"
	LinkBad     = "Bad"
	LinkDown    = "Down"
	LinkUnknown = "Unknown"
)

// LinkStaleAfter is how old a measurement may be before the console marks
// it stale: a value that stopped changing must not hide an outage.
const LinkStaleAfter = 5 * time.Second

// LinkThresholds colour a link by its round trip: OK below OKBelowMs,
// Warning below WarningBelowMs, Bad above; Down when it does not answer.
// They are absolute on purpose: a uniformly slow cluster must not look fine.
type LinkThresholds struct {
	OKBelowMs      float64 `json:"okBelowMs"`
	WarningBelowMs float64 `json:"warningBelowMs"`
}

// DefaultLinkThresholds are OK < 10 ms, Warning < 50 ms.
func DefaultLinkThresholds() LinkThresholds {
	return LinkThresholds{OKBelowMs: 10, WarningBelowMs: 50}
}

// Validate checks that the thresholds make sense, naming the field.
func (t LinkThresholds) Validate() error {
	switch {
	case !(t.OKBelowMs > 0) || t.OKBelowMs > 10000:
		return store.Reject("linkOkBelowMs", "the OK threshold must be a number of milliseconds above 0 and at most 10000")
	case !(t.WarningBelowMs > t.OKBelowMs) || t.WarningBelowMs > 60000:
		return store.Reject("linkWarningBelowMs", "the Warning threshold must be above the OK threshold (%g ms) and at most 60000 ms", t.OKBelowMs)
	}
	return nil
}

// Level is the link's level by these thresholds.
func (t LinkThresholds) Level(l LinkStatus) string {
	switch {
	case !l.Known || (!l.Reachable && l.Probes == 0):
		return LinkUnknown
	case !l.Reachable:
		return LinkDown
	case l.CurrentMs < t.OKBelowMs:
		return LinkOK
	case l.CurrentMs < t.WarningBelowMs:
		return LinkWarning
	}
	return LinkBad
}

// LinkStatus is one directed link, as the member at its start measured it.
// The round-trip figures are over the last minute; CurrentMs is the median
// of the last five seconds, which is what the console colours by.
type LinkStatus struct {
	From     string `json:"from"`
	To       string `json:"to"`
	FromName string `json:"fromName"`
	ToName   string `json:"toName"`
	// Known: the member at the start of the link answered (or is this
	// one). An unknown link carries no figures.
	Known     bool `json:"known"`
	Reachable bool `json:"reachable"`
	// Probes is how many probes the last minute holds; Lost how many of
	// them got no answer.
	Probes      int     `json:"probes"`
	Lost        int     `json:"lost"`
	CurrentMs   float64 `json:"currentMs"`
	LastMs      float64 `json:"lastMs"`
	MinMs       float64 `json:"minMs"`
	AvgMs       float64 `json:"avgMs"`
	MaxMs       float64 `json:"maxMs"`
	JitterMs    float64 `json:"jitterMs"`
	LossPercent float64 `json:"lossPercent"`
	// MeasuredAt is the last probe that was answered (zero: none yet).
	// Between members it travels as MeasuredAgoMs, so that clocks that
	// differ between appliances do not make a value look fresh or stale.
	MeasuredAt    time.Time `json:"measuredAt"`
	MeasuredAgoMs int64     `json:"measuredAgoMs"`
	// Reason says why the link is down or unknown.
	Reason string `json:"reason,omitempty"`
}

// Stale tells whether the measurement is older than LinkStaleAfter.
func (l LinkStatus) Stale(now time.Time) bool {
	return l.Known && l.Reachable && (l.MeasuredAt.IsZero() || now.Sub(l.MeasuredAt) > LinkStaleAfter)
}

// Links lists every directed link between the members: this member's own
// measurements, and the others' as they report them. A member that does
// not answer has its links Unknown.
func (n *Node) Links(ctx context.Context) ([]LinkStatus, error) {
	members, err := n.store.Members(ctx)
	if err != nil {
		return nil, err
	}
	type answer struct {
		links map[string]LinkStatus
		known bool
		why   string
	}
	answers := make([]answer, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.ID == n.ID() {
			answers[i] = answer{links: n.prober.report(time.Now()), known: true}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, at, err := n.peerStatus(ctx, m.ID, m.Address)
			switch {
			case err != nil:
				answers[i].why = m.Name + " does not answer this appliance, so its measurements are unknown: " + err.Error()
			case st.Links == nil:
				answers[i].why = m.Name + " does not report link measurements (another build?)"
			default:
				answers[i] = answer{links: map[string]LinkStatus{}, known: true}
				for _, l := range st.Links {
					if l.MeasuredAgoMs >= 0 && l.Probes > 0 {
						l.MeasuredAt = at.Add(-time.Duration(l.MeasuredAgoMs) * time.Millisecond)
					} else {
						l.MeasuredAt = time.Time{}
					}
					answers[i].links[l.To] = l
				}
			}
		}()
	}
	wg.Wait()
	var out []LinkStatus
	for i, from := range members {
		for _, to := range members {
			if from.ID == to.ID {
				continue
			}
			l, ok := answers[i].links[to.ID]
			switch {
			case !answers[i].known:
				l = LinkStatus{Reason: answers[i].why}
			case !ok:
				l = LinkStatus{Known: true, Reason: from.Name + " has not probed " + to.Name + " yet"}
			}
			l.From, l.To, l.FromName, l.ToName = from.ID, to.ID, from.Name, to.Name
			out = append(out, l)
		}
	}
	return out, nil
}

// History ranges of the link charts.
const (
	RangeHour = "hour"
	RangeDay  = "day"
)

// historyResolution is the bucket length a chart of the range uses, and
// how far back it reaches.
func historyResolution(rng string) (time.Duration, time.Duration, error) {
	switch rng {
	case RangeHour:
		return bucketShort, time.Hour, nil
	case RangeDay:
		return bucketLong, 24 * time.Hour, nil
	}
	return 0, 0, store.Reject("range", "range must be %q or %q", RangeHour, RangeDay)
}

// LinkHistory is the history of the link from → to over rng, from the
// database of the member at its start (this one, or asked over the node
// API).
//
// Answers are kept for historyCacheFor (the 10-second buckets change no
// faster), so that pages that update themselves do not ask every second;
// a member that did not answer its last status request is not asked.
func (n *Node) LinkHistory(ctx context.Context, from, to, rng string) ([]store.LinkSample, error) {
	if from == n.ID() {
		return n.OwnLinkHistory(ctx, to, rng)
	}
	key := from + " " + to + " " + rng
	n.historyMu.Lock()
	c, ok := n.historyCache[key]
	n.historyMu.Unlock()
	if ok && time.Since(c.at) < historyCacheFor {
		return c.samples, c.err
	}
	// Page views that find the answer stale share one request (see
	// peerStatus), not tied to the caller that started it.
	v, _, _ := n.statusFlight.Do("history "+key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		samples, err := n.askLinkHistory(ctx, from, to, rng)
		c := cachedHistory{samples: samples, err: err, at: time.Now()}
		n.historyMu.Lock()
		if n.historyCache == nil {
			n.historyCache = map[string]cachedHistory{}
		}
		for k, v := range n.historyCache {
			if time.Since(v.at) >= historyCacheFor {
				delete(n.historyCache, k)
			}
		}
		n.historyCache[key] = c
		n.historyMu.Unlock()
		return c, nil
	})
	c = v.(cachedHistory)
	return c.samples, c.err
}

// historyCacheFor is how long an answer to a history request is kept.
const historyCacheFor = 10 * time.Second

type cachedHistory struct {
	samples []store.LinkSample
	err     error
	at      time.Time
}

func (n *Node) askLinkHistory(ctx context.Context, from, to, rng string) ([]store.LinkSample, error) {
	m, err := n.member(ctx, from, "from")
	if err != nil {
		return nil, err
	}
	n.statusMu.Lock()
	st, ok := n.statusCache[from]
	n.statusMu.Unlock()
	if ok && st.err != nil && time.Since(st.at) < 2*time.Second {
		return nil, fmt.Errorf("%s does not answer this appliance: %w", m.Name, st.err)
	}
	var out []store.LinkSample
	q := url.Values{"to": {to}, "range": {rng}}
	err = doJSON(ctx, n.peers.http, http.MethodGet, "https://"+m.Address+"/node/v1/links/history?"+q.Encode(), "", nil, "", &out)
	if err != nil {
		return nil, fmt.Errorf("ask %s for its history: %w", m.Name, err)
	}
	return out, nil
}

// OwnLinkHistory is the history of this member's link to the member to.
func (n *Node) OwnLinkHistory(ctx context.Context, to, rng string) ([]store.LinkSample, error) {
	res, span, err := historyResolution(rng)
	if err != nil {
		return nil, err
	}
	since := time.Now().Add(-span)
	rows, err := n.store.LinkHistory(ctx, n.ID(), to, res, since)
	if err != nil {
		return nil, err
	}
	// The buckets not written yet (the open one, and those waiting for the
	// next write) belong to the picture too.
	seen := map[time.Time]bool{}
	for _, r := range rows {
		seen[r.At] = true
	}
	for _, r := range n.prober.unsaved(to, res) {
		if !seen[r.At] && !r.At.Before(since) {
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b store.LinkSample) int { return a.At.Compare(b.At) })
	return rows, nil
}

// member finds a member by ID; field names the input for the error.
func (n *Node) member(ctx context.Context, id, field string) (store.Member, error) {
	ms, err := n.store.Members(ctx)
	if err != nil {
		return store.Member{}, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, nil
		}
	}
	return store.Member{}, store.Reject(field, "%q is not a member of this cluster", id)
}

// BurstResult is a Test link: a burst of probes over one directed link.
type BurstResult struct {
	From        string  `json:"from"`
	To          string  `json:"to"`
	FromName    string  `json:"fromName"`
	ToName      string  `json:"toName"`
	Sent        int     `json:"sent"`
	Received    int     `json:"received"`
	LossPercent float64 `json:"lossPercent"`
	MinMs       float64 `json:"minMs"`
	AvgMs       float64 `json:"avgMs"`
	MaxMs       float64 `json:"maxMs"`
	// Error says why the burst could not run, or why probes were lost.
	Error string `json:"error,omitempty"`
}

// LinkTest is a Test link of both directions between two members.
type LinkTest struct {
	At      time.Time     `json:"at"`
	Actor   string        `json:"actor"`
	Results []BurstResult `json:"results"`
}

// TestLink sends a burst of probes both ways between two members (from
// this member, or asked over the node API) and records who asked.
func (n *Node) TestLink(ctx context.Context, actor, a, b string) (LinkTest, error) {
	if a == "" {
		return LinkTest{}, store.Reject("from", "choose the member at one end of the link")
	}
	if b == "" {
		return LinkTest{}, store.Reject("to", "choose the member at the other end of the link")
	}
	if a == b {
		return LinkTest{}, store.Reject("to", "a link joins two different members")
	}
	ma, err := n.member(ctx, a, "from")
	if err != nil {
		return LinkTest{}, err
	}
	mb, err := n.member(ctx, b, "to")
	if err != nil {
		return LinkTest{}, err
	}
	t := LinkTest{At: time.Now().UTC(), Actor: actor, Results: make([]BurstResult, 2)}
	var wg sync.WaitGroup
	for i, pair := range [][2]store.Member{{ma, mb}, {mb, ma}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Results[i] = n.burstBetween(ctx, pair[0], pair[1])
		}()
	}
	wg.Wait()
	details := map[string]string{"from": ma.Name, "to": mb.Name}
	for _, r := range t.Results {
		details[r.FromName+" → "+r.ToName] = r.Summary()
	}
	n.events.push(Command{Type: CmdRecordEvent, At: t.At, Actor: actor, Member: n.ID(),
		Event: &EventSpec{Type: "ClusterLinkTested", Details: details}})
	return t, nil
}

// Summary is the burst's result in a few words.
func (r BurstResult) Summary() string {
	if r.Received == 0 {
		if r.Error != "" {
			return fmt.Sprintf("no answer to %d probes: %s", r.Sent, r.Error)
		}
		return fmt.Sprintf("no answer to %d probes", r.Sent)
	}
	return fmt.Sprintf("%d of %d answered, round trip min %.1f / avg %.1f / max %.1f ms", r.Received, r.Sent, r.MinMs, r.AvgMs, r.MaxMs)
}

// burstBetween runs a burst from → to, on from.
func (n *Node) burstBetween(ctx context.Context, from, to store.Member) BurstResult {
	var r BurstResult
	if from.ID == n.ID() {
		r = n.prober.burst(ctx, to.Address)
	} else {
		body, _ := json.Marshal(map[string]string{"to": to.ID})
		err := doJSON(ctx, n.peers.http, http.MethodPost, "https://"+from.Address+"/node/v1/links/test", "", bytes.NewReader(body), "application/json", &r)
		if err != nil {
			r = BurstResult{Error: from.Name + " does not answer this appliance, so it could not test its link: " + err.Error()}
		}
	}
	r.From, r.To, r.FromName, r.ToName = from.ID, to.ID, from.Name, to.Name
	return r
}

// BurstTo runs a burst from this member to the member to (a member asked
// over the node API).
func (n *Node) BurstTo(ctx context.Context, to string) (BurstResult, error) {
	m, err := n.member(ctx, to, "to")
	if err != nil {
		return BurstResult{}, err
	}
	if m.ID == n.ID() {
		return BurstResult{}, store.Reject("to", "a member does not probe itself")
	}
	return n.burstBetween(ctx, store.Member{ID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise}, m), nil
}

// ProbeCounters are what the prober of this member sent and received.
type ProbeCounters struct {
	Probes        uint64 // probes sent (bursts included)
	Failures      uint64 // probes without an answer
	BytesSent     uint64 // bytes on the wire (TLS included) to other members
	BytesReceived uint64
}

// ProbeCounters reads the prober's counters.
func (n *Node) ProbeCounters() ProbeCounters { return n.prober.counters() }

// OwnLinks is this member's own measurements, by the member probed.
func (n *Node) OwnLinks() []LinkStatus {
	rep := n.prober.report(time.Now())
	ms, err := n.store.Members(context.Background())
	if err != nil {
		return nil
	}
	var out []LinkStatus
	for _, m := range ms {
		if l, ok := rep[m.ID]; ok {
			l.From, l.FromName, l.ToName = n.ID(), n.cfg.Name, m.Name
			out = append(out, l)
		}
	}
	return out
}

// linkReport is this member's measurements as it tells the others.
func (n *Node) linkReport() []LinkStatus {
	rep := n.prober.report(time.Now())
	out := make([]LinkStatus, 0, len(rep))
	for _, l := range rep {
		l.MeasuredAt = time.Time{}
		out = append(out, l)
	}
	return out
}
