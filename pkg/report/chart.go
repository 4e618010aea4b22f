package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Charts are drawn in Go as SVG path data over time buckets, never one
// element per operation, so a million-operation run renders as fast and as
// small as a thousand-operation one.

// Chart geometry in SVG user units; the SVG scales to the page width.
const (
	chartW      = 1100.0
	chartH      = 280.0
	plotLeft    = 70.0
	plotRight   = 20.0
	plotTop     = 34.0 // room for two rows of fault labels
	plotBottom  = 34.0
	maxBuckets  = 1800 // beyond this, buckets widen so the SVG stays small
	faultColors = 6
)

type tick struct {
	Pos   float64
	Label string
}

type line struct {
	Name  string
	Class string
	D     string // path data
	Area  string // optional filled area under the line
}

type band struct {
	X, W       float64
	Class      string
	Title      string // hover text
	Label      string // drawn above the plot when it fits, else empty
	LabelX     float64
	LabelY     float64
	LabelClass string
}

type legendItem struct {
	Class string
	Label string
}

type chart struct {
	ID, Title, Caption string
	W, H               float64
	PX, PY, PW, PH     float64 // plot area
	XTicks, YTicks     []tick
	YLabel             string
	Lines              []line
	Bands              []band
	Legend             []legendItem
	FaultLegend        []legendItem
	Empty              string
}

func newChart(id, title string) *chart {
	return &chart{
		ID: id, Title: title, W: chartW, H: chartH,
		PX: plotLeft, PY: plotTop, PW: chartW - plotLeft - plotRight, PH: chartH - plotTop - plotBottom,
	}
}

// bucketWidth is 1 s unless the run is so long that 1 s buckets would make
// the SVG heavy; then it widens to whole seconds.
func bucketWidth(end int64) time.Duration {
	w := time.Second
	if n := end/int64(time.Second) + 1; n > maxBuckets {
		w = time.Duration((n+maxBuckets-1)/maxBuckets) * time.Second
	}
	return w
}

// timeAxis holds the x scale shared by both charts, so fault windows line up.
type timeAxis struct {
	end   float64 // seconds
	width time.Duration
}

func (a timeAxis) x(c *chart, sec float64) float64 {
	return c.PX + sec/a.end*c.PW
}

func (a timeAxis) ticks(c *chart) []tick {
	step := niceStep(a.end, 8)
	var out []tick
	for s := 0.0; s <= a.end+step/1e6; s += step {
		out = append(out, tick{Pos: a.x(c, s), Label: fmtSeconds(s)})
	}
	return out
}

// buildCharts draws throughput and latency over time.
func buildCharts(h *history.History) (thr, lat *chart) {
	thr = newChart("throughput", "Throughput")
	lat = newChart("latency", "Latency")
	end := h.End()
	if len(h.Operations) == 0 {
		thr.Empty = "No operations recorded."
		lat.Empty = "No operations recorded."
	}
	width := bucketWidth(end)
	ax := timeAxis{end: math.Max(float64(end)/1e9, 1), width: width}
	buckets := Series(h, width)
	// A last bucket that covers under half its width is mostly empty time,
	// and would draw a throughput cliff that never happened; the tables still
	// count its operations.
	if n := len(buckets); n > 1 && time.Duration(end)-buckets[n-1].Start < width/2 {
		buckets = buckets[:n-1]
	}
	bw := fmt.Sprintf("%s buckets", fmtSeconds(width.Seconds()))
	thr.Caption = "Operations per second by the time they returned (" + bw + "). Shaded: fault windows; hover for details."
	lat.Caption = "Latency of ok operations, p50 and p99 per bucket (" + bw + ", log scale). Shaded: fault windows."

	for _, c := range []*chart{thr, lat} {
		c.XTicks = ax.ticks(c)
		c.Bands, c.FaultLegend = faultBands(c, ax, h.Faults)
	}
	if thr.Empty == "" {
		drawThroughput(thr, ax, buckets, end)
	}
	if lat.Empty == "" {
		drawLatency(lat, ax, buckets)
	}
	return thr, lat
}

// rate turns a bucket count into per-second, using the bucket's covered span
// so that the last, partial bucket does not look like a throughput drop.
func rate(n int, b Bucket, width time.Duration, end int64) float64 {
	span := width
	if rest := time.Duration(end) - b.Start; rest < span {
		span = max(rest, width/10)
	}
	return float64(n) / span.Seconds()
}

func drawThroughput(c *chart, ax timeAxis, buckets []Bucket, end int64) {
	okRate := make([]float64, len(buckets))
	errRate := make([]float64, len(buckets))
	maxY := 0.0
	hasErr := false
	for i, b := range buckets {
		okRate[i] = rate(b.OK, b, ax.width, end)
		errRate[i] = rate(b.Failed+b.Unknown, b, ax.width, end)
		maxY = math.Max(maxY, math.Max(okRate[i], errRate[i]))
		hasErr = hasErr || b.Failed+b.Unknown > 0
	}
	top, yt := linearTicks(c, maxY)
	c.YTicks, c.YLabel = yt, "ops/s"
	y := func(v float64) float64 { return c.PY + c.PH - v/top*c.PH }
	mid := func(b Bucket) float64 { return ax.x(c, (b.Start + ax.width/2).Seconds()) }

	var d, area strings.Builder
	for i, b := range buckets {
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&d, "%s%s,%s", cmd, f1(mid(b)), f1(y(okRate[i])))
	}
	if len(buckets) > 0 {
		fmt.Fprintf(&area, "M%s,%s%s L%s,%s Z", f1(mid(buckets[0])), f1(c.PY+c.PH), strings.Replace(d.String(), "M", " L", 1),
			f1(mid(buckets[len(buckets)-1])), f1(c.PY+c.PH))
	}
	c.Lines = append(c.Lines, line{Name: "ok ops/s", Class: "s-ok", D: d.String(), Area: area.String()})
	c.Legend = append(c.Legend, legendItem{Class: "s-ok", Label: "ok ops/s"})
	if hasErr {
		var e strings.Builder
		for i, b := range buckets {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&e, "%s%s,%s", cmd, f1(mid(b)), f1(y(errRate[i])))
		}
		c.Lines = append(c.Lines, line{Name: "failed+unknown ops/s", Class: "s-err", D: e.String()})
		c.Legend = append(c.Legend, legendItem{Class: "s-err", Label: "failed + unknown ops/s"})
	}
}

func drawLatency(c *chart, ax timeAxis, buckets []Bucket) {
	lo, hi := math.Inf(1), 0.0
	for _, b := range buckets {
		if b.OK == 0 {
			continue
		}
		lo = math.Min(lo, float64(max(b.P50, time.Microsecond)))
		hi = math.Max(hi, float64(b.P99))
	}
	if hi == 0 {
		c.Empty = "No ok operations, so no latency to show."
		return
	}
	loE := math.Floor(math.Log10(lo))
	hiE := math.Ceil(math.Log10(math.Max(hi, lo)))
	if hiE <= loE {
		hiE = loE + 1
	}
	y := func(ns time.Duration) float64 {
		v := math.Log10(math.Max(float64(ns), math.Pow(10, loE)))
		return c.PY + c.PH - (v-loE)/(hiE-loE)*c.PH
	}
	for e := loE; e <= hiE; e++ {
		d := time.Duration(math.Pow(10, e))
		c.YTicks = append(c.YTicks, tick{Pos: y(d), Label: d.String()})
	}
	c.YLabel = "latency"
	mid := func(b Bucket) float64 { return ax.x(c, (b.Start + ax.width/2).Seconds()) }
	path := func(pick func(Bucket) time.Duration) string {
		var d strings.Builder
		gap := true
		for _, b := range buckets {
			if b.OK == 0 {
				gap = true // no data: break the line rather than draw a fake zero
				continue
			}
			cmd := "L"
			if gap {
				cmd = "M"
				gap = false
			}
			fmt.Fprintf(&d, "%s%s,%s", cmd, f1(mid(b)), f1(y(pick(b))))
		}
		return d.String()
	}
	c.Lines = append(c.Lines,
		line{Name: "p99", Class: "s-p99", D: path(func(b Bucket) time.Duration { return b.P99 })},
		line{Name: "p50", Class: "s-p50", D: path(func(b Bucket) time.Duration { return b.P50 })},
	)
	c.Legend = []legendItem{{Class: "s-p50", Label: "p50"}, {Class: "s-p99", Label: "p99"}}
}

// faultBands shades each fault window and labels it above the plot when the
// label fits without overlapping another one; hover always shows it.
func faultBands(c *chart, ax timeAxis, faults []history.Fault) ([]band, []legendItem) {
	var bands []band
	var legend []legendItem
	classOf := map[string]string{}
	rowEnd := []float64{math.Inf(-1), math.Inf(-1)}
	for _, f := range faults {
		label := faultLabel(f)
		cls, ok := classOf[label]
		if !ok {
			cls = "f" + strconv.Itoa(len(classOf)%faultColors)
			classOf[label] = cls
			legend = append(legend, legendItem{Class: cls, Label: label})
		}
		endNS := f.End
		if endNS == 0 {
			endNS = int64(ax.end * 1e9)
		}
		x0 := ax.x(c, float64(f.Start)/1e9)
		x1 := ax.x(c, float64(endNS)/1e9)
		b := band{X: x0, W: math.Max(x1-x0, 1.5), Class: cls, LabelClass: "t" + cls[1:], Title: faultTitle(f)}
		text := label
		if len(f.Targets) > 0 {
			text += " " + strings.Join(f.Targets, ",")
		}
		text = clip(text, 28)
		textW := float64(len([]rune(text)))*6.2 + 8
		for r := range rowEnd {
			if x0 >= rowEnd[r] && x0+textW <= c.W {
				b.Label, b.LabelX, b.LabelY = text, x0+2, 12+float64(r)*12
				rowEnd[r] = x0 + textW
				break
			}
		}
		bands = append(bands, b)
	}
	return bands, legend
}

func faultTitle(f history.Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s", f.ID, faultLabel(f))
	if len(f.Targets) > 0 {
		fmt.Fprintf(&b, " on %s", strings.Join(f.Targets, ", "))
	}
	fmt.Fprintf(&b, ": %s", relTime(f.Start))
	if f.End != 0 {
		fmt.Fprintf(&b, " to %s (%s)", relTime(f.End), fmtDuration(time.Duration(f.End-f.Start)))
	} else {
		b.WriteString(" until the end (never healed)")
	}
	if f.Error != "" {
		fmt.Fprintf(&b, "; error: %s", f.Error)
	}
	return b.String()
}

// linearTicks picks a rounded top for values up to maxV and ~5 ticks.
func linearTicks(c *chart, maxV float64) (float64, []tick) {
	if maxV <= 0 {
		maxV = 1
	}
	step := niceStep(maxV, 5)
	top := math.Ceil(maxV/step) * step
	var out []tick
	for v := 0.0; v <= top+step/1e6; v += step {
		out = append(out, tick{Pos: c.PY + c.PH - v/top*c.PH, Label: fmtCount(v)})
	}
	return top, out
}

// niceStep returns a 1, 2 or 5 times a power of ten that splits span into at
// most about n steps.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// fmtSeconds formats an axis position: "45s", "2m", "2m30s", "0.5s".
func fmtSeconds(s float64) string {
	if s < 60 {
		return strconv.FormatFloat(math.Round(s*100)/100, 'f', -1, 64) + "s"
	}
	m := int(s) / 60
	rest := s - float64(m*60)
	if m >= 60 {
		return fmt.Sprintf("%dh%02dm", m/60, m%60)
	}
	if rest < 0.5 {
		return fmt.Sprintf("%dm", m)
	}
	return fmt.Sprintf("%dm%02.0fs", m, rest)
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// Geometry helpers for the template, which cannot do arithmetic.
func (c *chart) Right() float64   { return c.PX + c.PW }
func (c *chart) Bottom() float64  { return c.PY + c.PH }
func (c *chart) MidX() float64    { return c.PX + c.PW/2 }
func (c *chart) MidY() float64    { return c.PY + c.PH/2 }
func (c *chart) YTickX() float64  { return c.PX - 6 }
func (c *chart) TickEnd() float64 { return c.Bottom() + 4 }
func (c *chart) XLabelY() float64 { return c.Bottom() + 17 }

// LabelPos centres a y-axis label on its grid line.
func (t tick) LabelPos() float64 { return t.Pos + 4 }
