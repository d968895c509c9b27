package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"conclave/keyring"
	"conclave/store"
)

// Rotation of the cluster's data keys. A rotation is an operation on the
// primary (it holds the cluster lock, which only keeps other operations
// out: sign-in, reads, check-outs and releases go on): it adds a new key
// that seals every new secret from then on, re-seals every secret sealed
// under an older key in batches, and retires the older keys once nothing
// is sealed under them. Keys are generated and secrets re-sealed before
// proposing, so Apply only stores what the commands carry.

// Commands of the key rotation.
const (
	CmdRotateDataKey = "keyring.rotate"
	CmdResealSecrets = "keyring.reseal"
	CmdRetireDataKey = "keyring.retire"
)

// KindKeyRotation is the operation (and cluster lock) kind of a rotation.
const KindKeyRotation = "KeyRotation"

// KeyRotationSteps are the rotation's steps, in order.
var KeyRotationSteps = []string{"Add a new data key", "Re-seal secrets under the new key", "Retire the old keys"}

// resealBatch is how many secrets one re-sealing command carries: small
// enough to keep a command well under a raft entry's comfortable size.
const resealBatch = 200

// oidcSecretPurpose binds the sealed OIDC client secret to its setting.
const oidcSecretPurpose = "setting:oidc.clientSecret"

// RotateDataKey is the data of CmdRotateDataKey: a new key that becomes
// the one sealing new secrets.
type RotateDataKey struct {
	KeyID string `json:"keyId"`
	Key   []byte `json:"key"`
}

// Reseal is one secret re-sealed: its value as read, and the new one.
type Reseal struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
}

// ResealSecrets is the data of CmdResealSecrets: secrets re-sealed under
// KeyID. A secret that changed since it was read keeps its new value.
type ResealSecrets struct {
	KeyID    string   `json:"keyId"`
	Accounts []Reseal `json:"accounts,omitempty"`
	// Staged re-seals rows of imports not committed yet.
	Staged []ResealStaged `json:"staged,omitempty"`
	// OIDC re-seals the OIDC client secret; From is empty when it was
	// stored in clear by an older release (the clear value is never in a
	// command).
	OIDC *Reseal `json:"oidc,omitempty"`
}

// ResealStaged is one staged import row re-sealed.
type ResealStaged struct {
	ImportID string `json:"importId"`
	Line     int    `json:"line"`
	From     string `json:"from"`
	To       string `json:"to"`
}

// RetireDataKey is the data of CmdRetireDataKey.
type RetireDataKey struct {
	KeyID string `json:"keyId"`
}

func applyKeyCommand(ctx context.Context, tx *store.Tx, cmd Command) error {
	switch cmd.Type {
	case CmdRotateDataKey:
		d, err := decode[RotateDataKey](cmd)
		if err != nil {
			return err
		}
		return applyRotateDataKey(ctx, tx, d, cmd.At)
	case CmdResealSecrets:
		d, err := decode[ResealSecrets](cmd)
		if err != nil {
			return err
		}
		return applyResealSecrets(ctx, tx, d, cmd)
	case CmdRetireDataKey:
		d, err := decode[RetireDataKey](cmd)
		if err != nil {
			return err
		}
		return applyRetireDataKey(ctx, tx, d, cmd.At)
	}
	return store.Reject("", "unknown key command %q", cmd.Type)
}

func txDataKeys(ctx context.Context, tx *store.Tx) (keyring.Keys, error) {
	raw, err := tx.Key(ctx, keyring.KeyName)
	if errors.Is(err, store.ErrNotFound) {
		return keyring.Keys{}, store.Reject("", "the cluster has no data keys yet")
	}
	if err != nil {
		return keyring.Keys{}, err
	}
	return keyring.Parse(raw)
}

func applyRotateDataKey(ctx context.Context, tx *store.Tx, d RotateDataKey, at time.Time) error {
	keys, err := txDataKeys(ctx, tx)
	if err != nil {
		return err
	}
	if _, ok := keys.Keys[d.KeyID]; ok {
		return store.Reject("", "data key %s exists already", d.KeyID)
	}
	// Keys of a release that did not record when a key was added: the
	// ring's row was last written when they were.
	if keys.Added == nil {
		keys.Added = map[string]time.Time{}
	}
	for id := range keys.Keys {
		if _, ok := keys.Added[id]; !ok {
			if keys.Added[id], err = tx.KeyCreatedAt(ctx, keyring.KeyName); err != nil {
				return err
			}
		}
	}
	keys.Keys[d.KeyID], keys.Current, keys.Added[d.KeyID] = d.Key, d.KeyID, at
	if err := keys.Valid(); err != nil {
		return store.Reject("key", "%v", err)
	}
	return putDataKeys(ctx, tx, keys, at)
}

func applyResealSecrets(ctx context.Context, tx *store.Tx, d ResealSecrets, cmd Command) error {
	keys, err := txDataKeys(ctx, tx)
	if err != nil {
		return err
	}
	if _, ok := keys.Keys[d.KeyID]; !ok {
		return store.Reject("", "data key %s is not in the key ring", d.KeyID)
	}
	for _, a := range d.Accounts {
		if !keyring.SealedUnder(a.To, d.KeyID) {
			return store.Reject("", "account %s is not re-sealed under %s", a.ID, d.KeyID)
		}
		if err := tx.ResealAccount(ctx, a.ID, a.From, a.To); err != nil {
			return err
		}
	}
	for _, s := range d.Staged {
		if !keyring.SealedUnder(s.To, d.KeyID) {
			return store.Reject("", "import row %s/%d is not re-sealed under %s", s.ImportID, s.Line, d.KeyID)
		}
		if err := tx.ResealStaged(ctx, s.ImportID, s.Line, s.From, s.To); err != nil {
			return err
		}
	}
	if d.OIDC == nil {
		return nil
	}
	if !keyring.SealedUnder(d.OIDC.To, d.KeyID) {
		return store.Reject("", "the OIDC client secret is not re-sealed under %s", d.KeyID)
	}
	raw, err := tx.Setting(ctx, KeyOIDC)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var o OIDCSettings
	if err := json.Unmarshal(raw, &o); err != nil {
		return fmt.Errorf("oidc settings: %w", err)
	}
	switch {
	case d.OIDC.From == "" && o.LegacyClientSecret != "" && o.SealedClientSecret == "":
	case d.OIDC.From != "" && o.SealedClientSecret == d.OIDC.From:
	default:
		return nil // changed meanwhile: the new value is sealed with the current key
	}
	o.SealedClientSecret, o.LegacyClientSecret = d.OIDC.To, ""
	out, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("oidc settings: %w", err)
	}
	return tx.PutSetting(ctx, KeyOIDC, out, cmd.At, cmd.Actor)
}

func applyRetireDataKey(ctx context.Context, tx *store.Tx, d RetireDataKey, at time.Time) error {
	keys, err := txDataKeys(ctx, tx)
	if err != nil {
		return err
	}
	if _, ok := keys.Keys[d.KeyID]; !ok {
		return nil // retired already
	}
	if keys.Current == d.KeyID {
		return store.Reject("", "data key %s seals new secrets; it cannot be retired", d.KeyID)
	}
	n, err := tx.SecretsSealedUnder(ctx, d.KeyID)
	if err != nil {
		return err
	}
	if raw, err := tx.Setting(ctx, KeyOIDC); err == nil {
		var o OIDCSettings
		if json.Unmarshal(raw, &o) == nil && keyring.SealedUnder(o.SealedClientSecret, d.KeyID) {
			n++
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if n > 0 {
		return store.Reject("", "%d secrets are still sealed under data key %s", n, d.KeyID)
	}
	delete(keys.Keys, d.KeyID)
	delete(keys.Added, d.KeyID)
	return putDataKeys(ctx, tx, keys, at)
}

// CheckSealedKey refuses a secret sealed under a key the ring no longer
// has: sealed on a member whose copy of the ring was behind, or just
// before a rotation retired the key, it could never be opened. Commands
// that store a sealed secret check it as they are applied.
func CheckSealedKey(ctx context.Context, tx *store.Tx, sealed string) error {
	if sealed == "" {
		return nil
	}
	keys, err := txDataKeys(ctx, tx)
	if err != nil {
		return err
	}
	if _, ok := keys.Keys[keyring.KeyID(sealed)]; !ok {
		return store.Reject("", "the secret was sealed with a data key the cluster has retired (a key rotation ran meanwhile); try again")
	}
	return nil
}

// SealClientSecret seals an OIDC client secret for the settings.
func SealClientSecret(keys keyring.Keys, secret string) (string, error) {
	return keys.Seal([]byte(secret), oidcSecretPurpose)
}

// OpenClientSecret returns o with its client secret in clear, for the
// OIDC client: the one from the command line, else the sealed one opened
// with the cluster's data keys.
func (n *Node) OpenClientSecret(ctx context.Context, o OIDCSettings) (OIDCSettings, error) {
	switch {
	case o.ClientSecret != "":
		return o, nil
	case o.SealedClientSecret != "":
		keys, err := n.DataKeys(ctx)
		if err != nil {
			return o, err
		}
		plain, err := keys.Open(o.SealedClientSecret, oidcSecretPurpose)
		if err != nil {
			return o, fmt.Errorf("open the OIDC client secret: %w", err)
		}
		o.ClientSecret = string(plain)
	case o.LegacyClientSecret != "":
		o.ClientSecret = o.LegacyClientSecret
	}
	return o, nil
}

// sealLegacySecrets seals an OIDC client secret an older release stored
// in clear. The primary runs it at each election.
func (n *Node) sealLegacySecrets(ctx context.Context) error {
	s, err := LoadSettings(ctx, n.store)
	if err != nil || s.OIDC.LegacyClientSecret == "" || s.OIDC.SealedClientSecret != "" {
		return err
	}
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return err
	}
	sealed, err := SealClientSecret(keys, s.OIDC.LegacyClientSecret)
	if err != nil {
		return err
	}
	return n.ProposeData(ctx, CmdResealSecrets, "system", ResealSecrets{KeyID: keys.Current, OIDC: &Reseal{To: sealed}}, nil)
}

// KeyStatus is one data key of the ring, with how many secrets it seals.
type KeyStatus struct {
	ID      string    `json:"id"`
	Active  bool      `json:"active"`
	AddedAt time.Time `json:"addedAt,omitzero"`
	// Secrets counts the secrets sealed under the key: account passwords
	// and the OIDC client secret.
	Secrets int `json:"secrets"`
	// Missing: secrets name this key but the ring does not have it.
	Missing bool `json:"missing,omitempty"`
}

// KeyRing is what the console shows of the key ring; never a key's bytes.
type KeyRing struct {
	ActiveKeyID string      `json:"activeKeyId"`
	Keys        []KeyStatus `json:"keys"`
	// ClearSecrets counts secrets an older release stored in clear.
	ClearSecrets int `json:"clearSecrets"`
	// RotationID is the rotation in progress, if one is.
	RotationID string `json:"rotationOperationId,omitempty"`
}

// KeyRingStatus tells which keys the ring holds and what each seals.
func (n *Node) KeyRingStatus(ctx context.Context) (KeyRing, error) {
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return KeyRing{}, err
	}
	counts, err := n.store.AccountSecretsByKey(ctx)
	if err != nil {
		return KeyRing{}, err
	}
	out := KeyRing{ActiveKeyID: keys.Current}
	if s, err := LoadSettings(ctx, n.store); err != nil {
		return KeyRing{}, err
	} else if s.OIDC.SealedClientSecret != "" {
		counts[keyring.KeyID(s.OIDC.SealedClientSecret)]++
	} else if s.OIDC.LegacyClientSecret != "" {
		out.ClearSecrets++
	}
	for id := range keys.Keys {
		out.Keys = append(out.Keys, KeyStatus{ID: id, Active: id == keys.Current, AddedAt: keys.Added[id], Secrets: counts[id]})
	}
	for id, c := range counts {
		if _, ok := keys.Keys[id]; !ok {
			out.Keys = append(out.Keys, KeyStatus{ID: id, Secrets: c, Missing: true})
		}
	}
	sort.Slice(out.Keys, func(i, j int) bool {
		a, b := out.Keys[i], out.Keys[j]
		if a.Active != b.Active {
			return a.Active
		}
		if !a.AddedAt.Equal(b.AddedAt) {
			return a.AddedAt.After(b.AddedAt)
		}
		return a.ID < b.ID
	})
	if lock, err := n.store.Lock(ctx); err == nil && lock.Kind == KindKeyRotation {
		out.RotationID = lock.OperationID
	}
	return out, nil
}

// RotateDataKeys starts a rotation of the data keys on the primary (a
// replica asks the primary) and returns the operation's ID.
func (n *Node) RotateDataKeys(ctx context.Context, actor string) (string, error) {
	if !n.IsLeader() {
		return n.peers.startOnLeader(ctx, n, "rotate-keys", actor, "")
	}
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return "", err
	}
	newID, _, err := keyring.NewKey()
	if err != nil {
		return "", err
	}
	spec := n.keyRotationSpec(newID)
	spec.Details = map[string]string{"newKeyId": newID, "previousKeyId": keys.Current}
	return n.runner.Start(ctx, actor, spec)
}

// settleKeyRotation resumes a rotation whose primary stopped: every step
// can run again (the new key is added once, by its ID; re-sealing skips
// what is sealed under the new key; retiring checks again).
func (n *Node) settleKeyRotation(ctx context.Context, op store.Operation) Settlement {
	d := n.startDetails(ctx, op, "DataKeyRotationStarted")
	if d["newKeyId"] == "" {
		return Settlement{}
	}
	spec := n.keyRotationSpec(d["newKeyId"])
	spec.Details = d
	return Settlement{Resume: &spec}
}

func (n *Node) keyRotationSpec(newID string) OperationSpec {
	run := []StepFunc{
		func(ctx context.Context, p *Progress) error { return n.addDataKey(ctx, p, newID) },
		func(ctx context.Context, p *Progress) error { return n.resealAll(ctx, p, newID) },
		func(ctx context.Context, p *Progress) error { return n.retireOldKeys(ctx, p, newID) },
	}
	spec := OperationSpec{Kind: KindKeyRotation, StartEvent: "DataKeyRotationStarted", EndEvent: "DataKeyRotationCompleted"}
	for i, name := range KeyRotationSteps {
		spec.Steps = append(spec.Steps, StepSpec{Name: name, Run: run[i]})
	}
	return spec
}

// addDataKey adds the key newID, generated here, unless a previous run
// of the rotation added it.
func (n *Node) addDataKey(ctx context.Context, p *Progress, newID string) error {
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return err
	}
	if _, ok := keys.Keys[newID]; !ok {
		_, key, err := keyring.NewKey()
		if err != nil {
			return err
		}
		if err := n.ProposeData(ctx, CmdRotateDataKey, p.actor, RotateDataKey{KeyID: newID, Key: key}, nil); err != nil {
			return fmt.Errorf("add data key %s: %w", newID, err)
		}
	}
	return p.Report(ctx, 100, "key "+newID+" seals new secrets")
}

// resealAll re-seals every secret not sealed under newID, in batches of
// resealBatch, each batch one command. Secrets sealed under an old key
// meanwhile (a password sealed just before the new key was added and
// proposed after) are caught by walking again until none is left.
func (n *Node) resealAll(ctx context.Context, p *Progress, newID string) error {
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return err
	}
	if keys.Current != newID {
		return fmt.Errorf("the key ring's active key is %s, not %s: another rotation happened", keys.Current, newID)
	}
	done := 0
	for pass := 0; pass < 5; pass++ {
		total, err := n.countNotUnder(ctx, newID)
		if err != nil {
			return err
		}
		if total == 0 {
			break
		}
		total += done
		after := ""
		for {
			batch, err := n.store.AccountSecretsNotUnder(ctx, newID, after, resealBatch)
			if err != nil {
				return err
			}
			if len(batch) == 0 {
				break
			}
			d := ResealSecrets{KeyID: newID}
			for _, s := range batch {
				plain, err := keys.Open(s.Sealed, "account:"+s.ID)
				if err != nil {
					return fmt.Errorf("account %s: %w", s.ID, err)
				}
				to, err := keys.Seal(plain, "account:"+s.ID)
				clear(plain)
				if err != nil {
					return err
				}
				d.Accounts = append(d.Accounts, Reseal{ID: s.ID, From: s.Sealed, To: to})
			}
			if err := n.ProposeDataRetrying(ctx, CmdResealSecrets, p.actor, d, nil); err != nil {
				return fmt.Errorf("re-seal %d secrets: %w", len(d.Accounts), err)
			}
			done += len(batch)
			after = batch[len(batch)-1].ID
			p.Report(ctx, done*100/max(total, 1), fmt.Sprintf("%d of %d secrets re-sealed", done, total))
		}
		if err := n.resealStaged(ctx, p.actor, keys); err != nil {
			return err
		}
		if err := n.resealOIDC(ctx, p.actor, keys); err != nil {
			return err
		}
	}
	left, err := n.countNotUnder(ctx, newID)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("%d secrets are still sealed under older keys; start the rotation again", left)
	}
	return p.Report(ctx, 100, fmt.Sprintf("%d secrets re-sealed under key %s", done, newID))
}

// resealStaged re-seals the rows of imports not committed yet.
func (n *Node) resealStaged(ctx context.Context, actor string, keys keyring.Keys) error {
	for range 1000 {
		batch, err := n.store.StagedSecretsNotUnder(ctx, keys.Current, resealBatch)
		if err != nil || len(batch) == 0 {
			return err
		}
		d := ResealSecrets{KeyID: keys.Current}
		for _, s := range batch {
			plain, err := keys.Open(s.Sealed, "account:"+s.AccountID)
			if err != nil {
				return fmt.Errorf("import row %s/%d: %w", s.ImportID, s.Line, err)
			}
			to, err := keys.Seal(plain, "account:"+s.AccountID)
			clear(plain)
			if err != nil {
				return err
			}
			d.Staged = append(d.Staged, ResealStaged{ImportID: s.ImportID, Line: s.Line, From: s.Sealed, To: to})
		}
		if err := n.ProposeDataRetrying(ctx, CmdResealSecrets, actor, d, nil); err != nil {
			return fmt.Errorf("re-seal %d staged import rows: %w", len(d.Staged), err)
		}
	}
	return errors.New("staged import rows keep coming under an older key")
}

// resealOIDC seals the OIDC client secret under the current key.
func (n *Node) resealOIDC(ctx context.Context, actor string, keys keyring.Keys) error {
	s, err := LoadSettings(ctx, n.store)
	if err != nil {
		return err
	}
	o := s.OIDC
	if keyring.SealedUnder(o.SealedClientSecret, keys.Current) || (o.SealedClientSecret == "" && o.LegacyClientSecret == "") {
		return nil
	}
	o, err = n.OpenClientSecret(ctx, o)
	if err != nil {
		return err
	}
	to, err := SealClientSecret(keys, o.ClientSecret)
	if err != nil {
		return err
	}
	return n.ProposeDataRetrying(ctx, CmdResealSecrets, actor, ResealSecrets{KeyID: keys.Current, OIDC: &Reseal{ID: KeyOIDC, From: o.SealedClientSecret, To: to}}, nil)
}

// countNotUnder counts the secrets not sealed under keyID.
func (n *Node) countNotUnder(ctx context.Context, keyID string) (int, error) {
	counts, err := n.store.AccountSecretsByKey(ctx)
	if err != nil {
		return 0, err
	}
	total, err := n.store.CountStagedNotUnder(ctx, keyID)
	if err != nil {
		return 0, err
	}
	for id, c := range counts {
		if id != keyID {
			total += c
		}
	}
	s, err := LoadSettings(ctx, n.store)
	if err != nil {
		return 0, err
	}
	if o := s.OIDC; o.LegacyClientSecret != "" || (o.SealedClientSecret != "" && !keyring.SealedUnder(o.SealedClientSecret, keyID)) {
		total++
	}
	return total, nil
}

// retireOldKeys removes every key but newID from the ring; Apply refuses
// while a secret is sealed under it, and then the secrets are re-sealed
// again once.
func (n *Node) retireOldKeys(ctx context.Context, p *Progress, newID string) error {
	keys, err := n.DataKeys(ctx)
	if err != nil {
		return err
	}
	var retired []string
	for id := range keys.Keys {
		if id == newID {
			continue
		}
		err := n.ProposeData(ctx, CmdRetireDataKey, p.actor, RetireDataKey{KeyID: id}, nil)
		var rej *store.Rejection
		if errors.As(err, &rej) {
			if err := n.resealAll(ctx, p, newID); err != nil {
				return err
			}
			err = n.ProposeData(ctx, CmdRetireDataKey, p.actor, RetireDataKey{KeyID: id}, nil)
		}
		if err != nil {
			return fmt.Errorf("retire data key %s: %w", id, err)
		}
		retired = append(retired, id)
	}
	sort.Strings(retired)
	msg := "no older key to retire"
	if len(retired) > 0 {
		msg = fmt.Sprintf("retired %s; key %s is the only key", strings.Join(retired, ", "), newID)
	}
	return p.Report(ctx, 100, msg)
}
