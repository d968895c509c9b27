package handlers

import (
	"fmt"
	"math"
	"strings"
	"time"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// chartInput is what a link chart shows: the history of both directions
// between two members over the last hour or day.
type chartInput struct {
	Range        string
	Now          time.Time
	Thresholds   cluster.LinkThresholds
	AName, BName string
	Series       [2][]store.LinkSample // a → b, b → a
	Notes        []string
}

// Chart geometry, in SVG user units.
const (
	chartW      = 560
	chartH      = 210
	chartLeft   = 52
	chartRight  = chartW - 14
	chartTop    = 14
	chartBottom = chartH - 28
)

// drawChart lays out a link chart: a line of the average round trip per
// bucket and a band from min to max, per direction; dashed lines at the
// thresholds; red bands where every probe was lost; time along the bottom
// in UTC, like every time in the console.
func drawChart(in chartInput) views.LinkChart {
	c := views.LinkChart{
		ID: "chart-" + chartID(in.AName, in.BName), AName: in.AName, BName: in.BName, Width: chartW, Height: chartH,
		Left: chartLeft, Top: chartTop, Right: chartRight, Bottom: chartBottom, Notes: in.Notes,
	}
	span, step := time.Hour, 10*time.Minute
	res := 10 * time.Second
	if in.Range == cluster.RangeDay {
		span, step, res = 24*time.Hour, 3*time.Hour, time.Minute
	}
	end := in.Now
	start := end.Add(-span)
	x := func(t time.Time) float64 {
		return chartLeft + float64(chartRight-chartLeft)*float64(t.Sub(start))/float64(span)
	}
	// The scale: the largest average (a single spike's max does not flatten
	// the rest), and at least the OK threshold, so the picture says at
	// once how far below it the links are.
	top := in.Thresholds.OKBelowMs * 1.2
	points := 0
	for _, s := range in.Series {
		for _, b := range s {
			if b.AvgMs != nil {
				top = max(top, *b.AvgMs*1.15)
				points++
			}
		}
	}
	yStep := niceStep(top / 4)
	yMax := math.Ceil(top/yStep) * yStep
	y := func(ms float64) float64 {
		ms = min(max(ms, 0), yMax)
		return chartBottom - float64(chartBottom-chartTop)*ms/yMax
	}
	for v := 0.0; v <= yMax+yStep/2; v += yStep {
		c.YTicks = append(c.YTicks, views.ChartTick{Pos: int(math.Round(y(v))), Label: trimMs(v)})
	}
	for _, th := range []float64{in.Thresholds.OKBelowMs, in.Thresholds.WarningBelowMs} {
		if th <= yMax {
			c.Thresholds = append(c.Thresholds, views.ChartTick{Pos: int(math.Round(y(th))), Label: trimMs(th)})
		}
	}
	for t := start.Truncate(step).Add(step); t.Before(end); t = t.Add(step) {
		c.XTicks = append(c.XTicks, views.ChartTick{Pos: int(math.Round(x(t))), Label: t.UTC().Format("15:04")})
	}
	names := [2]string{in.AName + " → " + in.BName, in.BName + " → " + in.AName}
	var words []string
	for k, s := range in.Series {
		sr := views.ChartSeries{Name: names[k], Class: fmt.Sprintf("s%d", k)}
		var line, band strings.Builder
		var upper, lower []string
		flushBand := func() {
			if len(upper) > 0 {
				band.WriteString("M" + strings.Join(upper, " L"))
				for i := len(lower) - 1; i >= 0; i-- {
					band.WriteString(" L" + lower[i])
				}
				band.WriteString(" Z ")
			}
			upper, lower = nil, nil
		}
		var prev time.Time
		var worst float64
		var worstAt time.Time
		for _, b := range s {
			if b.At.Before(start) {
				continue
			}
			mid := b.At.Add(res / 2)
			if b.AvgMs == nil {
				if b.Lost == b.Probes {
					c.Outages = append(c.Outages, views.ChartBand{X: int(x(b.At)), W: max(1, int(math.Round(x(b.At.Add(res))-x(b.At)))),
						Title: fmt.Sprintf("%s: no answer %s–%s UTC", names[k], b.At.UTC().Format("15:04:05"), b.At.Add(res).UTC().Format("15:04:05"))})
				}
				prev = time.Time{}
				flushBand()
				continue
			}
			pt := fmt.Sprintf("%.1f %.1f", x(mid), y(*b.AvgMs))
			if prev.IsZero() || b.At.Sub(prev) > res*3/2 {
				line.WriteString("M" + pt + " ")
				flushBand()
			} else {
				line.WriteString("L" + pt + " ")
			}
			upper = append(upper, fmt.Sprintf("%.1f %.1f", x(mid), y(*b.MaxMs)))
			lower = append(lower, fmt.Sprintf("%.1f %.1f", x(mid), y(*b.MinMs)))
			prev = b.At
			if *b.AvgMs > worst {
				worst, worstAt = *b.AvgMs, b.At
			}
			sr.Latest = formatMs(*b.AvgMs)
		}
		flushBand()
		sr.Line, sr.Band = strings.TrimSpace(line.String()), strings.TrimSpace(band.String())
		c.Series = append(c.Series, sr)
		if sr.Latest != "" {
			words = append(words, fmt.Sprintf("%s: latest %s, highest average %s at %s UTC.", names[k], sr.Latest, formatMs(worst), worstAt.UTC().Format("15:04")))
		} else {
			words = append(words, names[k]+": no measurement in this period.")
		}
	}
	c.Empty = points == 0 && len(c.Outages) == 0
	c.Summary = strings.Join(words, " ")
	return c
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// trimMs labels an axis value in milliseconds.
func trimMs(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f ms", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".") + " ms"
}

// chartID makes an HTML id of two member names.
func chartID(a, b string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(a + "-" + b) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}
