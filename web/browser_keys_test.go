package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"conclave/internal/testapp"
)

// TestBrowserKeys: the Keys page shows the active key and what it seals;
// Rotate Key with the typed phrase leads to the operation, which ends
// Succeeded, and the page then shows only the new key.
func TestBrowserKeys(t *testing.T) {
	allocCtx := newChromium(t, 2*time.Minute)
	app := testapp.Start(t)
	admin := app.AdminToken(t)
	importAccounts(t, app, admin, 50)
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	b := &browser{t: t, ctx: ctx, app: app}
	b.watchConsole()
	b.signIn(app, "/keys")

	b.do("open Keys", chromedp.WaitVisible(chromedp.CSS(`form[action="/keys/rotate"]`)))
	before := b.text(chromedp.CSS(`dl.facts dd code`))
	if rows := b.eval(`String(document.querySelectorAll("table.grid tbody tr").length)`); rows != "1" {
		t.Errorf("%s keys listed, want 1", rows)
	}
	if cells := b.text(chromedp.CSS(`table.grid tbody tr`)); !strings.Contains(cells, "50") {
		t.Errorf("the active key's row %q does not count the 50 passwords", cells)
	}
	b.screenshot("keys-before.png")
	b.do("rotate",
		chromedp.SendKeys(chromedp.CSS(`input[name="confirm"]`), "Rotate Key"),
		chromedp.Click(chromedp.CSS(`form[action="/keys/rotate"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#steps li.current, #op-result`)),
	)
	url := b.location()
	id, ok := strings.CutPrefix(url, app.URL+"/operations/")
	if !ok {
		t.Fatalf("after Rotate Key the browser is at %s, want the operation", url)
	}
	if op := app.WaitOperation(t, admin, id, time.Minute); op.State != "Succeeded" {
		t.Fatalf("rotation: %s (%s)", op.State, op.Error)
	}
	b.do("reload the operation", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#op-result[data-state="Succeeded"]`)))
	b.screenshot("keys-rotation-operation.png")
	b.do("open Keys again", chromedp.Navigate(app.URL+"/keys"), chromedp.WaitVisible(chromedp.CSS(`form[action="/keys/rotate"]`)))
	after := b.text(chromedp.CSS(`dl.facts dd code`))
	if after == before || after == "" {
		t.Errorf("active key after the rotation %q (before %q)", after, before)
	}
	if rows := b.eval(`String(document.querySelectorAll("table.grid tbody tr").length)`); rows != "1" {
		t.Errorf("%s keys listed after the rotation, want 1", rows)
	}
	b.screenshot("keys-after.png")
	b.checkConsole()
}
