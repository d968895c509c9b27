package web_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"conclave/internal/testapp"
)

// TestBrowserAccessRequest drives the workflow in Chromium as the three
// people it involves would: a requester finds an account and asks for it
// with a reason, an approver approves it from Approvals, the requester
// shows the password and checks the account in. Screenshots of every page
// go to the test's artifact directory.
func TestBrowserAccessRequest(t *testing.T) {
	allocCtx := newChromium(t, 3*time.Minute)
	app := testapp.Start(t)
	app.CreateUser(t, "rita", secPassword, "Requester")
	app.CreateUser(t, "abel", secPassword, "Approver")
	admin := app.AdminToken(t)
	var asset struct{ ID string }
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/assets", map[string]string{"name": "db-prod-1", "address": "10.20.0.11", "platform": "PostgreSQL"}, &asset); status != http.StatusCreated {
		t.Fatalf("create asset: status %d", status)
	}
	var ids []string
	for _, u := range []string{"postgres", "replication"} {
		var acct struct{ ID string }
		if status := app.JSON(t, admin, http.MethodPost, "/api/v1/accounts", map[string]string{"assetId": asset.ID, "username": u, "password": "Tr0ub4dor&3-" + u}, &acct); status != http.StatusCreated {
			t.Fatalf("create account: status %d", status)
		}
		ids = append(ids, acct.ID)
	}
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/policies", map[string]any{"name": "Production databases", "accountIds": ids,
		"requesters": []string{"rita"}, "approvers": []string{"abel"}, "approvalRequired": true, "durationMinutes": 60, "changeAfterCheckin": true}, nil); status != http.StatusCreated {
		t.Fatalf("create policy: status %d", status)
	}

	// The administrator's view of assets and policies.
	adminTab, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ab := &browser{t: t, ctx: adminTab, app: app}
	ab.watchConsole()
	ab.signIn(app, "/assets")
	ab.do("wait for the accounts", chromedp.WaitVisible(chromedp.CSS(`#accounts tr[data-account="postgres@db-prod-1"]`)))
	ab.screenshot("workflow-01-assets.png")
	ab.do("open Policies", chromedp.Click(chromedp.CSS(`nav.main a[href="/policies"]`)), chromedp.WaitVisible(chromedp.CSS(`#policies tr[data-policy="Production databases"]`)))
	ab.screenshot("workflow-02-policies.png")
	// A file with bad lines: each is listed, nothing is imported.
	bad := filepath.Join(t.TempDir(), "accounts.csv")
	if err := os.WriteFile(bad, []byte("asset,address,platform,username,password\nweb-1,10.0.0.1,Linux,root,pw\nweb-1,10.0.0.9,Linux,admin,pw\nweb-2,10.0.0.2,Linux,,pw\nweb-3,10.0.0.3,Linux,root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ab.do("import a file with bad lines",
		chromedp.Click(chromedp.CSS(`nav.main a[href="/assets"]`)),
		chromedp.WaitVisible(chromedp.ID("import-form")),
		chromedp.SetUploadFiles(chromedp.ID("import-file"), []string{bad}),
		chromedp.Click(chromedp.CSS(`#import-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("import-problems")),
	)
	if problems := ab.text(chromedp.CSS("#import-problems")); !strings.Contains(problems, "Line 3") || !strings.Contains(problems, "Line 4") || !strings.Contains(problems, "Line 5") {
		t.Errorf("the import lists %q, want lines 3, 4 and 5", problems)
	}
	ab.do("scroll to the import", chromedp.ScrollIntoView(chromedp.ID("import-error")))
	ab.screenshot("workflow-02b-import-problems.png")

	// Rita asks for postgres@db-prod-1.
	// Each person has a browser context of their own (their own cookies).
	ritaTab, cancelRita := chromedp.NewContext(adminTab, chromedp.WithNewBrowserContext())
	defer cancelRita()
	rb := &browser{t: t, ctx: ritaTab, app: app}
	rb.watchConsole()
	signInAs(rb, app, "rita", "/requests")
	if nav := rb.text(chromedp.CSS("nav.main")); !strings.Contains(nav, "My requests") || strings.Contains(nav, "Approvals") {
		t.Errorf("a Requester's navigation reads %q, want My requests and no Approvals", nav)
	}
	rb.do("find the account",
		chromedp.SendKeys(chromedp.CSS(`input[name="search"]`), "db-prod"),
		chromedp.Click(chromedp.CSS(`form[role="search"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#request-accounts tr[data-account="postgres@db-prod-1"]`)),
	)
	rb.screenshot("workflow-03-find-account.png")
	rb.do("open the request form",
		chromedp.Click(chromedp.CSS(`#request-accounts tr[data-account="postgres@db-prod-1"] a.button`)),
		chromedp.WaitVisible(chromedp.CSS(`textarea[name="reason"]`)),
	)
	if terms := rb.text(chromedp.CSS("ul.terms")); !strings.Contains(terms, "abel") || !strings.Contains(terms, "60 minutes") {
		t.Errorf("the request form's terms read %q, want the approver and the duration", terms)
	}
	rb.do("ask with a reason",
		chromedp.SendKeys(chromedp.CSS(`textarea[name="reason"]`), "INC-4711: the nightly vacuum is stuck"),
		chromedp.Click(chromedp.CSS(`form[action="/requests"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#request[data-state="Pending"]`)),
	)
	requestPath := strings.TrimPrefix(rb.location(), app.URL)
	rb.screenshot("workflow-04-request-pending.png")

	// Abel approves it.
	abelTab, cancelAbel := chromedp.NewContext(adminTab, chromedp.WithNewBrowserContext())
	defer cancelAbel()
	bb := &browser{t: t, ctx: abelTab, app: app}
	bb.watchConsole()
	signInAs(bb, app, "abel", "/approvals")
	row := `#pending-requests tr[data-requester="rita"]`
	bb.do("see the waiting request", chromedp.WaitVisible(chromedp.CSS(row)))
	if reason := bb.text(chromedp.CSS(row + ` .reason-cell`)); !strings.Contains(reason, "INC-4711") {
		t.Errorf("the approver sees the reason %q, want the requester's", reason)
	}
	bb.screenshot("workflow-05-approvals.png")
	bb.do("approve",
		chromedp.SendKeys(chromedp.CSS(row+` input[name="comment"]`), "ok, go ahead"),
		chromedp.Click(chromedp.CSS(row+` button[data-action="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#request[data-state="Available"]`)),
	)

	// Rita sees the password, then checks in.
	// Her page shows the decision by itself (it updates while pending).
	rb.do("see the approval arrive", chromedp.WaitVisible(chromedp.CSS(`#request[data-state="Available"]`)))
	rb.wantAt(app, requestPath)
	rb.screenshot("workflow-06-request-approved.png")
	rb.do("show the password",
		chromedp.Click(chromedp.CSS(`#request button[data-action="show-password"]`)),
		chromedp.WaitVisible(chromedp.CSS(`output#password`)),
	)
	if pw := rb.text(chromedp.CSS(`output#password`)); pw != "Tr0ub4dor&3-postgres" {
		t.Errorf("the released password reads %q, want the account's", pw)
	}
	rb.screenshot("workflow-07-password.png")
	rb.do("check in",
		chromedp.Click(chromedp.CSS(`button[data-action="checkin"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#request[data-state="CheckedIn"]`)),
	)
	if lead := rb.text(chromedp.CSS(`#request .lead`)); !strings.Contains(lead, "password was changed") {
		t.Errorf("after check-in the request reads %q, want it to say the password changed", lead)
	}
	rb.screenshot("workflow-08-checked-in.png")
	for _, b := range []*browser{ab, rb, bb} {
		b.checkConsole()
	}
}

// signInAs opens path on app and signs in there as user.
func signInAs(b *browser, app *testapp.App, user, path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(app.URL+path),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="username"]`)))
	b.do("sign in as "+user,
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), secPassword),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`form[action="/login"]`)),
	)
	b.wantAt(app, path)
}
