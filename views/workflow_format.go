package views

import (
	"fmt"
	"strings"
	"time"
)

// RequestStateLabel is how a request's state reads, and its tone.
func RequestStateLabel(state string) (label, tone string) {
	switch state {
	case "Pending":
		return "Waiting for approval", "info"
	case "Available":
		return "Checked out", "ok"
	case "Denied":
		return "Denied", "bad"
	case "CheckedIn":
		return "Checked in", "neutral"
	case "Expired":
		return "Time ended", "neutral"
	}
	return state, "neutral"
}

// TimeLeft says how long a check-out still runs, in words.
func TimeLeft(until, now time.Time) string {
	d := until.Sub(now)
	switch {
	case d <= 0:
		return "time is up"
	case d < time.Minute:
		return "less than a minute left"
	case d < time.Hour:
		return fmt.Sprintf("%d min left", int(d.Minutes()))
	}
	return fmt.Sprintf("%d h %d min left", int(d.Hours()), int(d.Minutes())%60)
}

// requestHeadline says in one sentence where a request stands and what
// comes next.
func requestHeadline(r RequestRow, mine bool) string {
	switch r.State {
	case "Pending":
		if mine {
			return "Waiting for " + r.Approvers + " to approve. You can see the password once it is approved."
		}
		return r.Requester + " asks for this account and waits for a decision."
	case "Available":
		if mine {
			return "Yours, " + r.Left + ". Show the password when you need it; check in when you are done."
		}
		return "Checked out by " + r.Requester + ", " + r.Left + "."
	case "Denied":
		return "Denied by " + r.DecidedBy + "."
	case "CheckedIn":
		if r.ChangeAfterCheckin {
			return "Checked in by " + r.EndedBy + "; the password was changed."
		}
		return "Checked in by " + r.EndedBy + "."
	case "Expired":
		if r.ChangeAfterCheckin {
			return "The check-out time ended; the account was checked in and its password changed."
		}
		return "The check-out time ended; the account was checked in."
	}
	return r.State
}

func searchSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " match “" + s + "”"
}

// accountList names a policy's first accounts and how many more it has.
func accountList(accts []string, more int) string {
	out := strings.Join(accts, ", ")
	if more > 0 {
		out += fmt.Sprintf(" and %d more", more)
	}
	return out
}

// times says how often something happened.
func times(n int) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
