package views

import (
	"fmt"
	"time"
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
