package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserOfflineWorkflow: gamma is cut off from the other two members.
// An administrator signs in on gamma, finds Enable Offline Workflow beside
// Reset Cluster and confirms it with the phrase. Every page of gamma then carries the Offline Workflow banner saying
// what works and what does not; a request page works; Resume Online while
// the majority is still away says which members do not answer.
func TestBrowserOfflineWorkflow(t *testing.T) {
	allocCtx := newChromium(t, 5*time.Minute)
	c := startOfflineCluster(t)
	gamma := c.gamma
	c.cutGamma(t)

	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	b := &browser{t: t, ctx: tab, app: gamma}
	b.watchConsole()
	b.signIn(gamma, "/")
	b.do("wait for the Offline Workflow offer", chromedp.WaitVisible(chromedp.ID("offline-offer")), chromedp.WaitVisible(chromedp.ID("reset-offer")))
	b.screenshot("60-offline-offer.png")
	b.do("open Enable Offline Workflow", chromedp.Click(chromedp.CSS(`#offline-offer a`)), chromedp.WaitVisible(chromedp.ID("offline-form")))
	b.wantPath("/cluster/isolate")
	page := b.text(chromedp.CSS("main"))
	for _, want := range []string{"lost contact with the majority", "read-only", "AccessRequestPasswordResetByPassed", "dropped", "No member can be added or removed"} {
		if !strings.Contains(page, want) {
			t.Errorf("the Enable Offline Workflow page does not say %q:\n%s", want, page)
		}
	}
	// A wrong phrase keeps the button disabled (app.js); the API test covers the 422.
	b.do("type the phrase, submit",
		chromedp.SendKeys(chromedp.CSS(`input[name="confirm"]`), "Enable Offline Workflow"),
		chromedp.Click(chromedp.CSS(`#offline-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-result`)),
		chromedp.WaitVisible(chromedp.ID("offline-banner")),
	)
	waitState(t, gamma, "Isolated")
	b.do("open the cluster view", chromedp.Navigate(gamma.URL+"/"), chromedp.WaitVisible(chromedp.ID("offline-banner")))
	banner := b.text(chromedp.CSS("#offline-banner"))
	for _, want := range []string{"Offline Workflow on gamma", "password requests, approvals, releases and check-ins", "Read-only", "Resume Online"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner does not say %q: %s", want, banner)
		}
	}
	b.screenshot("61-offline-cluster-view.png")
	b.do("open the requests page", chromedp.Navigate(gamma.URL+"/requests"), chromedp.WaitVisible(chromedp.ID("offline-banner")))
	b.screenshot("62-offline-requests.png")

	b.do("open Resume Online", chromedp.Click(chromedp.CSS(`#offline-banner a`)), chromedp.WaitVisible(chromedp.ID("offline-form")))
	b.wantPath("/cluster/reintegrate")
	if msg := b.text(chromedp.CSS("#offline-error")); !strings.Contains(msg, "alpha, beta do not answer") {
		t.Errorf("Resume Online without a majority says %q; want it to name alpha and beta", msg)
	}
	b.screenshot("63-resume-without-majority.png")
	b.checkConsole()
}
