package cluster

import (
	"context"
	"fmt"

	"conclave/store"
)

// VerifyAuditChain checks the audit log's hash chain and returns an error
// naming the first event that breaks it.
func (n *Node) VerifyAuditChain(ctx context.Context) (store.ChainCheck, error) {
	check, err := n.store.VerifyEventChain(ctx)
	if err != nil {
		return check, err
	}
	if !check.Intact() {
		e := check.Broken
		return check, fmt.Errorf("the audit log's chain is broken at event %s (%s by %s at %s): %s",
			e.ID, e.Type, e.Actor, e.At.UTC().Format("2006-01-02 15:04:05 MST"), check.Reason)
	}
	return check, nil
}
