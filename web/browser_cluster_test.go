package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"conclave/cluster"
	"conclave/internal/testapp"
)

// TestBrowserAddReplicaUnjoinActivate drives the cluster operations in a
// real Chromium across two appliances, as an administrator would at 3 a.m.:
// Add Replica from alpha's console (the address, what alpha found, signing
// in on beta and approving there, the typed confirmation on alpha: a wrong
// phrase first, refused by the page and by the server), its progress until
// it succeeds, the cluster view with both members; then Unjoin beta, beta's
// own console read-only with its Activate banner, and Activate. It saves a
// full-page screenshot of every page in the test's artifact directory.
//
// The browser reaches alpha as localhost and beta as 127.0.0.1: two host
// names, as two appliances have in production. (Browsers keep cookies per
// host, not per port: on one host name, signing in on beta would replace
// alpha's session cookie.)
func TestBrowserAddReplicaUnjoinActivate(t *testing.T) {
	allocCtx := newChromium(t, 4*time.Minute)
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	alpha.URL = strings.Replace(alpha.URL, "https://127.0.0.1:", "https://localhost:", 1)

	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	b := &browser{t: t, ctx: tab, app: alpha}
	b.watchConsole()

	// Sign in on alpha: one member, and the Add Replica button.
	b.signIn(alpha, "/")
	b.do("wait for the members", chromedp.WaitVisible(chromedp.ID("members")))
	if n := b.eval(`String(document.querySelectorAll("#members tbody tr").length)`); n != "1" {
		t.Fatalf("alpha's cluster view lists %s members, want 1", n)
	}
	if tag := b.eval(`(document.getElementById("add-replica") || {}).tagName || ""`); tag != "A" {
		t.Fatalf("on the primary the Add Replica button is %q, want a link to /cluster/add-replica", tag)
	}
	b.screenshot("10-alpha-one-member.png")

	// 1. The address; a wrong one first: the page says so and keeps it.
	b.do("open Add Replica",
		chromedp.Click(chromedp.ID("add-replica")),
		chromedp.WaitVisible(chromedp.CSS(`#replica-address input[name="address"]`)),
	)
	b.wantPath("/cluster/add-replica")
	b.screenshot("11-add-replica-address.png")
	b.do("look up an address where nothing answers",
		chromedp.SendKeys(chromedp.CSS(`#replica-address input[name="address"]`), "127.0.0.1:1"),
		chromedp.Click(chromedp.CSS(`#replica-address button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("form-error")),
	)
	if msg := b.text(chromedp.CSS("#form-error")); !strings.Contains(strings.ToLower(msg), "cannot reach") || !strings.Contains(msg, "127.0.0.1:1") {
		t.Errorf("the error for an address where nothing answers says %q, want it to say it cannot reach 127.0.0.1:1", msg)
	}
	if v := b.value(chromedp.CSS(`#replica-address input[name="address"]`)); v != "127.0.0.1:1" {
		t.Errorf("after the error the address field holds %q, want what was typed", v)
	}
	b.screenshot("12-add-replica-address-error.png")

	// 2. The right address: alpha shows what it found on beta.
	b.clearField(`#replica-address input[name="address"]`)
	b.do("look up beta",
		chromedp.SendKeys(chromedp.CSS(`#replica-address input[name="address"]`), beta.Addr()),
		chromedp.Click(chromedp.CSS(`#replica-address button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("replica-found")),
	)
	found := b.text(chromedp.CSS("#replica-found"))
	for _, want := range []string{"beta", beta.Addr(), "test", "Online", "SHA-256"} {
		if !strings.Contains(found, want) {
			t.Errorf("what alpha found does not show %q:\n%s", want, found)
		}
	}
	if fp := b.text(chromedp.CSS("#replica-found code.fingerprint")); strings.Count(fp, ":") < 31 {
		t.Errorf("the certificate fingerprint shown is %q, want 32 hex pairs", fp)
	}
	if href := b.eval(`document.getElementById("go-authorize").href`); !strings.HasPrefix(href, beta.URL+"/enroll/authorize?") {
		t.Errorf("the way to approve leads to %q, want beta's /enroll/authorize", href)
	}
	b.screenshot("13-add-replica-found.png")

	// On beta: its own sign-in, then its approval page.
	b.do("go to beta", chromedp.Click(chromedp.ID("go-authorize")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="username"]`)))
	b.wantAt(beta, "/login")
	b.screenshot("14-beta-sign-in.png")
	b.do("sign in on beta",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), testapp.AdminPassword),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("approve")),
	)
	b.wantAt(beta, "/enroll/authorize")
	approval := b.text(chromedp.CSS("main"))
	for _, want := range []string{"alpha", "removed and replaced", "15 minutes"} {
		if !strings.Contains(approval, want) {
			t.Errorf("beta's approval page does not say %q:\n%s", want, approval)
		}
	}
	b.screenshot("15-beta-approve.png")

	// 3. Back on alpha: the confirmation. A wrong phrase keeps the button
	// disabled.
	b.do("approve on beta", chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("confirm-add-replica")))
	b.wantAt(alpha, "/cluster/add-replica/confirm")
	confirm := b.text(chromedp.CSS("main"))
	for _, want := range []string{"beta", "removed and replaced", "locked", "Maintenance"} {
		if !strings.Contains(confirm, want) {
			t.Errorf("the confirmation does not say %q:\n%s", want, confirm)
		}
	}
	phrase := chromedp.CSS(`#confirm-add-replica input[name="confirm"]`)
	submit := chromedp.CSS(`#confirm-add-replica button[type="submit"]`)
	if b.disabled(submit) != "true" {
		t.Error("the Add Replica button is enabled before anything is typed")
	}
	b.do("type a wrong phrase", chromedp.SendKeys(phrase, "add replica"))
	if b.disabled(submit) != "true" {
		t.Error("the Add Replica button is enabled with the phrase typed in small letters")
	}
	b.screenshot("16-confirm-wrong-phrase.png")

	// The server refuses it too (a browser without the script, or one that
	// was tampered with): inline, with the page and the approval kept.
	b.do("force the button on and submit the wrong phrase",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#confirm-add-replica button[type=submit]").disabled = false`),
		chromedp.Click(submit),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-add-replica #form-error`)),
	)
	b.wantAt(alpha, "/cluster/add-replica/confirm")
	if msg := b.text(chromedp.CSS("#form-error")); !strings.Contains(msg, "Add Replica") || !strings.Contains(msg, "exactly") {
		t.Errorf("the server's refusal says %q, want it to name the phrase", msg)
	}
	if inv := b.eval(`document.querySelector("#confirm-add-replica input[name=confirm]").getAttribute("aria-invalid") || ""`); inv != "true" {
		t.Errorf("after the refusal the phrase field is aria-invalid=%q, want true", inv)
	}
	if g := b.eval(`document.querySelector("#confirm-add-replica input[name=grant]").value`); !strings.HasPrefix(g, "cng_") {
		t.Errorf("after the refusal the form lost beta's approval (grant %q)", g)
	}
	if ms := members(t, alpha, alpha.AdminToken(t)); len(ms) != 1 {
		t.Fatalf("a refused confirmation changed the members: %+v", ms)
	}
	b.screenshot("17-confirm-refused.png")

	// The right phrase: the operation, with live progress.
	b.do("type the phrase", chromedp.SendKeys(phrase, "Add Replica"))
	if b.disabled(submit) != "false" {
		t.Fatal("the Add Replica button stays disabled with the right phrase")
	}
	b.do("confirm", chromedp.Click(submit), chromedp.WaitVisible(chromedp.ID("op-result")))
	b.do("wait for a step to run (or the end)", chromedp.WaitVisible(chromedp.CSS(
		`#steps li.current, #op-result[data-state="Succeeded"], #op-result[data-state="Failed"], #op-result[data-state="ResultUnknown"]`)))
	if !strings.HasPrefix(strings.TrimPrefix(b.location(), alpha.URL), "/operations/") {
		t.Fatalf("after confirming the browser shows %s, want the operation", b.location())
	}
	if state := b.attr("#op-result", "data-state"); state == "Running" || state == "Pending" {
		b.screenshot("18-operation-running.png")
		// The step running now, if one has started, is the one marked.
		if bad := b.eval(`Array.from(document.querySelectorAll("#steps li")).filter(li =>
			(li.dataset.state === "Running") !== li.classList.contains("current")).map(li => li.textContent.trim()).join(" | ")`); bad != "" {
			t.Errorf("while it runs, the steps marked current are not the running one: %s", bad)
		}
	} else {
		t.Logf("the operation was %s before its page could be captured running", state)
	}
	b.waitOperationEnd()
	if state := b.attr("#op-result", "data-state"); state != "Succeeded" {
		t.Fatalf("Add Replica ended %s: %s", state, b.text(chromedp.CSS("#op-live")))
	}
	if done := b.eval(`String(document.querySelectorAll("#steps li[data-state=Succeeded]").length)`); done != "9" {
		t.Errorf("%s of 9 steps say Succeeded", done)
	}
	if n := b.eval(`String(document.querySelectorAll("#lock-banner").length)`); n != "0" {
		t.Error("the lock banner is still shown after the operation ended")
	}
	b.screenshot("19-operation-succeeded.png")

	// The cluster view: two members, beta a replica in contact.
	b.waitClusterView(alpha, "beta is a replica in contact", `(() => {
		const row = document.querySelector('#members tr[data-member="beta"]');
		return document.querySelectorAll("#members tbody tr").length === 2 && !!row &&
			row.querySelector(".role").textContent.trim() === "Replica" &&
			row.querySelector(".state .chip").textContent.trim() === "Replica, in contact";
	})()`)
	if role := b.text(chromedp.CSS(`#members tr[data-member="alpha"] .role`)); role != "Primary" {
		t.Errorf("alpha's role = %q, want Primary", role)
	}
	if n := b.eval(`String(document.querySelectorAll("svg.diagram .node").length) + " " + String(document.querySelectorAll("svg.diagram line.link").length)`); n != "2 1" {
		t.Errorf("the diagram has %s nodes and links, want 2 1", n)
	}
	if p := b.eval(`Array.from(document.querySelectorAll("svg.diagram .node.primary")).map(n => n.dataset.member).join()`); p != "alpha" {
		t.Errorf("the diagram marks %q as primary, want alpha", p)
	}
	b.screenshot("20-cluster-two-members.png")

	// Unjoin beta from alpha's console.
	b.do("open Unjoin for beta",
		chromedp.Click(chromedp.CSS(`#members tr[data-member="beta"] a.unjoin`)),
		chromedp.WaitVisible(chromedp.ID("confirm-unjoin")),
	)
	unjoinSubmit := chromedp.CSS(`#confirm-unjoin button[type="submit"]`)
	b.do("type a wrong phrase", chromedp.SendKeys(chromedp.CSS(`#confirm-unjoin input[name="confirm"]`), "unjoin"))
	if b.disabled(unjoinSubmit) != "true" {
		t.Error("the Unjoin button is enabled with a wrong phrase")
	}
	b.clearField(`#confirm-unjoin input[name="confirm"]`)
	b.do("type the phrase", chromedp.SendKeys(chromedp.CSS(`#confirm-unjoin input[name="confirm"]`), "Unjoin"))
	b.screenshot("21-unjoin-confirm.png")
	b.do("unjoin", chromedp.Click(unjoinSubmit), chromedp.WaitVisible(chromedp.ID("op-result")))
	b.waitOperationEnd()
	if state := b.attr("#op-result", "data-state"); state != "Succeeded" {
		t.Fatalf("Unjoin ended %s: %s", state, b.text(chromedp.CSS("#op-live")))
	}
	b.screenshot("22-unjoin-succeeded.png")

	// beta's own console: Online Read-only, with the Activate banner. It has
	// the cluster's accounts now (its own were replaced), so its admin signs
	// in with the cluster's password, which is the same in tests.
	b.signIn(beta, "/")
	b.do("wait for the mode banner", chromedp.WaitVisible(chromedp.ID("mode-banner")))
	if state := b.text(chromedp.CSS("#self-badge .chip")); state != "Online Read-only" {
		t.Errorf("beta's header says %q, want Online Read-only", state)
	}
	banner := b.text(chromedp.CSS("#mode-banner"))
	for _, want := range []string{"left its cluster", "read-only", "Activate"} {
		if !strings.Contains(banner, want) {
			t.Errorf("beta's banner does not say %q:\n%s", want, banner)
		}
	}
	if b.disabled(chromedp.CSS("#add-replica")) != "true" || !strings.Contains(b.text(chromedp.CSS("#add-replica-reason")), "read-only") {
		t.Error("on a read-only appliance Add Replica is not disabled with the reason")
	}
	b.screenshot("23-beta-read-only.png")

	b.do("open Activate", chromedp.Click(chromedp.ID("activate")), chromedp.WaitVisible(chromedp.ID("confirm-activate")))
	b.do("type the phrase", chromedp.SendKeys(chromedp.CSS(`#confirm-activate input[name="confirm"]`), "Activate"))
	b.screenshot("24-activate-confirm.png")
	b.do("activate",
		chromedp.Click(chromedp.CSS(`#confirm-activate button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("members")),
	)
	b.wantAt(beta, "/")
	if state := b.text(chromedp.CSS(`#members tr[data-member="beta"] .state .chip`)); state != "Online" {
		t.Errorf("beta after Activate is %q, want Online", state)
	}
	if n := b.eval(`String(document.querySelectorAll("#mode-banner").length)`); n != "0" {
		t.Error("the read-only banner is still shown after Activate")
	}
	if flash := b.text(chromedp.CSS("main .flash")); !strings.Contains(flash, "activated") {
		t.Errorf("after Activate the page says %q, want it to say beta is activated", flash)
	}
	b.screenshot("25-beta-activated.png")

	b.checkConsole()
}

// TestBrowserOperationFailed shows a failed Add Replica: which step failed,
// the error, the steps not run, and what to do next; and the console of
// the appliance being added while it is in Maintenance, and after its
// enrollment failed.
func TestBrowserOperationFailed(t *testing.T) {
	allocCtx := newChromium(t, 2*time.Minute)
	app := testapp.Start(t, named("alpha"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	steps := []cluster.StepSpec{}
	for i, name := range cluster.AddReplicaSteps {
		run := func(ctx context.Context, p *cluster.Progress) error { return nil }
		switch {
		case i == 3:
			run = func(ctx context.Context, p *cluster.Progress) error {
				p.Report(ctx, 40, "2 of 5 tables sent")
				return errString("snapshot transfer: the replica closed the connection")
			}
		case i < 3:
			run = func(ctx context.Context, p *cluster.Progress) error {
				p.Report(ctx, 100, name+" done")
				return nil
			}
		}
		steps = append(steps, cluster.StepSpec{Name: name, Run: run})
	}
	id, err := app.Node.Runner().Start(ctx, "admin", cluster.OperationSpec{Kind: "Enroll", Steps: steps,
		StartEvent: "ClusterReplicaEnrollmentStarted", EndEvent: "ClusterReplicaEnrollmentCompleted",
		Details: map[string]string{"replica": "gamma", "address": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOperation(t, app, app.AdminToken(t), id)
	if op.State != "Failed" {
		t.Fatalf("the operation is %s, want Failed", op.State)
	}

	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	b := &browser{t: t, ctx: tab, app: app}
	b.watchConsole()
	b.signIn(app, "/operations/"+id)
	b.do("wait for the outcome", chromedp.WaitVisible(chromedp.ID("op-result")))
	result := b.text(chromedp.CSS("#op-result"))
	for _, want := range []string{"Failed at step 4 of 9", "Snapshot transfer", "closed the connection", "can be added again", "Add Replica again"} {
		if !strings.Contains(result, want) {
			t.Errorf("the failed operation's page does not say %q:\n%s", want, result)
		}
	}
	if h1 := b.text(chromedp.CSS("main h1")); !strings.Contains(h1, "Add Replica") || !strings.Contains(h1, "gamma") {
		t.Errorf("the operation's title is %q, want Add Replica and gamma", h1)
	}
	if cur := b.eval(`document.querySelector("#steps li.current").dataset.state`); cur != "Failed" {
		t.Errorf("the step marked current is %q, want the failed one", cur)
	}
	if n := b.eval(`String(document.querySelectorAll("#steps li[data-state=Skipped]").length)`); n != "5" {
		t.Errorf("%s steps are shown as not run, want 5", n)
	}
	b.screenshot("30-operation-failed.png")
	b.checkConsole()

	// gamma, signed in before, while a primary adds it: Maintenance.
	gamma := testapp.Start(t, named("gamma"))
	g := &browser{t: t, ctx: tab, app: gamma}
	g.signIn(gamma, "/")
	enrollPrepare(t, gamma, gamma.Node.IssueGrant("a-cluster-id", "admin"))
	g.do("reload gamma's cluster view", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("mode-banner")))
	if banner := g.text(chromedp.CSS("#mode-banner")); !strings.Contains(banner, "Maintenance") || !strings.Contains(banner, "other-primary") {
		t.Errorf("gamma's banner in Maintenance says %q, want Maintenance and who adds it", banner)
	}
	if g.disabled(chromedp.CSS("#add-replica")) != "true" {
		t.Error("Add Replica is not disabled on an appliance in Maintenance")
	}
	g.screenshot("31-maintenance.png")
	// The primary gave up: gamma says so, and what to do.
	resp, body := secSend(t, gamma, nil, secRequest{method: "POST", path: "/node/v1/enroll/abort", json: map[string]string{"reason": "snapshot transfer: the replica closed the connection"},
		header: map[string]string{"Authorization": "Grant " + gamma.Node.IssueGrant("a-cluster-id", "admin")}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: status %d; body %q", resp.StatusCode, secShort(body))
	}
	g.do("reload gamma's cluster view", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("mode-banner")))
	if banner := g.text(chromedp.CSS("#mode-banner")); !strings.Contains(banner, "failed") || !strings.Contains(banner, "closed the connection") {
		t.Errorf("gamma's banner after a failed enrollment says %q, want the failure and its reason", banner)
	}
	g.screenshot("32-maintenance-failed.png")
	g.checkConsole()
}

type errString string

func (e errString) Error() string { return string(e) }

// signIn opens path on app, signs in there as its administrator, and
// waits to be back on path.
func (b *browser) signIn(app *testapp.App, path string) {
	b.t.Helper()
	b.do("open "+app.Cfg.Name+path, chromedp.Navigate(app.URL+path),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="username"]`)))
	b.do("sign in on "+app.Cfg.Name,
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), testapp.AdminPassword),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`form[action="/login"]`)),
	)
	b.wantAt(app, strings.SplitN(path, "?", 2)[0])
}

// disabled is "true" or "false": whether the element is disabled.
func (b *browser) disabled(sel chromedp.CSS) string {
	b.t.Helper()
	return b.eval(`String(document.querySelector(` + jsString(string(sel)) + `).disabled)`)
}

// clearField empties a text field as a person would (select all, delete),
// so its input event runs.
func (b *browser) clearField(sel string) {
	b.t.Helper()
	b.do("clear "+sel,
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+jsString(sel)+`).select()`),
		chromedp.KeyEvent(kb.Backspace),
	)
	if v := b.value(chromedp.CSS(sel)); v != "" {
		b.t.Fatalf("%s still holds %q after clearing it", sel, v)
	}
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	return b.eval(`(document.querySelector(` + jsString(sel) + `) || {getAttribute() { return "" }}).getAttribute(` + jsString(name) + `) || ""`)
}

// waitOperationEnd waits on the operation page, which updates itself,
// until the operation has ended.
func (b *browser) waitOperationEnd() {
	b.t.Helper()
	b.do("wait for the operation to end", chromedp.WaitVisible(
		chromedp.CSS(`#op-result:not([data-state="Running"]):not([data-state="Pending"])`)))
}

// waitClusterView reloads app's cluster view until cond (a JS expression)
// holds, for up to a minute.
func (b *browser) waitClusterView(app *testapp.App, what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b.do("open the cluster view", chromedp.Navigate(app.URL+"/"), chromedp.WaitVisible(chromedp.ID("members")))
		if b.eval(`String(`+cond+`)`) == "true" {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting for %s: the cluster view still shows:\n%s", what, b.text(chromedp.CSS("#members")))
		}
	}
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
