package handlers

import (
	"fmt"

	"conclave/store"
	"conclave/workflow"
)

// workflowEventSummary says what an event of the access-request workflow
// means in a sentence, or "" for other events.
func workflowEventSummary(e store.Event) string {
	d := e.Details
	switch e.Type {
	case workflow.EvRequestCreated:
		s := fmt.Sprintf("%s requested %s: “%s”.", d["requester"], d["account"], d["reason"])
		if d["approval"] == "not required" {
			s += " No approval needed: checked out at once."
		}
		return s
	case workflow.EvRequestApproved:
		return fmt.Sprintf("%s approved %s's request for %s.", e.Actor, d["requester"], d["account"])
	case workflow.EvRequestDenied:
		return fmt.Sprintf("%s denied %s's request for %s.", e.Actor, d["requester"], d["account"])
	case workflow.EvPasswordReleased:
		return fmt.Sprintf("The password of %s was shown to %s (showing %s of this check-out).", d["account"], d["requester"], d["release"])
	case workflow.EvRequestCheckedIn:
		return fmt.Sprintf("%s was checked in by %s.", d["account"], e.Actor)
	case workflow.EvRequestExpired:
		return fmt.Sprintf("%s's check-out of %s ended by time.", d["requester"], d["account"])
	case workflow.EvPasswordChanged:
		return fmt.Sprintf("The password of %s was changed after check-in.", d["account"])
	case workflow.EvAssetCreated:
		return fmt.Sprintf("Asset %s (%s) was added.", d["asset"], d["address"])
	case workflow.EvAssetUpdated:
		return fmt.Sprintf("Asset %s was changed.", d["asset"])
	case workflow.EvAssetDeleted:
		return "An asset was deleted."
	case workflow.EvAccountCreated:
		return fmt.Sprintf("Account %s was added.", d["account"])
	case workflow.EvAccountUpdated:
		if d["password"] == "changed" {
			return fmt.Sprintf("Account %s was changed, with a new password.", d["account"])
		}
		return fmt.Sprintf("Account %s was changed.", d["account"])
	case workflow.EvAccountDeleted:
		return "An account was deleted."
	case workflow.EvAccountsImported:
		return fmt.Sprintf("%s accounts were imported (%s new assets).", d["accounts"], d["assets"])
	case workflow.EvPolicySaved:
		return fmt.Sprintf("Policy %s was saved (%s accounts).", d["policy"], d["accounts"])
	case workflow.EvPolicyDeleted:
		return "A policy was deleted."
	}
	return ""
}
