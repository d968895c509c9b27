package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"conclave/keyring"
	"conclave/store"
)

// DataKeys returns the cluster's data-encryption keys from the replicated
// key ring. They are read from this appliance's database each time (a
// primary-key lookup), so a snapshot installed at enrollment or a rotation
// is seen at once.
func (n *Node) DataKeys(ctx context.Context) (keyring.Keys, error) {
	return LoadDataKeys(ctx, n.store)
}

// LoadDataKeys reads the data keys from st.
func LoadDataKeys(ctx context.Context, st *store.Store) (keyring.Keys, error) {
	raw, err := st.Key(ctx, keyring.KeyName)
	if errors.Is(err, store.ErrNotFound) {
		return keyring.Keys{}, errors.New("the cluster has no data-encryption key yet; the primary creates it: try again in a few seconds")
	}
	if err != nil {
		return keyring.Keys{}, err
	}
	return keyring.Parse(raw)
}

// ensureDataKeys creates the data keys of a cluster made before they
// existed. The primary runs it at each election; Apply keeps the first
// keys if two proposals cross.
func (n *Node) ensureDataKeys(ctx context.Context) error {
	if _, err := n.store.Key(ctx, keyring.KeyName); err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keys, err := keyring.New()
	if err != nil {
		return err
	}
	err = n.ProposeData(ctx, CmdPutDataKeys, "system", keys, &EventSpec{Type: "ClusterDataKeyCreated", Details: map[string]string{"keyId": keys.Current}})
	var rej *store.Rejection
	if errors.As(err, &rej) {
		return nil // created by another proposal meanwhile
	}
	return err
}

func applyPutDataKeys(ctx context.Context, tx *store.Tx, keys keyring.Keys, at time.Time) error {
	if err := keys.Valid(); err != nil {
		return store.Reject("", "%v", err)
	}
	if _, err := tx.Key(ctx, keyring.KeyName); err == nil {
		return store.Reject("", "the cluster has data keys already")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return putDataKeys(ctx, tx, keys, at)
}

func putDataKeys(ctx context.Context, tx *store.Tx, keys keyring.Keys, at time.Time) error {
	if _, ok := keys.Added[keys.Current]; !ok {
		if keys.Added == nil {
			keys.Added = map[string]time.Time{}
		}
		keys.Added[keys.Current] = at
	}
	raw, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("data keys: %w", err)
	}
	return tx.PutKey(ctx, keyring.KeyName, raw, at)
}
