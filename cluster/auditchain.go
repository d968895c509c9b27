package cluster

import (
	"context"
	"fmt"
	"time"

	"conclave/store"
)

// VerifyAuditChain checks the audit log's hash chain and returns an error
// naming the first event that breaks it.
func (n *Node) VerifyAuditChain(ctx context.Context) (store.ChainCheck, error) {
	check, err := n.store.VerifyEventChain(ctx)
	if err != nil {
		return check, err
	}
	n.chainCache.Store(&chainResult{check: check, at: time.Now()})
	if !check.Intact() {
		e := check.Broken
		return check, fmt.Errorf("the audit log's chain is broken at event %s (%s by %s at %s): %s",
			e.ID, e.Type, e.Actor, e.At.UTC().Format("2006-01-02 15:04:05 MST"), check.Reason)
	}
	return check, nil
}

type chainResult struct {
	check store.ChainCheck
	at    time.Time
}

// chainCacheAge is how long a page may show the last check of the audit
// chain: checking it reads the whole log (BenchmarkVerifyEventChain).
const chainCacheAge = 30 * time.Second

// AuditChainRecent is VerifyAuditChain, or its result of the last 30
// seconds: for pages viewed often.
func (n *Node) AuditChainRecent(ctx context.Context) (store.ChainCheck, error) {
	if c := n.chainCache.Load(); c != nil && time.Since(c.at) < chainCacheAge && c.check.Intact() {
		return c.check, nil
	}
	return n.VerifyAuditChain(ctx)
}
