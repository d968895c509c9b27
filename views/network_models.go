package views

import "time"

// View models of link latency: the Network page, its matrix and charts,
// and a Test link's result.

// NetworkPage is the Network page: the round trip between every pair of
// members, as a matrix and as charts of the last hour or day.
type NetworkPage struct {
	Page
	Headline   string
	Tone       string
	Summary    string
	Members    []NetworkMember
	Rows       []LinkRow
	Thresholds LinkLegend
	Range      string // hour or day
	// ChartsHTML is LinkCharts of the charts: the same for every viewer,
	// so rendered once when the data is read, not for every page view.
	ChartsHTML string
	Test       *LinkTestView
	FormError  string
	Now        time.Time
	// Live: the page updates itself (a GET of /network; the answer to a
	// Test link is not reloaded).
	Live bool
}

// NetworkMember is a member as a row or column of the matrix.
type NetworkMember struct {
	ID     string
	Name   string
	IsSelf bool
}

// LinkRow is one row of the matrix: the links from one member.
type LinkRow struct {
	From  NetworkMember
	Cells []LinkCell
}

// LinkCell is one directed link (or the diagonal, Self).
type LinkCell struct {
	Self       bool
	FromName   string
	ToName     string
	Level      string // OK, Warning, Bad, Down, Unknown
	Tone       string // ok, warn, bad, down, unknown, stale
	Label      string // "0.4 ms", "Down", "unknown"
	Detail     string // min / avg / max, loss
	Title      string // everything, for hover
	Stale      bool
	MeasuredAt time.Time
}

// LinkLegend explains the colours with the thresholds in force.
type LinkLegend struct {
	OKBelow      string
	WarningBelow string
}

// LinkChart is the history of the links between two members, both ways.
type LinkChart struct {
	ID           string
	AName, BName string
	AID, BID     string
	Width        int
	Height       int
	// Plot area.
	Left, Top, Right, Bottom int
	Series                   []ChartSeries
	XTicks                   []ChartTick
	YTicks                   []ChartTick
	Thresholds               []ChartTick // horizontal lines at the thresholds
	Outages                  []ChartBand // buckets where every probe was lost
	Notes                    []string    // history that could not be read
	Empty                    bool
	Summary                  string // the chart in words, for screen readers
}

// ChartSeries is one direction of a link in a chart.
type ChartSeries struct {
	Name   string // "alpha → gamma"
	Class  string // s0, s1
	Line   string // SVG path of the average round trip
	Band   string // SVG path of the min-max area
	Latest string
}

// ChartTick is a labelled position on an axis.
type ChartTick struct {
	Pos   int
	Label string
}

// ChartBand is a vertical band of the plot (an outage).
type ChartBand struct {
	X, W  int
	Title string
}

// LinkTestView is the result of a Test link.
type LinkTestView struct {
	AName, BName string
	At           time.Time
	Actor        string
	Results      []BurstRow
}

// BurstRow is one direction of a Test link.
type BurstRow struct {
	From, To string
	Tone     string
	Verdict  string
	Sent     int
	Received int
	Loss     string
	Min      string
	Avg      string
	Max      string
	Error    string
}

// LinkPair is a pair of members that a Test link button tests.
type LinkPair struct {
	AID, BID     string
	AName, BName string
}
