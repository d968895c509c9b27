package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"conclave/internal/testapp"
)

// TestBrowserResetClusterKeepsTwo: four members, two of them gone for good,
// so the two left (alpha, the primary, and beta) have no consensus. An
// administrator signs in on alpha (a session kept by alpha alone: nothing
// can be written to the cluster), finds Reset Cluster on the cluster view,
// keeps alpha and beta and makes beta the new primary, typing beta's name
// and the phrase (a wrong name first, refused inline). Afterwards beta is
// the primary of a two-member cluster, alpha a replica with beta's data,
// every write made before is on both, and the two left out are fenced.
func TestBrowserResetClusterKeepsTwo(t *testing.T) {
	allocCtx := newChromium(t, 5*time.Minute)
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	delta := testapp.Start(t, named("delta"))
	for _, r := range []*testapp.App{beta, gamma, delta} {
		addReplica(t, alpha, r)
	}
	alpha.CreateUser(t, "before-reset", "before-reset-pw", "Helpdesk")
	tok := alpha.AdminToken(t)
	ms := members(t, alpha, tok)

	gamma.Stop(t)
	delta.Stop(t)
	waitState(t, alpha, "PrimaryNoQuorum")
	waitState(t, beta, "ReplicaNoQuorum")
	waitMemberState(t, alpha, tok, "gamma", "Unreachable")
	waitMemberState(t, alpha, tok, "delta", "Unreachable")

	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	b := &browser{t: t, ctx: tab, app: alpha}
	b.watchConsole()
	b.signIn(alpha, "/")
	b.do("wait for the Reset Cluster offer", chromedp.WaitVisible(chromedp.ID("reset-offer")))
	b.screenshot("40-no-consensus-cluster-view.png")
	b.do("open Reset Cluster", chromedp.Click(chromedp.CSS(`#reset-offer a`)), chromedp.WaitVisible(chromedp.ID("reset-form")))
	b.wantPath("/cluster/reset")
	page := b.text(chromedp.CSS("main"))
	for _, want := range []string{"lost consensus", "alpha", "beta", "gamma", "delta", "fenced", "Add Replica"} {
		if !strings.Contains(page, want) {
			t.Errorf("the Reset Cluster page does not say %q:\n%s", want, page)
		}
	}
	for name, want := range map[string]string{"gamma": "true", "delta": "true", "alpha": "false", "beta": "false"} {
		sel := `#reset-members input[name="keep"][value="` + ms[name].ID + `"]`
		if got := b.disabled(chromedp.CSS(sel)); got != want {
			t.Errorf("keeping %s: disabled=%s, want %s (only unreachable members cannot be kept)", name, got, want)
		}
	}
	b.screenshot("41-reset-cluster.png")

	// beta as the new primary, with alpha's name typed: refused inline,
	// the choices kept.
	b.do("choose beta, type the wrong name",
		chromedp.Click(chromedp.CSS(`#reset-members input[name="primary"][value="`+ms["beta"].ID+`"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="primaryName"]`), "alpha"),
		chromedp.SendKeys(chromedp.CSS(`input[name="confirm"]`), "Reset Cluster"),
		chromedp.Click(chromedp.CSS(`#reset-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("reset-error")),
	)
	if msg := b.text(chromedp.CSS("#reset-error")); !strings.Contains(msg, "beta") {
		t.Errorf("the error for a wrong primary name says %q, want it to name beta", msg)
	}
	if got := b.eval(`String(document.querySelector('#reset-members input[name="primary"][value="` + ms["beta"].ID + `"]').checked)`); got != "true" {
		t.Error("after the error, beta is no longer chosen as the new primary")
	}
	b.screenshot("42-reset-wrong-name.png")
	b.clearField(`input[name="primaryName"]`)
	b.do("type beta's name and the phrase, submit",
		chromedp.SendKeys(chromedp.CSS(`input[name="primaryName"]`), "beta"),
		chromedp.SendKeys(chromedp.CSS(`input[name="confirm"]`), "Reset Cluster"),
		chromedp.Click(chromedp.CSS(`#reset-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-result`)),
	)
	loc := b.location()
	if !strings.Contains(loc, "/operations/") {
		t.Fatalf("after confirming, the browser is at %s, want the operation's page", loc)
	}
	opID := loc[strings.LastIndex(loc, "/")+1:]

	// alpha, which ran the reset, answers for it until the new cluster
	// can write it; the record then reaches beta, the new primary, first.
	waitState(t, beta, "Online")
	waitState(t, alpha, "ReplicaWithQuorum")
	if op := waitOperation(t, alpha, tok, opID); op.State != "Succeeded" {
		t.Fatalf("reset operation on alpha: %+v", op)
	}
	btok := beta.AdminToken(t)
	op := waitOperation(t, beta, btok, opID)
	if op.State != "Succeeded" || op.Kind != "Reset" || len(op.Steps) != 4 {
		t.Fatalf("reset operation on beta: %+v", op)
	}
	for _, s := range op.Steps {
		if s.State != "Succeeded" {
			t.Errorf("step %q: %s (%s)", s.Name, s.State, s.Message)
		}
	}
	after := members(t, beta, btok)
	if len(after) != 2 || after["beta"].Role != "Primary" || after["alpha"].Role != "Replica" {
		t.Fatalf("members after reset: %+v", after)
	}
	beta.CreateUser(t, "after-reset", "after-reset-pw", "Helpdesk")
	for _, app := range []*testapp.App{alpha, beta} {
		waitUsers(t, app, "before-reset", "after-reset")
	}
	if evs := eventsOfType(t, beta, btok, "ClusterResetCompleted"); len(evs) != 1 || !strings.Contains(evs[0].Details["leftOut"], "gamma") {
		t.Fatalf("ClusterResetCompleted: %+v", evs)
	}
	b.do("open the operation", chromedp.Navigate(alpha.URL+"/operations/"+opID), chromedp.WaitVisible(chromedp.ID("op-result")))
	b.screenshot("43-reset-done.png")

	// gamma comes back: fenced by both kept members.
	gamma = gamma.Restart(t)
	for _, app := range []*testapp.App{alpha, beta} {
		if app.Node.IsPeerAllowed(ms["gamma"].ID) {
			t.Errorf("%s lets gamma, left out of the reset, talk to it", app.Cfg.Name)
		}
	}
	if st := gamma.Node.Status(); st.LeaderID == ms["beta"].ID {
		t.Fatalf("gamma, left out of the reset, follows beta: %+v", st)
	}
	b.checkConsole()
}

// waitMemberState waits until app's member list shows name in state want.
func waitMemberState(t *testing.T, app *testapp.App, token, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := members(t, app, token)[name]
		if m.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s shows %s as %s, want %s", app.Cfg.Name, name, m.State, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUsers waits until app's own database has the named users (a replica
// catching up).
func waitUsers(t *testing.T, app *testapp.App, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := ""
		for _, n := range names {
			if _, err := app.Store.UserByUsername(t.Context(), n); err != nil {
				missing = n
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not have user %s", app.Cfg.Name, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
