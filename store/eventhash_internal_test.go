package store

import (
	"encoding/json"
	"testing"
	"time"
)

// The FSM hashes an event with the details it encoded for the row; the
// hash must be the one the audit chain's verifier (EventHash) computes
// from the details themselves, whatever they hold.
func TestEventHashOfEncodedDetailsIsTheVerifiersHash(t *testing.T) {
	at := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
	for _, details := range []map[string]string{
		nil,
		{},
		{"asset": "db-01", "account": "root"},
		{"html": "<script>&amp;</script>", "quote": `"\`, "lines": "a\nb\tc\u2028d\u2029", "bad": "\xff\xfe", "ctl": "\x00\x1f", "é": "ünïcødé 🔑"},
	} {
		e := Event{ID: "0193a8f0-0000-7000-8000-000000000001", RaftIndex: 42, Type: "AccessRequestCheckedIn", MemberID: "m1",
			Actor: "rita", At: at, OperationID: "op", Details: details}
		raw, err := json.Marshal(details)
		if err != nil {
			t.Fatal(err)
		}
		if details == nil {
			raw = []byte("{}")
		}
		if got, want := eventHash("prev", 7, e, raw), EventHash("prev", 7, e); got != want {
			t.Errorf("details %q: hash %s from the encoded details, %s from the map", details, got, want)
		}
	}
}

// The hash of an event is pinned: events hashed by an earlier release
// must verify with this one.
func TestEventHashIsStable(t *testing.T) {
	at := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
	e := Event{ID: "0193a8f0-0000-7000-8000-000000000001", RaftIndex: 42, Type: "AccessRequestCheckedIn", MemberID: "m1",
		Actor: "rita", At: at, OperationID: "op", Details: map[string]string{"html": "<script>&amp;</script>", "bad": "\xff", "z": "\u2028", "a": "1"}}
	// Computed by the release before eventHash (map details, encoded twice).
	const want = "c823b7c48df56fabead6a389159de9d6c33207ce8d3d6e94a025399380c2ffa6"
	if got := EventHash("prev", 7, e); got != want {
		t.Errorf("EventHash = %s; want %s", got, want)
	}
}
