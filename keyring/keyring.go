// Package keyring seals secrets (account passwords, later the OIDC client
// secret) with the cluster's data-encryption keys: AES-256-GCM, with the
// key's ID in the sealed value so that keys can be rotated later (new
// secrets sealed with the current key, old ones still opened with theirs).
//
// The keys themselves live in the replicated cluster key ring (table
// cluster_keys, name KeyName); this package only knows their bytes.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// KeyName is the name of the data keys in the cluster key ring.
const KeyName = "data-keys"

// Keys are the data-encryption keys: every key by its ID, and which one
// seals new secrets.
type Keys struct {
	Current string            `json:"current"`
	Keys    map[string][]byte `json:"keys"` // 32 bytes each
	// Added is when each key joined the ring (the time of the raft
	// command that added it); keys of older releases have none.
	Added map[string]time.Time `json:"added,omitempty"`
}

// New makes a key set with one new random key.
func New() (Keys, error) {
	kid, key, err := NewKey()
	if err != nil {
		return Keys{}, err
	}
	return Keys{Current: kid, Keys: map[string][]byte{kid: key}}, nil
}

// NewKey makes a new random 256-bit key and its ID.
func NewKey() (string, []byte, error) {
	id := make([]byte, 6)
	key := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", nil, fmt.Errorf("new data key: %w", err)
	}
	if _, err := rand.Read(key); err != nil {
		return "", nil, fmt.Errorf("new data key: %w", err)
	}
	return "dk" + hex.EncodeToString(id), key, nil
}

// SealedUnder tells whether sealed was sealed with the key id.
func SealedUnder(sealed, id string) bool {
	return strings.HasPrefix(sealed, version+":"+id+":")
}

// Parse reads keys as the key ring stores them.
func Parse(raw []byte) (Keys, error) {
	var k Keys
	if err := json.Unmarshal(raw, &k); err != nil {
		return k, fmt.Errorf("data keys: %w", err)
	}
	if err := k.Valid(); err != nil {
		return k, err
	}
	return k, nil
}

// Valid checks that the current key exists and every key is 256 bits.
func (k Keys) Valid() error {
	if _, ok := k.Keys[k.Current]; !ok {
		return fmt.Errorf("data keys: the current key %q is missing", k.Current)
	}
	for id, key := range k.Keys {
		if len(key) != 32 || id == "" || strings.Contains(id, ":") {
			return fmt.Errorf("data keys: key %q is not a 256-bit key with a plain ID", id)
		}
	}
	return nil
}

// ErrOpen is returned when a sealed value cannot be opened: damaged, sealed
// for another purpose, or with a key this ring does not have.
var ErrOpen = errors.New("the sealed secret cannot be opened")

const version = "v1"

// Seal encrypts plaintext with the current key. purpose (e.g. the account's
// ID) is authenticated with it: a sealed value copied to another account
// does not open there.
func (k Keys) Seal(plaintext []byte, purpose string) (string, error) {
	aead, err := k.aead(k.Current)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := aead.Seal(nonce, nonce, plaintext, []byte(version+":"+k.Current+":"+purpose))
	return version + ":" + k.Current + ":" + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a value made by Seal with the same purpose.
func (k Keys) Open(sealed, purpose string) ([]byte, error) {
	v, rest, ok1 := strings.Cut(sealed, ":")
	kid, body, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || v != version {
		return nil, ErrOpen
	}
	aead, err := k.aead(kid)
	if err != nil {
		return nil, err
	}
	raw, err := base64.RawStdEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(v+":"+kid+":"+purpose))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// KeyID names the key a sealed value was sealed with.
func KeyID(sealed string) string {
	parts := strings.SplitN(sealed, ":", 3)
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

func (k Keys) aead(id string) (cipher.AEAD, error) {
	key, ok := k.Keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: key %q is not in the key ring", ErrOpen, id)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", id, err)
	}
	return cipher.NewGCM(block)
}

// RandomPassword makes a new password of n characters from letters, digits
// and a few symbols that survive copying and typing.
func RandomPassword(n int) (string, error) {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.+=%"
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	// 256 is not a multiple of len(alphabet): drop the bytes that would
	// favour the first letters.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	for len(out) < n {
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random password: %w", err)
		}
	}
	return string(out), nil
}
