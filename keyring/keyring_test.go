package keyring

import (
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := New()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("s3cret pass"), "account:1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "s3cret") || !strings.HasPrefix(sealed, "v1:"+k.Current+":") || KeyID(sealed) != k.Current {
		t.Fatalf("sealed value %q", sealed)
	}
	got, err := k.Open(sealed, "account:1")
	if err != nil || string(got) != "s3cret pass" {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Bound to its purpose: it does not open for another account.
	if _, err := k.Open(sealed, "account:2"); !errors.Is(err, ErrOpen) {
		t.Errorf("open for another purpose: %v, want ErrOpen", err)
	}
	// Damaged.
	if _, err := k.Open(sealed[:len(sealed)-2]+"AA", "account:1"); !errors.Is(err, ErrOpen) {
		t.Errorf("open damaged: %v, want ErrOpen", err)
	}
	// Another ring has not the key.
	other, _ := New()
	if _, err := other.Open(sealed, "account:1"); !errors.Is(err, ErrOpen) {
		t.Errorf("open with another ring: %v, want ErrOpen", err)
	}
	// After a rotation, old values still open and new ones use the new key.
	rotated, _ := New()
	rotated.Keys[k.Current] = k.Keys[k.Current]
	if got, err := rotated.Open(sealed, "account:1"); err != nil || string(got) != "s3cret pass" {
		t.Errorf("open after rotation: %q, %v", got, err)
	}
	raw := []byte(`{"current":"x","keys":{}}`)
	if _, err := Parse(raw); err == nil {
		t.Error("Parse accepted keys without the current key")
	}
}

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := RandomPassword(24)
		if err != nil || len(p) != 24 {
			t.Fatalf("%q, %v", p, err)
		}
		if seen[p] {
			t.Fatalf("password %q twice", p)
		}
		seen[p] = true
	}
}
