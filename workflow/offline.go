package workflow

import (
	"context"
	"fmt"

	"conclave/cluster"
	"conclave/store"
)

// Offline Workflow Mode (cluster/offline.go): on an isolated member,
// requests, decisions, releases and check-ins are applied to the member's
// own database, on the policy and accounts it has; everything else
// (assets, accounts, policies, imports, expiries) is read-only until it
// resumes online.

// offlineCommands are the commands an isolated member takes.
var offlineCommands = map[string]bool{
	CmdCreateRequest: true, CmdDecideRequest: true, CmdReleaseRequest: true, CmdCheckin: true,
}

// offlineWriter sends commands to the cluster, or, while the member is
// isolated, applies the request commands locally.
type offlineWriter struct{ node *cluster.Node }

func (w offlineWriter) Propose(ctx context.Context, cmd cluster.Command) error {
	if !w.node.Isolated() {
		return w.node.Propose(ctx, cmd)
	}
	if !offlineCommands[cmd.Type] {
		return &UnavailableError{Reason: fmt.Sprintf("%s is in Offline Workflow: assets, accounts and policies are read-only until it resumes online. "+
			"Requests, approvals, releases and check-ins work.", w.node.Name())}
	}
	return w.node.ApplyOffline(ctx, cmd)
}

// endBypassed checks a request in without the password change its policy
// asks for, and records that the change was bypassed.
func (a *applier) endBypassed(ctx context.Context, r store.AccessRequest, by string) error {
	details := requestDetails(r)
	details["why"] = "checked in during Offline Workflow: the password was not changed; change it once the member is online again"
	// No NewSecret: the password stays, and the request says it did not change.
	return a.tx.EndCheckout(ctx, store.CheckoutEnd{RequestID: r.ID, State: store.RequestCheckedIn, By: by, At: a.cmd.At, AccountID: r.AccountID,
		Events: []store.Event{a.newEvent(EvRequestCheckedIn, requestDetails(r)), a.newEvent(EvPasswordBypassed, details)}})
}
