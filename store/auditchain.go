package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The audit log's hash chain: every event applied through the FSM gets the
// next place in the chain (Seq) and a hash over its content and the
// previous event's hash. Apply computes it from the replicated data only,
// so every member computes the same chain; an event altered, removed or
// inserted afterwards breaks it from that event on.

// eventTime is the time as the database keeps it (microseconds), so that
// the hash computed before the insert is the one computed from the row.
func eventTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// EventHash is the chain hash of e at seq after prev.
func EventHash(prev string, seq int64, e Event) string {
	details := e.Details
	if details == nil {
		details = map[string]string{}
	}
	raw, _ := json.Marshal(details)
	return eventHash(prev, seq, e, raw)
}

// eventHash is EventHash with the details as json.Marshal encoded them
// already: the FSM has them for the row, and encoding the map a second
// time was a third of the cost of writing an event. A RawMessage is
// written as it is (compact JSON stays the same), so the hash is too.
func eventHash(prev string, seq int64, e Event, details []byte) string {
	content, _ := json.Marshal(struct {
		Seq         int64           `json:"seq"`
		ID          string          `json:"id"`
		RaftIndex   uint64          `json:"raftIndex"`
		Type        string          `json:"type"`
		MemberID    string          `json:"memberId"`
		Actor       string          `json:"actor"`
		At          string          `json:"at"`
		OperationID string          `json:"operationId"`
		Details     json.RawMessage `json:"details"`
	}{seq, e.ID, e.RaftIndex, e.Type, e.MemberID, e.Actor, eventTime(e.At).Format(time.RFC3339Nano), e.OperationID, details})
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

const lastChainLinkSQL = `select seq, hash from events where seq > 0 order by seq desc limit 1`

// chainHead is the audit chain's last link as the last fast-path batch
// (applyFast) left it, so that the next batch need not read it: the
// statement costs more than the rest of a small batch's reads, and a plan
// made while the events table was small (a seq scan) stays with the
// connection. Every other writer of events forgets it when it is done
// (forgetChainHead; the FSM's lock or a stopped raft keeps them from
// running beside a batch), and a batch takes it (takeChainHead) so that a
// failed batch leaves it unknown.
// A head that is wrong all the same would be behind, never ahead (only
// the fast path moves it forward): its next event would take a place that
// exists, which events_seq refuses, and the batch runs down the exact path.
type chainHead struct {
	mu   sync.Mutex
	link *chainLink // nil: unknown, read it from the database
}

func (s *Store) takeChainHead() *chainLink {
	s.chain.mu.Lock()
	defer s.chain.mu.Unlock()
	l := s.chain.link
	s.chain.link = nil
	return l
}

func (s *Store) keepChainHead(l chainLink) {
	s.chain.mu.Lock()
	s.chain.link = &l
	s.chain.mu.Unlock()
}

func (s *Store) forgetChainHead() { s.takeChainHead() }

// nextChainLink is the place and the previous hash for the next event.
func (t *Tx) nextChainLink(ctx context.Context) (seq int64, prev string, err error) {
	if c := t.tx.chain; c != nil {
		return c.seq + 1, c.hash, nil
	}
	err = t.tx.QueryRow(ctx, lastChainLinkSQL).Scan(&seq, &prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 1, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("audit chain: %w", err)
	}
	return seq + 1, prev, nil
}

// ChainCheck is the result of verifying the audit log's chain.
type ChainCheck struct {
	Checked int    // events verified
	Broken  *Event // the first event that breaks the chain, if any
	Reason  string
}

// Intact tells whether the chain holds.
func (c ChainCheck) Intact() bool { return c.Broken == nil }

// VerifyEventChain recomputes the audit log's chain from its first event
// and names the first event that breaks it.
func (s *Store) VerifyEventChain(ctx context.Context) (ChainCheck, error) {
	rows, err := s.pool.Query(ctx, `select id, raft_index, type, member_id, actor, at, operation_id, details, seq, hash
		from events where seq > 0 order by seq`)
	if err != nil {
		return ChainCheck{}, fmt.Errorf("audit chain: %w", err)
	}
	defer rows.Close()
	var check ChainCheck
	want, prev := int64(1), ""
	for rows.Next() {
		var e Event
		var details []byte
		var seq int64
		var hash string
		if err := rows.Scan(&e.ID, &e.RaftIndex, &e.Type, &e.MemberID, &e.Actor, &e.At, &e.OperationID, &details, &seq, &hash); err != nil {
			return check, fmt.Errorf("audit chain: %w", err)
		}
		if err := json.Unmarshal(details, &e.Details); err != nil {
			return check, fmt.Errorf("audit chain: event %s: %w", e.ID, err)
		}
		switch {
		case seq != want:
			check.Broken, check.Reason = &e, fmt.Sprintf("events %d to %d of the chain are missing before it (removed from the log)", want, seq-1)
		case EventHash(prev, seq, e) != hash:
			check.Broken, check.Reason = &e, "its content does not match its hash (altered after it was recorded)"
		}
		if check.Broken != nil {
			return check, nil
		}
		check.Checked++
		want, prev = seq+1, hash
	}
	if err := rows.Err(); err != nil {
		return check, fmt.Errorf("audit chain: %w", err)
	}
	return check, nil
}
