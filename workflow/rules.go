// Package workflow is the access-request workflow the cluster protects:
// assets and their accounts (passwords sealed with the cluster's data key),
// access policies, and access requests (request, approve or deny, release
// of the password, check-in or expiry, password change).
//
// The rules live here twice over, on purpose: Service checks a change
// before it is proposed (clear errors, secrets generated and sealed), and
// Apply checks it again where it is applied to every member's database,
// deterministically (the state of a request, at most one holder of an
// account), since another change may have come first.
//
// Seams for what comes next:
//   - Where a write goes: Service.writer (a Writer), the cluster node by
//     default. Offline Workflow Mode can put a local spool behind it while
//     the member is isolated; every workflow change goes through
//     Service.propose, except the primary's expiries (ExpireDue), which use
//     the writer directly.
//   - Whether requests are possible: Service.RequestsAvailable, which the
//     availability endpoint reports; Offline Workflow Mode adds
//     cluster.StateIsolated there.
//   - What a change does: Apply, deterministic over a store.Tx. A check-in
//     without the new password its policy requires is refused today (end);
//     Offline Workflow Mode bypasses the change there and records
//     AccessRequestPasswordResetByPassed.
//   - At most one holder: the unique index access_requests_one_holder
//     (migrations/003_workflow.sql); holders are the Available requests
//     (store.Requests with AccountID and States), and the events of a
//     request, in raft order (events.raft_index), give each holder's
//     interval for a linearizability check.
package workflow

import (
	"slices"
	"strings"

	"conclave/cluster"
	"conclave/store"
)

// Actor is who asks for a change.
type Actor struct {
	UserID   string
	Username string
	Role     string
}

// CanRequest tells whether a role may request accounts: a Requester or an
// administrator.
func CanRequest(role string) bool {
	return role == cluster.RoleRequester || role == cluster.RoleAdministrator
}

// CanApprove tells whether a role may decide requests: an Approver or an
// administrator.
func CanApprove(role string) bool {
	return role == cluster.RoleApprover || role == cluster.RoleAdministrator
}

// CanManage tells whether a role may change assets, accounts and policies.
func CanManage(role string) bool { return role == cluster.RoleAdministrator }

// CanSeeAll tells whether a role may read every request (not only its own).
func CanSeeAll(role string) bool { return role != cluster.RoleRequester }

// names are what a user matches in a policy's requesters or approvers: the
// user name (without regard to case) and the role.
func names(username, role string) []string {
	return []string{strings.ToLower(username), role}
}

// listed tells whether a user matches a list of user names and role names.
func listed(list []string, username, role string) bool {
	for _, e := range list {
		if strings.EqualFold(e, username) || e == role {
			return true
		}
	}
	return false
}

// normalizeNames lower-cases user names and keeps role names as they are
// spelled, without duplicates, sorted.
func normalizeNames(in []string) []string {
	out := make([]string, 0, len(in))
	for _, e := range in {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !cluster.ValidRole(e) {
			e = strings.ToLower(e)
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// ApproverNames are the entries of a policy's approvers that name a user:
// nil (every request) for an administrator.
func ApproverNames(a Actor) []string {
	if a.Role == cluster.RoleAdministrator {
		return nil
	}
	return names(a.Username, a.Role)
}

// MayDecide tells whether a user may approve or deny a request (Apply
// checks the same).
func MayDecide(r store.AccessRequest, a Actor) bool {
	return r.State == store.RequestPending && decideRefusal(r, a.UserID, a.Username, a.Role) == nil
}

// MayRequestUnder tells whether a policy lets a user request its accounts.
func MayRequestUnder(p store.Policy, a Actor) bool {
	return CanRequest(a.Role) && (listed(p.Requesters, a.Username, a.Role) || a.Role == cluster.RoleAdministrator)
}
