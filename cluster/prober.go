package cluster

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"conclave/store"
)

// The prober: once a second, this member sends a probe (GET
// /node/v1/probe, mutual TLS, through the node's Dialer like all of the
// node API) to every other member, on a kept-alive connection of its own.
// The round trip is the time from having the connection to the first byte
// of the answer, so a new connection's handshake does not count.
const (
	probeInterval = time.Second
	// probeTimeout: a probe not answered by then is lost.
	probeTimeout = 1500 * time.Millisecond
	// probeWindow is what the figures of a link cover.
	probeWindow = time.Minute
	// currentWindow is what the "current" round trip (the median that the
	// console colours by) covers.
	currentWindow = 5 * time.Second
	// linkDebounce is how long a link must stay down (or up again) before
	// the change is an event.
	linkDebounce = 2 * time.Second
	// The history: 10-second buckets kept 3 hours, 1-minute buckets kept
	// 48 hours.
	bucketShort    = 10 * time.Second
	bucketLong     = time.Minute
	keepShort      = 3 * time.Hour
	keepLong       = 48 * time.Hour
	historyFlush   = 10 * time.Second
	historyPrune   = 10 * time.Minute
	maxPendingRows = 20000
	// A Test link: burstProbes probes, burstGap apart.
	burstProbes = 10
	burstGap    = 100 * time.Millisecond
)

type probeSample struct {
	at  time.Time
	rtt time.Duration
	ok  bool
}

// bucket accumulates the probes of one history bucket.
type bucket struct {
	start         time.Time
	probes, lost  int
	min, max, sum float64
	jitter        float64
	jitterN       int
	last          float64
	hasLast       bool
	resolution    time.Duration
	fromID, toID  string
}

func (b *bucket) add(s probeSample) {
	b.probes++
	if !s.ok {
		b.lost++
		return
	}
	ms := float64(s.rtt) / float64(time.Millisecond)
	if b.probes-b.lost == 1 {
		b.min, b.max = ms, ms
	}
	b.min, b.max, b.sum = min(b.min, ms), max(b.max, ms), b.sum+ms
	if b.hasLast {
		d := ms - b.last
		if d < 0 {
			d = -d
		}
		b.jitter += d
		b.jitterN++
	}
	b.last, b.hasLast = ms, true
}

func (b *bucket) row() store.LinkSample {
	r := store.LinkSample{FromID: b.fromID, ToID: b.toID, Resolution: b.resolution, At: b.start, Probes: b.probes, Lost: b.lost}
	if ok := b.probes - b.lost; ok > 0 {
		mn, avg, mx := b.min, b.sum/float64(ok), b.max // copies: the bucket may go on
		r.MinMs, r.AvgMs, r.MaxMs = &mn, &avg, &mx
		if b.jitterN > 0 {
			j := b.jitter / float64(b.jitterN)
			r.JitterMs = &j
		}
	}
	return r
}

// linkState is what the prober knows of one link.
type linkState struct {
	toID, toName, addr string
	cancel             context.CancelFunc
	samples            []probeSample // the last probeWindow
	lastErr            string
	short, long        *bucket
	// Events: recorded is the state last reported ("" until the link was
	// first up), candidate the state seen now and since when.
	recorded, candidate string
	since               time.Time
}

// prober probes the other members; see the top of this file.
type prober struct {
	n      *Node
	client *http.Client

	probes, failures, sent, received atomic.Uint64

	mu      sync.Mutex
	links   map[string]*linkState // by member ID
	pending []store.LinkSample
}

func newProber(n *Node) *prober {
	p := &prober{n: n, links: map[string]*linkState{}}
	dialer := countingDialer{d: n.cfg.Dialer, sent: &p.sent, received: &p.received}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := n.PeerClientTLS()
			if err != nil {
				return nil, err
			}
			return dialTLS(ctx, dialer, addr, cfg)
		},
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	p.client = &http.Client{Transport: tr, Timeout: probeTimeout}
	return p
}

// run keeps a probing goroutine per other member, writes the history and
// records link events, until the node closes.
func (p *prober) run() {
	defer p.n.wg.Done()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	lastFlush, lastPrune := time.Now(), time.Time{}
	for {
		select {
		case <-p.n.closing:
			p.stopAll()
			p.flush()
			return
		case <-tick.C:
		}
		p.syncMembers()
		p.watchEvents(time.Now())
		if time.Since(lastFlush) >= historyFlush {
			p.flush()
			lastFlush = time.Now()
		}
		if time.Since(lastPrune) >= historyPrune {
			p.prune()
			lastPrune = time.Now()
		}
	}
}

// syncMembers starts probing new members and stops probing those that left.
func (p *prober) syncMembers() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	members, err := p.n.store.Members(ctx)
	cancel()
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range members {
		if m.ID == p.n.ID() {
			continue
		}
		seen[m.ID] = true
		if l := p.links[m.ID]; l != nil {
			l.toName = m.Name
			if l.addr == m.Address {
				continue
			}
			l.cancel() // the member moved: probe the new address
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &linkState{toID: m.ID, toName: m.Name, addr: m.Address, cancel: cancel}
		if old := p.links[m.ID]; old != nil {
			l.samples, l.recorded, l.candidate, l.since = old.samples, old.recorded, old.candidate, old.since
		}
		p.links[m.ID] = l
		p.n.wg.Add(1)
		go p.probeLoop(ctx, l)
	}
	for id, l := range p.links {
		if !seen[id] {
			l.cancel()
			p.closeBuckets(l)
			delete(p.links, id)
		}
	}
}

func (p *prober) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.cancel()
		p.closeBuckets(l)
	}
}

// probeLoop probes one member once a second until ctx ends.
func (p *prober) probeLoop(ctx context.Context, l *linkState) {
	defer p.n.wg.Done()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		start := time.Now()
		rtt, err := p.probe(ctx, l.addr)
		if ctx.Err() != nil {
			return
		}
		p.record(l, probeSample{at: start, rtt: rtt, ok: err == nil}, err)
		select {
		case <-ctx.Done():
			return
		case <-p.n.closing:
			return
		case <-tick.C:
		}
	}
}

// probe sends one probe and returns its round trip.
func (p *prober) probe(ctx context.Context, addr string) (time.Duration, error) {
	p.probes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var gotConn, firstByte atomic.Int64
	trace := &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { gotConn.Store(time.Now().UnixNano()) },
		GotFirstResponseByte: func() { firstByte.Store(time.Now().UnixNano()) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, "https://"+addr+"/node/v1/probe", nil)
	if err != nil {
		p.failures.Add(1)
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.failures.Add(1)
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		p.failures.Add(1)
		return 0, &PeerError{Status: resp.StatusCode, Message: addr + " refused the probe: " + resp.Status}
	}
	return time.Duration(firstByte.Load() - gotConn.Load()), nil
}

// record adds a probe's result to the link's figures and history buckets.
func (p *prober) record(l *linkState, s probeSample, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l.samples = append(l.samples, s)
	cut := 0
	for cut < len(l.samples) && s.at.Sub(l.samples[cut].at) > probeWindow {
		cut++
	}
	l.samples = l.samples[cut:]
	if err != nil {
		l.lastErr = err.Error()
	} else {
		l.lastErr = ""
	}
	for _, b := range []**bucket{&l.short, &l.long} {
		res := bucketShort
		if b == &l.long {
			res = bucketLong
		}
		start := s.at.UTC().Truncate(res)
		if *b != nil && !(*b).start.Equal(start) {
			p.pending = append(p.pending, (*b).row())
			*b = nil
		}
		if *b == nil {
			*b = &bucket{start: start, resolution: res, fromID: p.n.ID(), toID: l.toID}
		}
		(*b).add(s)
	}
	if over := len(p.pending) - maxPendingRows; over > 0 {
		p.pending = p.pending[over:] // the database is away for long: keep the newest
	}
}

// closeBuckets queues the link's open buckets. Called with p.mu held.
func (p *prober) closeBuckets(l *linkState) {
	for _, b := range []*bucket{l.short, l.long} {
		if b != nil {
			p.pending = append(p.pending, b.row())
		}
	}
	l.short, l.long = nil, nil
}

// unsaved is the history of the link to a member at a resolution that is
// not in the database yet: buckets waiting to be written, and the open one.
func (p *prober) unsaved(to string, res time.Duration) []store.LinkSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []store.LinkSample
	for _, r := range p.pending {
		if r.ToID == to && r.Resolution == res {
			out = append(out, r)
		}
	}
	if l := p.links[to]; l != nil {
		for _, b := range []*bucket{l.short, l.long} {
			if b != nil && b.resolution == res {
				out = append(out, b.row())
			}
		}
	}
	return out
}

// flush writes the finished history buckets.
func (p *prober) flush() {
	p.mu.Lock()
	rows := p.pending
	p.pending = nil
	p.mu.Unlock()
	if len(rows) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.n.store.PutLinkSamples(ctx, rows); err != nil {
		p.n.log.Warn("save link history", "err", err)
		p.mu.Lock()
		p.pending = append(rows, p.pending...)
		p.mu.Unlock()
	}
}

// prune deletes history older than it is kept.
func (p *prober) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	for res, keep := range map[time.Duration]time.Duration{bucketShort: keepShort, bucketLong: keepLong} {
		if _, err := p.n.store.DeleteLinkSamplesBefore(ctx, res, now.Add(-keep)); err != nil {
			p.n.log.Warn("delete old link history", "err", err)
		}
	}
}

// report is this member's figures per link, by the member probed.
func (p *prober) report(now time.Time) map[string]LinkStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]LinkStatus, len(p.links))
	for id, l := range p.links {
		out[id] = l.status(now)
	}
	return out
}

// status computes a link's figures. Called with p.mu held.
func (l *linkState) status(now time.Time) LinkStatus {
	st := LinkStatus{To: l.toID, ToName: l.toName, Known: true, MeasuredAgoMs: -1}
	var oks, recent []float64
	var jitter float64
	var jitterN int
	prev, hasPrev := 0.0, false
	for _, s := range l.samples {
		if now.Sub(s.at) > probeWindow {
			continue
		}
		st.Probes++
		if !s.ok {
			st.Lost++
			hasPrev = false
			continue
		}
		ms := float64(s.rtt) / float64(time.Millisecond)
		oks = append(oks, ms)
		if now.Sub(s.at) <= currentWindow {
			recent = append(recent, ms)
		}
		if hasPrev {
			d := ms - prev
			if d < 0 {
				d = -d
			}
			jitter += d
			jitterN++
		}
		prev, hasPrev = ms, true
		st.LastMs = ms
		st.MeasuredAt = s.at.UTC()
	}
	if n := len(l.samples); n > 0 {
		st.Reachable = l.samples[n-1].ok
	}
	if !st.Reachable {
		st.Reason = l.lastErr
	}
	if st.Probes > 0 {
		st.LossPercent = 100 * float64(st.Lost) / float64(st.Probes)
	}
	if len(oks) > 0 {
		st.MinMs, st.MaxMs = slices.Min(oks), slices.Max(oks)
		sum := 0.0
		for _, v := range oks {
			sum += v
		}
		st.AvgMs = sum / float64(len(oks))
		st.MeasuredAgoMs = now.Sub(st.MeasuredAt).Milliseconds()
	}
	if jitterN > 0 {
		st.JitterMs = jitter / float64(jitterN)
	}
	if len(recent) == 0 {
		recent = []float64{st.LastMs}
	}
	slices.Sort(recent)
	st.CurrentMs = recent[len(recent)/2]
	return st
}

// watchEvents records a link that went down or came back, debounced: the
// change must hold for linkDebounce, and each change is one event. A link
// is watched once it was first up, so starting up and being enrolled are
// not outages.
func (p *prober) watchEvents(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if len(l.samples) == 0 {
			continue
		}
		last := l.samples[len(l.samples)-1]
		state := LinkDown
		if last.ok {
			state = LinkOK
		}
		if l.recorded == "" {
			if state == LinkOK {
				l.recorded, l.candidate, l.since = LinkOK, LinkOK, last.at
			}
			continue
		}
		if state != l.candidate {
			l.candidate, l.since = state, last.at
		}
		if l.candidate == l.recorded || now.Sub(l.since) < linkDebounce {
			continue
		}
		details := map[string]string{"from": p.n.cfg.Name, "to": l.toName, "toId": l.toID}
		typ := "ClusterLinkRestored"
		if l.candidate == LinkDown {
			typ = "ClusterLinkDown"
			details["reason"] = l.lastErr
		} else {
			details["roundTripMs"] = formatMs(float64(last.rtt) / float64(time.Millisecond))
		}
		p.n.events.push(Command{Type: CmdRecordEvent, At: l.since.UTC(), Actor: "system", Member: p.n.ID(), Event: &EventSpec{Type: typ, Details: details}})
		p.n.log.Info("link changed", "to", l.toName, "state", l.candidate)
		l.recorded = l.candidate
	}
}

// burst sends burstProbes probes to addr, burstGap apart.
func (p *prober) burst(ctx context.Context, addr string) BurstResult {
	var r BurstResult
	var sum float64
	for i := range burstProbes {
		if i > 0 {
			select {
			case <-ctx.Done():
				r.Error = ctx.Err().Error()
				return r.finish(sum)
			case <-time.After(burstGap):
			}
		}
		r.Sent++
		rtt, err := p.probe(ctx, addr)
		if err != nil {
			r.Error = err.Error()
			continue
		}
		ms := float64(rtt) / float64(time.Millisecond)
		if r.Received == 0 {
			r.MinMs, r.MaxMs = ms, ms
		}
		r.Received++
		r.MinMs, r.MaxMs, sum = min(r.MinMs, ms), max(r.MaxMs, ms), sum+ms
	}
	return r.finish(sum)
}

func (r BurstResult) finish(sum float64) BurstResult {
	if r.Received > 0 {
		r.AvgMs = sum / float64(r.Received)
	}
	if r.Sent > 0 {
		r.LossPercent = 100 * float64(r.Sent-r.Received) / float64(r.Sent)
	}
	if r.Received == r.Sent {
		r.Error = ""
	}
	return r
}

func (p *prober) counters() ProbeCounters {
	return ProbeCounters{Probes: p.probes.Load(), Failures: p.failures.Load(), BytesSent: p.sent.Load(), BytesReceived: p.received.Load()}
}

// formatMs writes milliseconds with one decimal.
func formatMs(ms float64) string {
	return strconv.FormatFloat(ms, 'f', 1, 64)
}

// countingDialer counts the bytes of the connections it dials.
type countingDialer struct {
	d              Dialer
	sent, received *atomic.Uint64
}

func (c countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, sent: c.sent, received: c.received}, nil
}

type countingConn struct {
	net.Conn
	sent, received *atomic.Uint64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.received.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(uint64(n))
	return n, err
}
