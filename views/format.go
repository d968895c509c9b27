package views

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// When formats a time for people: UTC, to the second.
func When(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// WhenPtr formats an optional time.
func WhenPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return When(*t)
}

// ISO is a machine-readable time for <time datetime>.
func ISO(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Ago says how long ago t was, roughly.
func Ago(t time.Time, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// Duration formats an uptime.
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days %d h", int(d.Hours()/24), int(d.Hours())%24)
}

func itoa(i int) string { return fmt.Sprint(i) }

func pct(i int) string { return fmt.Sprintf("%d%%", i) }

// Day is the date part of When, for tables that show the time first.
func Day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02")
}

// Clock is the time of day of When, in UTC.
func Clock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("15:04:05")
}

// Period ends a message with a full stop, leaving its first letter as it
// is (a step's message often starts with a member's name).
func Period(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	switch s[len(s)-1] {
	case '.', '!', '?', ':', ')':
		return s
	}
	return s + "."
}

// Sentence makes a message read as a sentence: a capital first letter and
// a full stop, so errors that come straight from Go ("wrong user name or
// password") look like the rest of the console.
func Sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	r, size := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[size:]
	switch s[len(s)-1] {
	case '.', '!', '?', ':', ')':
		return s
	}
	return s + "."
}

// toneOr is the tone of a chip or a node; an empty tone reads as info.
func toneOr(tone string) string {
	switch tone {
	case "ok", "warn", "bad", "info":
		return tone
	}
	return "neutral"
}

// Quorum is what the members say about consensus right now: how many vote,
// how many of those are in good state, and how many more may fail.
type Quorum struct {
	Voters, OnlineVoters, Majority int
	// MayStillFail is how many more voting members may fail before
	// consensus is lost; negative when it is lost already.
	MayStillFail int
}

// Lost reports whether too few voting members are in good state.
func (q Quorum) Lost() bool { return q.Voters > 0 && q.MayStillFail < 0 }

// QuorumOf counts the voting members; only a member in consensus now
// (InQuorum) counts as online.
func QuorumOf(ms []MemberRow) Quorum {
	var q Quorum
	for _, m := range ms {
		if m.IsVoter {
			q.Voters++
			if m.InQuorum {
				q.OnlineVoters++
			}
		}
	}
	q.Majority = q.Voters/2 + 1
	q.MayStillFail = q.OnlineVoters - q.Majority
	return q
}

// Headline sums up the members in a word or two for the top of the
// cluster view: red when the cluster cannot make changes (no primary, no
// consensus), amber when it works but a member is down or needs attention.
func Headline(ms []MemberRow) (tone, text string) {
	if len(ms) == 0 {
		return "bad", "No member answers"
	}
	// An appliance on its own, on purpose: its mode is the headline.
	if len(ms) == 1 {
		switch ms[0].State {
		case "StandaloneReadOnly":
			return "warn", "Online Read-only"
		case "Maintenance":
			return "info", "Maintenance"
		case "LeavingCluster":
			return "warn", "Leaving its cluster"
		}
	}
	primary, online, worst := false, 0, "ok"
	for _, m := range ms {
		if m.Role == "Primary" {
			primary = true
		}
		if m.InQuorum {
			online++
		}
		worst = worse(worse(worst, m.StateTone), m.HealthTone)
	}
	switch {
	case !primary:
		return "bad", "No primary"
	case QuorumOf(ms).Lost():
		return "bad", "Consensus lost"
	case worst == "bad":
		return "warn", "Degraded"
	case worst == "warn":
		return "warn", "Needs attention"
	case online == len(ms) && len(ms) == 1:
		return "ok", "Online"
	case online == len(ms):
		return "ok", "All members online"
	}
	return "info", fmt.Sprintf("%d of %d members online", online, len(ms))
}

var toneRank = map[string]int{"ok": 0, "info": 1, "warn": 2, "bad": 3}

func worse(a, b string) string {
	if toneRank[b] > toneRank[a] {
		return b
	}
	return a
}

// OnlineCount counts the members in consensus now.
func OnlineCount(ms []MemberRow) int {
	n := 0
	for _, m := range ms {
		if m.InQuorum {
			n++
		}
	}
	return n
}

// ToleranceTone colours the fault-tolerance sentence: a single appliance
// is a choice (info); several members that cannot lose one more are a
// risk (warn); lost consensus is an emergency (bad).
func ToleranceTone(ms []MemberRow) string {
	q := QuorumOf(ms)
	switch {
	case q.Lost():
		return "bad"
	case q.Voters <= 1:
		return "info"
	case q.MayStillFail == 0:
		return "warn"
	}
	return "ok"
}

// LinkItem is a link of the diagram in words.
type LinkItem struct{ From, To, Label, Tone string }

// linkItems lists the diagram's labelled links by member name.
func linkItems(d Diagram) []LinkItem {
	var out []LinkItem
	for _, l := range d.Links {
		if l.Label != "" {
			out = append(out, LinkItem{From: nodeAt(d, l.X1, l.Y1), To: nodeAt(d, l.X2, l.Y2), Label: l.Label, Tone: toneOr(l.Tone)})
		}
	}
	return out
}

// diagram node geometry (the handler places the centres).
const (
	nodeHalfW = 90
	nodeHalfH = 48
)

// diagramBox is the part of the handler's canvas that the members use,
// with room for the "this appliance" ring and notch: the picture is drawn
// at a steady scale whether it shows one member or five.
func diagramBox(d Diagram) (x, y, w, h int) {
	if len(d.Nodes) == 0 {
		return 0, 0, d.Width, d.Height
	}
	const pad = 14
	minX, minY := d.Nodes[0].X, d.Nodes[0].Y
	maxX, maxY := minX, minY
	for _, n := range d.Nodes {
		minX, maxX = min(minX, n.X), max(maxX, n.X)
		minY, maxY = min(minY, n.Y), max(maxY, n.Y)
	}
	x, y = minX-nodeHalfW-pad, minY-nodeHalfH-pad
	return x, y, maxX + nodeHalfW + pad - x, maxY + nodeHalfH + pad - y
}

// fitName shortens a member name that would not fit in its box; the full
// name is in the node's <title>.
func fitName(s string) string {
	const max = 17
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max-1]) + "…"
}

// pillWidth is the width of a state pill in the diagram, from the length of
// its text (SVG cannot size a box to its text without script).
func pillWidth(s string) int {
	w := 7*utf8.RuneCountInString(s) + 22
	if w > 2*nodeHalfW-12 {
		w = 2*nodeHalfW - 12
	}
	return w
}

// diagramSummary says in words what the diagram shows, for screen readers.
func diagramSummary(d Diagram) string {
	var b strings.Builder
	for i, n := range d.Nodes {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s: %s, %s", n.Name, n.Role, n.State)
		if n.IsSelf {
			b.WriteString(", this appliance")
		}
		b.WriteString(".")
	}
	for _, l := range d.Links {
		if l.Label != "" {
			fmt.Fprintf(&b, " %s to %s: %s.", nodeAt(d, l.X1, l.Y1), nodeAt(d, l.X2, l.Y2), l.Label)
		}
	}
	return b.String()
}

func nodeAt(d Diagram, x, y int) string {
	for _, n := range d.Nodes {
		if n.X == x && n.Y == y {
			return n.Name
		}
	}
	return "a member"
}

// hasMemberActions tells whether any member row offers an action.
func hasMemberActions(ms []MemberRow) bool {
	for _, m := range ms {
		if m.CanUnjoin || m.CanFailover {
			return true
		}
	}
	return false
}

func hasLinkLabels(d Diagram) bool {
	for _, l := range d.Links {
		if l.Label != "" {
			return true
		}
	}
	return false
}

func hasLinkTone(d Diagram, tone string) bool {
	for _, l := range d.Links {
		if l.Tone == tone {
			return true
		}
	}
	return false
}

func lower(s string) string { return strings.ToLower(s) }

// stepLabel is a step state in words.
func stepLabel(state string) string {
	switch state {
	case "Pending":
		return "Waiting"
	case "Skipped":
		return "Not run"
	}
	return state
}

// stepMark is what the step's circle shows: its number, or how it ended.
func stepMark(s StepRow) string {
	switch s.State {
	case "Succeeded":
		return "✓"
	case "Failed":
		return "✕"
	case "Skipped":
		return "–"
	}
	return fmt.Sprint(s.Number)
}

// outcomeIcon marks an operation's state with a shape as well as a colour.
func outcomeIcon(state string) string {
	switch state {
	case "Succeeded":
		return "✓"
	case "Failed", "ResultUnknown":
		return "✕"
	}
	return "●"
}

// OperationLabel is how the console names a kind of operation (the lock
// and the API call them Enroll, Remove, ...).
func OperationLabel(kind string) string {
	switch kind {
	case "Enroll":
		return "Add Replica"
	case "Remove":
		return "Unjoin"
	case "Reset":
		return "Reset Cluster"
	case "Isolate":
		return "Enable Offline Workflow"
	case "Reintegrate":
		return "Resume Online"
	case "KeyRotation":
		return "Rotate Key"
	}
	return kind
}

// OperationStateLabel is an operation's state in words.
func OperationStateLabel(state string) string {
	if state == "ResultUnknown" {
		return "Result unknown"
	}
	return state
}

// selfTitle explains the badge of the appliance that served the page.
func selfTitle(s SelfBadge) string {
	if s.State == "" {
		return "The page comes from " + s.Name
	}
	return "The page comes from " + s.Name + ", whose state is " + s.State
}
