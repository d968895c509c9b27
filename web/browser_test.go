package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"conclave/internal/testapp"
)

// TestBrowserConsole drives the console in a real Chromium as a person
// would: sign in (first with a wrong password), read the cluster view, the
// Activity Center, add a Helpdesk user through the form, read the settings,
// and look at the users page as that Helpdesk user. It saves a full-page
// screenshot of every page in the test's artifact directory
// (`make test` puts them under bin/test-artifacts).
func TestBrowserConsole(t *testing.T) {
	allocCtx := newChromium(t, 2*time.Minute)
	app := testapp.Start(t)

	admin, cancelAdmin := chromedp.NewContext(allocCtx)
	defer cancelAdmin()
	b := &browser{t: t, ctx: admin, app: app}
	b.watchConsole()

	// Signed out, the console sends the browser to the sign-in page.
	b.do("open the console", chromedp.Navigate(app.URL))
	b.do("wait for the sign-in form", chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="username"]`)))
	b.wantPath("/login")

	// A wrong password: the page says so, keeps the user name, and the
	// password field is empty and ready for a second try.
	b.do("type a wrong password",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "not-the-password"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("login-error")),
	)
	if msg := b.text(chromedp.CSS("#login-error")); !strings.Contains(strings.ToLower(msg), "wrong user name or password") {
		t.Errorf("login error = %q, want it to say %q", msg, "wrong user name or password")
	}
	if v := b.value(chromedp.CSS(`input[name="username"]`)); v != "admin" {
		t.Errorf("after a failed sign-in the user name field holds %q, want %q", v, "admin")
	}
	if v := b.value(chromedp.CSS(`input[name="password"]`)); v != "" {
		t.Errorf("after a failed sign-in the password field holds %q, want it empty", v)
	}
	if focused := b.eval(`document.activeElement ? (document.activeElement.name || document.activeElement.tagName) : ""`); focused != "password" {
		t.Errorf("after a failed sign-in the focus is on %q, want the password field", focused)
	}
	b.screenshot("01-login-wrong-password.png")

	// The right password: the cluster view.
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), testapp.AdminPassword),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("members")),
	)
	b.wantPath("/")
	row := `#members tr[data-member="test-appliance"]`
	b.do("wait for this appliance in the members table", chromedp.WaitVisible(chromedp.CSS(row)))
	if role := b.text(chromedp.CSS(row + ` .role`)); role != "Primary" {
		t.Errorf("role of test-appliance = %q, want Primary", role)
	}
	if state := b.text(chromedp.CSS(row + ` .state`)); state != "Online" {
		t.Errorf("state of test-appliance = %q, want Online", state)
	}
	b.do("wait for the cluster diagram", chromedp.WaitVisible(chromedp.CSS(`svg.diagram`)))
	nodes := b.eval(`Array.from(document.querySelectorAll("svg.diagram .node")).map(n => n.textContent.replace(/\s+/g, " ").trim()).join("|")`)
	if strings.Count(nodes, "|") != 0 || !strings.Contains(nodes, "test-appliance") || !strings.Contains(nodes, "Primary") || !strings.Contains(nodes, "Online") {
		t.Errorf("diagram nodes = %q, want one node for test-appliance, Primary, Online", nodes)
	}
	// A screen reader gets the picture in words: its accessible name and
	// description name the member and its state.
	alt := b.eval(`(() => {
		const svg = document.querySelector("svg.diagram");
		if (svg.getAttribute("role") !== "img") return "";
		const ids = (svg.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
		return svg.getAttribute("aria-label") || ids.map(id => (document.getElementById(id) || {}).textContent || "").join(" ");
	})()`)
	if !strings.Contains(alt, "test-appliance") || !strings.Contains(alt, "Online") {
		t.Errorf("the cluster diagram's text for screen readers is %q, want it to name test-appliance and its state", alt)
	}
	b.screenshot("02-cluster.png")

	// The Activity Center shows the failed and the good sign-in.
	b.do("open Activity",
		chromedp.Click(chromedp.CSS(`nav.main a[href="/activity"]`)),
		chromedp.WaitVisible(chromedp.ID("events")),
	)
	b.wantPath("/activity")
	events := b.text(chromedp.CSS("#events"))
	for _, want := range []string{"UserLoginFailed", "UserLoggedIn"} {
		if !strings.Contains(events, want) {
			t.Errorf("Activity Center does not show %s:\n%s", want, events)
		}
	}
	b.screenshot("03-activity.png")

	// Users: add a Helpdesk user through the form.
	const helpdeskName, helpdeskPassword = "night-helpdesk", "helpdesk-password-3am"
	b.do("open Users",
		chromedp.Click(chromedp.CSS(`nav.main a[href="/users"]`)),
		chromedp.WaitVisible(chromedp.ID("add-user")),
	)
	b.wantPath("/users")
	b.do("add a Helpdesk user",
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name="username"]`), helpdeskName),
		chromedp.SetValue(chromedp.CSS(`#add-user select[name="role"]`), "Helpdesk"),
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name="password"]`), helpdeskPassword),
		chromedp.Click(chromedp.CSS(`#add-user button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="`+helpdeskName+`"]`)),
	)
	if role := b.text(chromedp.CSS(`#users tr[data-user="` + helpdeskName + `"] .role`)); role != "Helpdesk" {
		t.Errorf("role of %s = %q, want Helpdesk", helpdeskName, role)
	}
	if flash := b.text(chromedp.CSS(`main .flash`)); !strings.Contains(flash, "added") {
		t.Errorf("after adding a user the page says %q, want it to say the user was added", flash)
	}
	b.screenshot("04-users.png")

	// The same name again: the form says which field is wrong and why,
	// next to the field, and keeps what was typed.
	b.do("add the same user again",
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name="username"]`), helpdeskName),
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name="password"]`), helpdeskPassword),
		chromedp.Click(chromedp.CSS(`#add-user button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#add-user .field-error`)),
	)
	if msg := b.text(chromedp.CSS(`#add-user .field-error`)); !strings.Contains(msg, "exists already") {
		t.Errorf("the error next to the field says %q, want it to say the user exists already", msg)
	}
	if field := b.eval(`document.querySelector('#add-user [aria-invalid="true"]')?.name || ""`); field != "username" {
		t.Errorf("the field marked invalid is %q, want username", field)
	}
	if v := b.value(chromedp.CSS(`#add-user input[name="username"]`)); v != helpdeskName {
		t.Errorf("after the error the user name field holds %q, want %q", v, helpdeskName)
	}
	b.screenshot("05-users-error.png")

	// Settings.
	b.do("open Settings",
		chromedp.Click(chromedp.CSS(`nav.main a[href="/settings"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.settings input[name="clusterName"]`)),
	)
	b.wantPath("/settings")
	if name := b.value(chromedp.CSS(`form.settings input[name="clusterName"]`)); name == "" {
		t.Error("the cluster name field is empty")
	}
	b.screenshot("06-settings.png")

	// The cluster view in a narrow window (a phone at 3 a.m.).
	b.do("open the cluster view in a narrow window",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(app.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("members")),
	)
	if overflow := b.eval(`String(document.documentElement.scrollWidth > window.innerWidth + 1)`); overflow != "false" {
		t.Errorf("in a 390 px wide window the page scrolls sideways (scrollWidth %s)", b.eval(`String(document.documentElement.scrollWidth)`))
	}
	b.screenshot("07-cluster-narrow.png")
	b.do("restore the window", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
		return err
	}))

	// The cluster view with the system's dark colour scheme (the night shift).
	b.do("open the cluster view in dark mode",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
			})
			return err
		}),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("members")),
	)
	b.screenshot("08-cluster-dark.png")
	b.do("back to the light scheme", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
		return err
	}))

	// The Helpdesk user, in a browser context of its own (no shared
	// cookies), sees the users but no form that changes them.
	helpdesk, cancelHelpdesk := chromedp.NewContext(admin, chromedp.WithNewBrowserContext())
	defer cancelHelpdesk()
	h := &browser{t: t, ctx: helpdesk, app: app}
	h.watchConsole()
	h.do("open Users as a stranger", chromedp.Navigate(app.URL+"/users"))
	h.do("wait for the sign-in form", chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="username"]`)))
	h.wantPath("/login")
	h.do("sign in as Helpdesk",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), helpdeskName),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), helpdeskPassword),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("users")),
	)
	h.wantPath("/users") // back where the sign-in started
	if n := h.eval(`String(document.querySelectorAll("main form, main select, main button, main input").length)`); n != "0" {
		t.Errorf("a Helpdesk user sees %s form controls on the users page, want none", n)
	}
	if n := h.eval(`String(document.querySelectorAll("#add-user, form[action^='/users']").length)`); n != "0" {
		t.Errorf("a Helpdesk user sees %s forms that change users, want none", n)
	}
	if who := h.text(chromedp.CSS(`header .who`)); !strings.Contains(who, helpdeskName) || !strings.Contains(who, "Helpdesk") {
		t.Errorf("the header says %q, want the Helpdesk user's name and role", who)
	}
	h.screenshot("09-users-helpdesk.png")

	b.checkConsole()
	h.checkConsole()
}

// newChromium starts a headless Chromium for the test (stopped when the
// test ends, or after timeout) and returns its allocator context: each
// chromedp.NewContext of it is a tab.
func newChromium(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	chromium := chromiumPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("ignore-certificate-errors", true), // the appliance's certificate is self-signed
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	t.Cleanup(cancelAlloc)
	return allocCtx
}

// chromiumPath finds Debian's Chromium. Without it the test is skipped on a
// developer's machine, and fails in CI, which must run it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "Chromium is not installed, so the browser test cannot run: install it with 'apt-get install chromium' (make test does)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one browser tab (and its cookies) in the test.
type browser struct {
	t   *testing.T
	ctx context.Context
	app *testapp.App

	mu      sync.Mutex
	console []string // errors the page wrote to the console
	failed  int      // screenshots taken of failures
}

// do runs actions, for up to a minute; when they fail it saves a
// screenshot of the page as it was and ends the test.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.failed++
		name := fmt.Sprintf("failed-%d.png", b.failed)
		b.screenshot(name)
		b.t.Fatalf("%s: %v (page: %s; screenshot %s)", what, err, b.location(), name)
	}
}

func (b *browser) location() string {
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		return "unknown: " + err.Error()
	}
	return loc
}

// wantPath checks the path of the page the browser shows.
func (b *browser) wantPath(path string) {
	b.t.Helper()
	b.wantAt(b.app, path)
}

// wantAt checks that the browser shows path on app.
func (b *browser) wantAt(app *testapp.App, path string) {
	b.t.Helper()
	loc := b.location()
	rest, ok := strings.CutPrefix(loc, app.URL)
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if !ok || rest != path {
		b.t.Fatalf("the browser shows %s, want %s%s", loc, app.URL, path)
	}
}

func (b *browser) text(sel chromedp.CSS) string {
	b.t.Helper()
	return b.get(string(sel), chromedp.Text(sel))
}

func (b *browser) value(sel chromedp.CSS) string {
	b.t.Helper()
	return b.get(string(sel), chromedp.Value(sel))
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	return b.get(js, chromedp.Evaluate[string](js))
}

func (b *browser) get(what string, a chromedp.Action[string]) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatalf("read %s: %v (page: %s)", what, err, b.location())
	}
	return strings.TrimSpace(s)
}

// screenshot saves the whole page as a PNG in the test's artifact directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("save screenshot: %v", err)
	}
	b.t.Logf("screenshot: %s", path)
}

// watchConsole records what the pages write to the console as errors: a
// Content-Security-Policy violation (an inline style or script), a script
// that throws, a static file that is missing.
func (b *browser) watchConsole() {
	b.t.Helper()
	messages := chromedp.Console(b.ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
				continue
			}
			// The failed sign-in (401), the refused form (422) and the
			// member refilled after Reset Cluster (503, reloading by
			// itself) answer with these statuses on purpose.
			if m.Source == "network" && (strings.Contains(m.Text, "status of 401") || strings.Contains(m.Text, "status of 422") ||
				strings.Contains(m.Text, "status of 503")) {
				continue
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s (%s)", m.Text, m.URL))
			b.mu.Unlock()
		}
	}()
}

func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.console) > 0 {
		b.t.Errorf("the pages wrote errors to the browser console:\n%s", strings.Join(b.console, "\n"))
	}
}
