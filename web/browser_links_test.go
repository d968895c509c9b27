package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"conclave/cluster"
)

// TestBrowserNetworkPage looks at link latency as a helpdesk person does
// at night: three members, one link slowed down. The cluster view labels
// the connectors with their round trips (the slow one amber); the Network
// page shows the matrix with that one cell Warning and a chart per pair
// with some history; Test link shows its result in the page. Screenshots
// of each are kept in the test's artifact directory.
func TestBrowserNetworkPage(t *testing.T) {
	allocCtx := newChromium(t, 3*time.Minute)
	net, alpha, beta, gamma := threeOnNetwork(t)
	tok := alpha.AdminToken(t)
	net.Delay("beta", "gamma", 15*time.Millisecond)
	waitLinks(t, alpha, tok, time.Now().Add(30*time.Second), "beta → gamma Warning, the others OK", func(ls map[string]linkRow) bool {
		if len(ls) != 6 {
			return false
		}
		for k, l := range ls {
			if (k == "beta->gamma") != (l.Level == cluster.LinkWarning) || (k != "beta->gamma" && l.Level != cluster.LinkOK) {
				return false
			}
		}
		return true
	})
	// Some history for the charts: the 10-second buckets are written
	// every 10 seconds.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		h, err := beta.Node.OwnLinkHistory(context.Background(), gamma.Node.ID(), cluster.RangeHour)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("beta wrote %d buckets of history of beta → gamma in a minute, want 2", len(h))
		}
		<-tick.C
	}

	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	b := &browser{t: t, ctx: ctx, app: alpha}
	b.watchConsole()
	b.signIn(alpha, "/")
	b.do("wait for the diagram's link labels", chromedp.WaitVisible(chromedp.CSS(`svg.diagram .link-label`)))
	labels := b.eval(`Array.from(document.querySelectorAll("svg.diagram .link-label")).map(l => l.getAttribute("class") + "=" + l.textContent.trim().split("\n").pop().trim()).join("|")`)
	if strings.Count(labels, "lvl-warning") != 1 || strings.Count(labels, "lvl-ok") != 2 || !strings.Contains(labels, " ms") {
		t.Errorf("diagram connectors = %q, want one Warning and two OK, each with its round trip in ms", labels)
	}
	b.screenshot("links-01-cluster.png")

	b.do("open Network",
		chromedp.Click(chromedp.CSS(`nav.main a[href="/network"]`)),
		chromedp.WaitVisible(chromedp.ID("link-matrix")),
	)
	b.wantPath("/network")
	cell := `#link-matrix tr[data-from="beta"] td[data-to="gamma"]`
	if lv := b.attr(cell, "data-level"); lv != cluster.LinkWarning {
		t.Errorf("beta → gamma cell is %q, want Warning", lv)
	}
	if bg := b.eval(`getComputedStyle(document.querySelector(` + jsString(cell) + `)).backgroundColor`); bg == b.eval(`getComputedStyle(document.querySelector('#link-matrix tr[data-from="alpha"] td[data-to="beta"]')).backgroundColor`) {
		t.Errorf("the Warning cell has the same colour as an OK one: %s", bg)
	}
	if title := b.attr(cell, "title"); !strings.Contains(title, "min") || !strings.Contains(title, "Last measured") {
		t.Errorf("beta → gamma cell's title = %q, want min/avg/max and when it was last measured", title)
	}
	if n := b.eval(`String(document.querySelectorAll("svg.chart-svg path.line").length)`); n == "0" {
		t.Errorf("the charts draw no line")
	}
	b.screenshot("links-02-network.png")

	b.do("Test link beta ↔ gamma",
		chromedp.Click(chromedp.CSS(`#chart-beta-gamma button.test-link`)),
		chromedp.WaitVisible(chromedp.ID("link-test")),
	)
	result := b.text(chromedp.CSS("#link-test"))
	if !strings.Contains(result, "beta → gamma") || !strings.Contains(result, "gamma → beta") || !strings.Contains(result, "10 of 10") {
		t.Errorf("Test link result = %q, want both directions, all 10 answered", result)
	}
	b.screenshot("links-03-test-link.png")

	b.do("open the day", chromedp.Navigate(alpha.URL+"/network?range=day"), chromedp.WaitVisible(chromedp.ID("link-matrix")))
	b.screenshot("links-04-network-day.png")

	// gamma stops: the page (which updates itself) shows the links to it
	// Down and its own links unknown; so does the cluster view.
	b.do("open the hour", chromedp.Navigate(alpha.URL+"/network"), chromedp.WaitVisible(chromedp.ID("link-matrix")))
	gamma.Stop(t)
	b.do("wait for the links to gamma Down and gamma's own unknown, without a reload",
		chromedp.WaitVisible(chromedp.CSS(`#link-matrix tr[data-from="alpha"] td[data-to="gamma"][data-level="Down"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#link-matrix tr[data-from="gamma"] td[data-to="alpha"][data-level="Unknown"]`)),
	)
	b.screenshot("links-05-network-member-down.png")
	b.do("open the cluster view", chromedp.Navigate(alpha.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`svg.diagram .link-label.lvl-down`)))
	b.screenshot("links-06-cluster-member-down.png")
	b.checkConsole()
}
