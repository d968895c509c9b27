package cluster

import (
	"strings"
	"testing"
	"time"
)

// The figures of a link come from the last minute of probes; the current
// round trip (what the console colours by) is the median of the last 5
// seconds, so one slow probe does not change a link's colour and a change
// that lasts shows within seconds.
func TestLinkStatusFigures(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 2, 0, 0, time.UTC)
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	l := &linkState{toID: "c", toName: "gamma"}
	// 50 s of 1 ms, one probe lost, then 5 s at 20 ms with one 90 ms spike.
	for i := 60; i > 10; i-- {
		l.samples = append(l.samples, probeSample{at: now.Add(-time.Duration(i) * time.Second), rtt: ms(1), ok: i != 30})
	}
	for i, v := range []float64{20, 20, 90, 20, 21} {
		l.samples = append(l.samples, probeSample{at: now.Add(time.Duration(i-5) * time.Second), rtt: ms(v), ok: true})
	}
	st := l.status(now)
	if !st.Reachable || st.Probes != 55 || st.Lost != 1 {
		t.Fatalf("status = %+v, want reachable, 55 probes, 1 lost", st)
	}
	if st.CurrentMs != 20 {
		t.Errorf("current = %v ms, want the median of the last 5 s, 20", st.CurrentMs)
	}
	if st.MinMs != 1 || st.MaxMs != 90 || st.LastMs != 21 {
		t.Errorf("min/max/last = %v/%v/%v, want 1/90/21", st.MinMs, st.MaxMs, st.LastMs)
	}
	if want := 100.0 / 55; st.LossPercent < want-0.01 || st.LossPercent > want+0.01 {
		t.Errorf("loss = %v%%, want %v%%", st.LossPercent, want)
	}
	th := DefaultLinkThresholds()
	if got := th.Level(st); got != LinkWarning {
		t.Errorf("level = %s, want Warning (20 ms)", got)
	}
	// The last probe lost: Down at once, the figures of the minute stay.
	l.samples = append(l.samples, probeSample{at: now, ok: false})
	l.lastErr = "the link is cut"
	st = l.status(now)
	if st.Reachable || th.Level(st) != LinkDown || st.Reason != "the link is cut" || st.MinMs != 1 {
		t.Errorf("after a lost probe: %+v (level %s), want Down with the reason", st, th.Level(st))
	}
	// Not measured yet, and not asked: Unknown.
	if got := th.Level(LinkStatus{Known: true}); got != LinkUnknown {
		t.Errorf("a link never probed is %s, want Unknown", got)
	}
	if got := th.Level(LinkStatus{Reachable: true, CurrentMs: 1, Probes: 3}); got != LinkUnknown {
		t.Errorf("a link of a member that did not answer is %s, want Unknown", got)
	}
	// Stale after 5 s without an answer.
	fresh := LinkStatus{Known: true, Reachable: true, Probes: 1, MeasuredAt: now.Add(-4 * time.Second)}
	if fresh.Stale(now) || !fresh.Stale(now.Add(2*time.Second)) {
		t.Errorf("stale: %v at 4 s, %v at 6 s; want false, true", fresh.Stale(now), fresh.Stale(now.Add(2*time.Second)))
	}
}

func TestLinkThresholdsValidate(t *testing.T) {
	for _, tc := range []struct {
		th    LinkThresholds
		field string
	}{
		{LinkThresholds{10, 50}, ""},
		{LinkThresholds{0, 50}, "linkOkBelowMs"},
		{LinkThresholds{-1, 50}, "linkOkBelowMs"},
		{LinkThresholds{10, 10}, "linkWarningBelowMs"},
		{LinkThresholds{10, 5}, "linkWarningBelowMs"},
		{LinkThresholds{10, 70000}, "linkWarningBelowMs"},
	} {
		err := tc.th.Validate()
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: %v, want valid", tc.th, err)
		case tc.field != "" && (err == nil || !strings.Contains(err.Error(), "threshold")):
			t.Errorf("%+v: %v, want an error about %s", tc.th, err, tc.field)
		}
	}
}
