package web_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"conclave/internal/testapp"
)

// TestBrowserBackups: "Back up first" leads to the Backups page, a backup is
// made with a passphrase typed twice, the way back is offered, and a restore
// with the wrong passphrase is refused on the page, nothing changed.
func TestBrowserBackups(t *testing.T) {
	allocCtx := newChromium(t, 2*time.Minute)
	app := testapp.Start(t)
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	b := &browser{t: t, ctx: ctx, app: app}
	b.watchConsole()
	ret := "/cluster/members/" + app.Node.ID() + "/unjoin"
	b.signIn(app, "/backups?return="+ret)

	b.do("type two different passphrases",
		chromedp.SendKeys(chromedp.CSS(`input[name="passphrase"]`), "first passphrase of twelve"),
		chromedp.SendKeys(chromedp.CSS(`input[name="passphrase2"]`), "second passphrase, another"),
		chromedp.Click(chromedp.CSS(`form[action="/backups"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash.bad`)),
	)
	if msg := b.text(chromedp.CSS(`.flash.bad`)); !strings.Contains(msg, "differ") {
		t.Errorf("mismatch message %q", msg)
	}
	b.do("back up",
		chromedp.SendKeys(chromedp.CSS(`input[name="passphrase"]`), backupPass),
		chromedp.SendKeys(chromedp.CSS(`input[name="passphrase2"]`), backupPass),
		chromedp.Click(chromedp.CSS(`form[action="/backups"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok`)),
	)
	if msg := b.text(chromedp.CSS(`.flash.ok`)); !strings.Contains(msg, "is ready") {
		t.Errorf("backup message %q", msg)
	}
	if href := b.attr(`a.button.primary`, "href"); href != ret {
		t.Errorf("continue link %q, want %q", href, ret)
	}
	if rows := b.eval(`String(document.querySelectorAll("table.grid tbody tr").length)`); rows != "1" {
		t.Errorf("%s backups listed, want 1", rows)
	}
	b.screenshot("backup-made.png")

	files, err := app.Node.ListBackups()
	if err != nil || len(files) != 1 {
		t.Fatalf("backups: %v %v", files, err)
	}
	before := tableSums(t, app)
	b.do("restore with a wrong passphrase",
		chromedp.SetUploadFiles(`input[name="file"]`, []string{filepath.Join(app.Node.BackupSettings().Dir, files[0].Name)}),
		chromedp.SendKeys(chromedp.CSS(`form[action="/backups/restore"] input[name="passphrase"]`), "not the passphrase"),
		chromedp.SendKeys(chromedp.CSS(`form[action="/backups/restore"] input[name="confirm"]`), "Restore"),
		chromedp.Click(chromedp.CSS(`form[action="/backups/restore"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/backups/restore"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash.bad`)),
	)
	if msg := b.text(chromedp.CSS(`.flash.bad`)); !strings.Contains(msg, "Nothing was changed") || !strings.Contains(msg, "passphrase is wrong") {
		t.Errorf("restore refusal %q", msg)
	}
	b.screenshot("restore-refused.png")
	if after := tableSums(t, app); !equalSums(before, after) {
		t.Errorf("a refused restore changed the data")
	}

	// The Activity Center shows the backup and says the audit log holds.
	b.do("open the Activity Center", chromedp.Navigate(app.URL+"/activity"), chromedp.WaitVisible(chromedp.ID("audit-chain")))
	if msg := b.text(chromedp.CSS("#audit-chain")); !strings.Contains(msg, "Audit log intact") {
		t.Errorf("audit chain: %q", msg)
	}
	b.screenshot("activity-chain.png")
	b.checkConsole()
}
