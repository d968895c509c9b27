package web_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testnet"
	"conclave/keyring"
	"conclave/store"
	"conclave/web"
	"conclave/workflow"

	"github.com/google/uuid"
)

// secretMark starts every secret of these tests. A hyphen is not in the
// base64 alphabet of sealed values, so finding it anywhere means a secret
// leaked in clear.
const secretMark = "PLAIN-SECRET-"

const oidcSecret = secretMark + "oidc-client"

// keyRing is GET /api/v1/keys.
type keyRing struct {
	ActiveKeyID string
	Keys        []struct {
		ID      string
		Active  bool
		Secrets int
		Missing bool
	}
	ClearSecrets        int
	RotationOperationID string
}

// syncBuffer collects an appliance's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLog sends the appliance's log, at every level, to buf.
func captureLog(buf *syncBuffer) testapp.Option {
	return func(c *web.Config) {
		c.Log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// importAccounts imports n accounts on one asset, each with the password
// secretMark + "account-<i>".
func importAccounts(t *testing.T, app *testapp.App, token string, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("asset,address,platform,username,password\n")
	for i := range n {
		fmt.Fprintf(&b, "vault-1,10.0.0.9,Linux,user%05d,%saccount-%d\n", i, secretMark, i)
	}
	resp, body := secSend(t, app, nil, secRequest{method: http.MethodPost, path: "/api/v1/import", raw: b.String(), contentType: "text/csv", token: token})
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("import %d accounts: status %d: %s", n, resp.StatusCode, secShort(body))
	}
}

// saveOIDCSecret sets up an identity provider with oidcSecret through the
// settings form.
func saveOIDCSecret(t *testing.T, app *testapp.App) {
	t.Helper()
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	resp, body := secSend(t, app, c, secRequest{method: http.MethodPost, path: "/settings", form: url.Values{
		"clusterName": {"Conclave"}, "oidcIssuer": {"https://idp.example.com"}, "oidcClientId": {"conclave"},
		"oidcClientSecret": {oidcSecret}, "oidcRolesClaim": {"groups"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save the OIDC settings: status %d: %s", resp.StatusCode, secShort(body))
	}
}

// checkAllSealedUnder checks that every secret of app is sealed under
// keyID, opens with the key ring, and is what was stored.
func checkAllSealedUnder(t *testing.T, app *testapp.App, keyID string, accounts int, changed map[string]bool) {
	t.Helper()
	ctx := t.Context()
	keys, err := app.Node.DataKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys.Current != keyID || len(keys.Keys) != 1 {
		t.Fatalf("key ring after the rotation: active %s, %d keys; want only %s", keys.Current, len(keys.Keys), keyID)
	}
	all, err := app.Store.AccountSecretsNotUnder(ctx, "", "", accounts+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != accounts {
		t.Fatalf("%d accounts, want %d", len(all), accounts)
	}
	accts, err := app.Store.Accounts(ctx, accountsOf())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, a := range accts {
		names[a.ID] = a.Username
	}
	for _, s := range all {
		if !keyring.SealedUnder(s.Sealed, keyID) {
			t.Fatalf("account %s is sealed under %s, want %s", s.ID, keyring.KeyID(s.Sealed), keyID)
		}
		plain, err := keys.Open(s.Sealed, "account:"+s.ID)
		if err != nil {
			t.Fatalf("account %s does not open: %v", s.ID, err)
		}
		var i int
		fmt.Sscanf(names[s.ID], "user%05d", &i)
		if want := fmt.Sprintf("%saccount-%d", secretMark, i); string(plain) != want && !changed[s.ID] {
			t.Fatalf("account %s (%s) opens to another password", s.ID, names[s.ID])
		}
	}
	settings, err := cluster.LoadSettings(ctx, app.Store)
	if err != nil {
		t.Fatal(err)
	}
	if !keyring.SealedUnder(settings.OIDC.SealedClientSecret, keyID) || settings.OIDC.LegacyClientSecret != "" {
		t.Fatalf("the OIDC client secret is not sealed under %s: %q", keyID, keyring.KeyID(settings.OIDC.SealedClientSecret))
	}
	o, err := app.Node.OpenClientSecret(ctx, settings.OIDC)
	if err != nil || o.ClientSecret != oidcSecret {
		t.Fatalf("the OIDC client secret does not open to what was saved: %v", err)
	}
}

// Rotate Key on one appliance with 1,000 accounts and the OIDC client
// secret: check-outs, releases and a check-in that changes the password
// go on during the rotation; afterwards every secret is sealed under the
// new key and opens, the old key is gone, the events name the keys only,
// and no secret is anywhere in clear: not in the events, the log, error
// messages, the settings as stored, or a backup.
func TestKeyRotationResealsEverySecret(t *testing.T) {
	var logs syncBuffer
	app := testapp.Start(t, captureLog(&logs))
	admin := app.AdminToken(t)
	const accounts = 1000
	importAccounts(t, app, admin, accounts)
	saveOIDCSecret(t, app)
	ctx := t.Context()

	raw, err := app.Store.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(raw[cluster.KeyOIDC]); strings.Contains(s, secretMark) || !strings.Contains(s, "clientSecretSealed") {
		t.Fatalf("the OIDC settings as stored: %s; want the client secret sealed", s)
	}
	var before keyRing
	if status := app.JSON(t, admin, http.MethodGet, "/api/v1/keys", nil, &before); status != http.StatusOK || len(before.Keys) != 1 || before.Keys[0].Secrets != accounts+1 {
		t.Fatalf("keys before the rotation: status %d, %+v", status, before)
	}

	// A requester holds one account, whose password changes at check-in.
	app.CreateUser(t, "rita", secPassword, "Requester")
	rita := app.Token(t, "rita", secPassword)
	accts, err := app.Store.Accounts(ctx, accountsOf())
	if err != nil || len(accts) < 2 {
		t.Fatalf("accounts: %d, %v", len(accts), err)
	}
	held, other := accts[0].ID, accts[1].ID
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/policies", map[string]any{"name": "Vault", "accountIds": []string{held, other},
		"requesters": []string{"rita"}, "approvers": []string{"admin"}, "approvalRequired": false, "durationMinutes": 60, "changeAfterCheckin": true}, nil); status != http.StatusCreated {
		t.Fatalf("create policy: status %d", status)
	}
	checkOut := func(accountID string) accessRequest {
		var req accessRequest
		if status := app.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": accountID, "reason": "INC-7"}, &req); status != http.StatusCreated || req.State != "Available" {
			t.Fatalf("check out: status %d, %+v", status, req)
		}
		return req
	}
	first := checkOut(held)

	// An import staged, not committed, with its password sealed under the
	// old key: the rotation re-seals it too, and it commits afterwards.
	oldKeys, err := app.Node.DataKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stagedID, importID := uuid.NewString(), uuid.NewString()
	stagedSealed, err := oldKeys.Seal([]byte(secretMark+"account-99999"), "account:"+stagedID)
	if err != nil {
		t.Fatal(err)
	}
	err = app.Node.ProposeData(ctx, workflow.CmdImportBatch, "admin", map[string]any{"importId": importID, "rows": []map[string]any{
		{"l": 2, "a": accts[0].AssetID, "an": "vault-1", "ad": "10.0.0.9", "p": "Linux", "c": stagedID, "u": "user99999", "s": stagedSealed}}}, nil)
	if err != nil {
		t.Fatalf("stage an import: %v", err)
	}

	// Wrong phrase: refused, nothing starts.
	var refusal struct{ Error, Field string }
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/keys/rotate", map[string]string{"confirm": "rotate"}, &refusal); status != http.StatusUnprocessableEntity || refusal.Field != "confirm" {
		t.Fatalf("rotate with a wrong phrase: status %d, %+v", status, refusal)
	}
	var started struct{ OperationID string }
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/keys/rotate", map[string]string{"confirm": "Rotate Key"}, &started); status != http.StatusAccepted || started.OperationID == "" {
		t.Fatalf("rotate: status %d, %+v", status, started)
	}
	// During the rotation: the held password is released, the account
	// checked in (a new password, sealed with whichever key is current),
	// and another account checked out and released.
	var pw struct{ Password string }
	if status := app.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+first.ID+"/password", nil, &pw); status != http.StatusOK || pw.Password != secretMark+"account-0" {
		t.Fatalf("release during the rotation: status %d", status)
	}
	if status := app.JSON(t, rita, http.MethodPost, "/api/v1/access-requests/"+first.ID+"/checkin", nil, nil); status != http.StatusOK {
		t.Fatalf("check in during the rotation: status %d", status)
	}
	second := checkOut(other)
	if status := app.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+second.ID+"/password", nil, &pw); status != http.StatusOK || pw.Password != secretMark+"account-1" {
		t.Fatalf("release of another account during the rotation: status %d", status)
	}
	var during keyRing
	app.JSON(t, admin, http.MethodGet, "/api/v1/keys", nil, &during)

	op := app.WaitOperation(t, admin, started.OperationID, 2*time.Minute)
	if op.State != "Succeeded" || op.Kind != cluster.KindKeyRotation || len(op.Steps) != 3 {
		t.Fatalf("rotation: %s (%s), kind %s, steps %+v", op.State, op.Error, op.Kind, op.Steps)
	}
	if err := app.Node.ProposeData(ctx, workflow.CmdImportCommit, "admin", workflow.ImportCommit{ImportID: importID, Rows: 1}, nil); err != nil {
		t.Fatalf("commit the staged import after the rotation: %v", err)
	}
	// A password sealed under the retired key (by a member whose key ring
	// was behind) is refused as it is applied: it could never be opened.
	late, err := oldKeys.Seal([]byte(secretMark+"late"), "account:"+other)
	if err != nil {
		t.Fatal(err)
	}
	err = app.Node.ProposeData(ctx, workflow.CmdPutAccount, "admin", workflow.PutAccount{AccountID: other, AssetID: accts[1].AssetID, Username: accts[1].Username, Secret: late}, nil)
	var rej *store.Rejection
	if !errors.As(err, &rej) || strings.Contains(err.Error(), secretMark) {
		t.Fatalf("a password sealed under the retired key: %v, want a rejection", err)
	}
	var after keyRing
	app.JSON(t, admin, http.MethodGet, "/api/v1/keys", nil, &after)
	if after.ActiveKeyID == before.ActiveKeyID || len(after.Keys) != 1 || after.Keys[0].Secrets != accounts+2 || after.RotationOperationID != "" {
		t.Fatalf("keys after the rotation: %+v (before: %+v)", after, before)
	}
	checkAllSealedUnder(t, app, after.ActiveKeyID, accounts+1, map[string]bool{held: true})
	// The password changed at check-in opens, and it is not the old one.
	if status := app.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+second.ID+"/password", nil, &pw); status != http.StatusOK || pw.Password != secretMark+"account-1" {
		t.Fatalf("release after the rotation: status %d", status)
	}

	evs := eventsOfType(t, app, admin, "DataKeyRotationStarted")
	if len(evs) != 1 || evs[0].Details["newKeyId"] != after.ActiveKeyID || evs[0].Details["previousKeyId"] != before.ActiveKeyID {
		t.Fatalf("DataKeyRotationStarted events: %+v", evs)
	}
	if evs := eventsOfType(t, app, admin, "DataKeyRotationCompleted"); len(evs) != 1 || evs[0].Details["result"] != "Succeeded" {
		t.Fatalf("DataKeyRotationCompleted events: %+v", evs)
	}

	// Error messages that carry a password in their request do not show it.
	app.JSON(t, admin, http.MethodPost, "/api/v1/accounts", map[string]string{"assetId": "no-such-asset", "username": "x", "password": secretMark + "refused"}, &refusal)
	if refusal.Error == "" || strings.Contains(refusal.Error, secretMark) {
		t.Fatalf("refused account: %+v", refusal)
	}
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	resp, page := secSend(t, app, c, secRequest{method: http.MethodPost, path: "/settings", form: url.Values{
		"clusterName": {"Conclave"}, "oidcIssuer": {"not a url"}, "oidcClientId": {"conclave"}, "oidcClientSecret": {secretMark + "typed"}, "oidcRolesClaim": {"groups"}}})
	if resp.StatusCode != http.StatusUnprocessableEntity || strings.Contains(page, secretMark) {
		t.Fatalf("a refused settings form: status %d, or it shows the typed secret", resp.StatusCode)
	}
	resp, page = secSend(t, app, c, secRequest{method: http.MethodGet, path: "/keys"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, after.ActiveKeyID) || strings.Contains(page, before.ActiveKeyID) {
		t.Fatalf("the Keys page: status %d:\n%s", resp.StatusCode, secShort(page))
	}

	// A backup: its manifest, and the whole file, hold no secret in clear.
	var b struct{ Name string }
	if status := app.JSON(t, admin, http.MethodPost, "/api/v1/backups", map[string]string{"passphrase": routeBackupPass}, &b); status != http.StatusCreated {
		t.Fatalf("backup: status %d", status)
	}
	resp, file := secSend(t, app, nil, secRequest{method: http.MethodGet, path: "/api/v1/backups/" + b.Name, token: admin})
	if resp.StatusCode != http.StatusOK || strings.Contains(file, secretMark) {
		t.Fatalf("backup download: status %d, or a secret in clear in it", resp.StatusCode)
	}
	resp, list := secSend(t, app, nil, secRequest{method: http.MethodGet, path: "/api/v1/backups", token: admin})
	if resp.StatusCode != http.StatusOK || strings.Contains(list, secretMark) {
		t.Fatalf("backup list (manifests): status %d, or a secret in clear in it", resp.StatusCode)
	}

	// The events, all of them, and the operation's messages.
	resp, events := secSend(t, app, nil, secRequest{method: http.MethodGet, path: "/api/v1/events?limit=1000", token: admin})
	if resp.StatusCode != http.StatusOK || strings.Contains(events, secretMark) || !strings.Contains(events, "DataKeyRotationStarted") {
		t.Fatalf("events: status %d, a secret in clear, or no rotation:\n%s", resp.StatusCode, secShort(events))
	}
	resp, opJSON := secSend(t, app, nil, secRequest{method: http.MethodGet, path: "/api/v1/operations/" + started.OperationID, token: admin})
	if resp.StatusCode != http.StatusOK || strings.Contains(opJSON, secretMark) {
		t.Fatalf("operation: status %d, or a secret in clear in it", resp.StatusCode)
	}
	if l := logs.String(); strings.Contains(l, secretMark) || l == "" {
		i := strings.Index(l, secretMark)
		t.Fatalf("the log holds a secret in clear (or nothing was logged): …%s…", l[max(i-200, 0):min(i+50, len(l))])
	}
}

// The primary stops while a rotation re-seals secrets (its links to the
// replicas are slow, so re-sealing takes a while). The next primary
// resumes the rotation: it ends Succeeded, every secret is sealed under
// the new key and opens there, and the resumption is an event.
func TestKeyRotationResumedByTheNextPrimary(t *testing.T) {
	net := testnet.New()
	names := []string{"alpha", "beta", "gamma"}
	apps := map[string]*testapp.App{}
	for _, n := range names {
		apps[n] = testapp.Start(t, named(n), testapp.WithNetwork(net, n))
	}
	alpha := apps["alpha"]
	for _, n := range names[1:] {
		addReplica(t, alpha, apps[n])
	}
	tok := alpha.AdminToken(t)
	const accounts = 3000
	importAccounts(t, alpha, tok, accounts)
	saveOIDCSecret(t, alpha)

	for _, n := range names[1:] {
		net.Delay("alpha", n, 20*time.Millisecond)
	}
	var started struct{ OperationID string }
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/keys/rotate", map[string]string{"confirm": "Rotate Key"}, &started); status != http.StatusAccepted {
		t.Fatalf("rotate: status %d", status)
	}
	waitStep(t, alpha, tok, started.OperationID, 1, "Running")
	alpha.Stop(t)
	for _, n := range names[1:] {
		net.Delay("alpha", n, 0)
	}

	next := waitNewPrimary(t, apps["beta"], apps["gamma"])
	ntok := next.AdminToken(t)
	op := waitOperation(t, next, ntok, started.OperationID)
	if op.State != "Succeeded" {
		t.Fatalf("the resumed rotation: %s (%s), steps %+v", op.State, op.Error, op.Steps)
	}
	evs := eventsOfType(t, next, ntok, "OperationResumed")
	if len(evs) != 1 || evs[0].Details["kind"] != cluster.KindKeyRotation {
		t.Fatalf("OperationResumed events: %+v", evs)
	}
	started2 := eventsOfType(t, next, ntok, "DataKeyRotationStarted")
	if len(started2) != 1 {
		t.Fatalf("DataKeyRotationStarted events: %+v", started2)
	}
	checkAllSealedUnder(t, next, started2[0].Details["newKeyId"], accounts, nil)
	for _, n := range names[1:] {
		if apps[n] != next {
			waitSameData(t, next, apps[n])
		}
	}
}

// accountsOf lists every account of these tests.
func accountsOf() store.AccountFilter { return store.AccountFilter{Limit: 100000} }

// An OIDC client secret an older release stored in clear is sealed by the
// primary at its next election, and still opens to the same value.
func TestClearClientSecretSealedAtElection(t *testing.T) {
	app := testapp.Start(t)
	ctx := t.Context()
	legacy, _ := json.Marshal(map[string]any{"issuer": "https://idp.example.com", "clientId": "conclave", "clientSecret": oidcSecret, "rolesClaim": "groups"})
	err := app.Node.ProposeData(ctx, cluster.CmdPutSettings, "admin", cluster.PutSettings{Values: map[string]json.RawMessage{cluster.KeyOIDC: legacy}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ring keyRing
	admin := app.AdminToken(t)
	if app.JSON(t, admin, http.MethodGet, "/api/v1/keys", nil, &ring); ring.ClearSecrets != 1 {
		t.Fatalf("keys with a secret in clear: %+v", ring)
	}
	app = app.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := cluster.LoadSettings(ctx, app.Store)
		if err != nil {
			t.Fatal(err)
		}
		if s.OIDC.SealedClientSecret != "" && s.OIDC.LegacyClientSecret == "" {
			o, err := app.Node.OpenClientSecret(ctx, s.OIDC)
			if err != nil || o.ClientSecret != oidcSecret {
				t.Fatalf("the sealed client secret does not open to the one stored in clear: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client secret stored in clear is not sealed after an election")
		}
		time.Sleep(20 * time.Millisecond)
	}
	raw, err := app.Store.Settings(ctx)
	if err != nil || strings.Contains(string(raw[cluster.KeyOIDC]), secretMark) {
		t.Fatalf("the OIDC settings as stored still hold the secret in clear (%v)", err)
	}
}
