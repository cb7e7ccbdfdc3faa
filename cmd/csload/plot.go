package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runPlot is csload plot: it reads sse --json reports (the files given)
// and writes an SVG of three small panels against the subscribers
// (the run's --clients): RSS per connection, CPU per delivery and fan-out
// completion p99, one line per series. A report's series is its --label,
// else its file's name without the extension and a trailing -<number>
// (floor-2000.json: floor), with the protocol of sse h1tls or h2 runs.
func runPlot(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("csload plot", flag.ContinueOnError)
	outFile := fs.String("out", "", "the SVG file to write (default: standard output)")
	title := fs.String("title", "csload sse: coursestream against the floor", "the plot's title")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: csload plot [--out plot.svg] [--title T] report.json...  (csload sse --json reports)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("plot: give the --json reports to plot")}
	}
	var pts []plotPoint
	for _, name := range fs.Args() {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pts = append(pts, plotPoint{series: seriesOf(name, &r), file: filepath.Base(name), rep: r})
	}
	svg := plotSVG(*title, pts)
	if *outFile == "" {
		_, err := out.Write(svg)
		return err
	}
	return os.WriteFile(*outFile, svg, 0o644)
}

// plotPoint is one report.
type plotPoint struct {
	series, file string
	rep          report
}

func seriesOf(name string, r *report) string {
	s := r.Label
	if s == "" {
		s = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
		if i := strings.LastIndexByte(s, '-'); i > 0 {
			if _, err := strconv.Atoi(s[i+1:]); err == nil {
				s = s[:i]
			}
		}
	}
	if p, ok := strings.CutPrefix(r.Mode, "sse "); ok {
		s += " " + p
	}
	return s
}

// plotMetrics are the panels: a title and the report's value.
var plotMetrics = []struct {
	name, title string
	value       func(*report) float64
}{
	{"rss", "RSS per connection (KiB)", func(r *report) float64 { return r.RSSPerConnKiB }},
	{"cpu", "CPU per delivery (µs)", func(r *report) float64 { return r.CPUPerDeliveryMicros }},
	{"completion", "fan-out completion p99 (ms)", func(r *report) float64 { return float64(r.CompletionP99) / float64(time.Millisecond) }},
}

var plotColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// The geometry of a panel, in SVG user units.
const (
	panelW, panelH         = 300, 220
	padL, padR, padT, padB = 50, 15, 30, 40
	plotTop                = 40 // the title's band
)

// plotSVG draws the points: one panel per metric, x the subscribers, one
// polyline through the median of each x's runs and a circle per run, per
// series, a legend under the panels.
func plotSVG(title string, pts []plotPoint) []byte {
	x := func(p *plotPoint) float64 { return float64(cmp.Or(p.rep.Clients, p.rep.Connected)) }
	slices.SortStableFunc(pts, func(a, b plotPoint) int { return cmp.Or(cmp.Compare(a.series, b.series), cmp.Compare(x(&a), x(&b))) })
	var series []string
	for _, p := range pts {
		if !slices.Contains(series, p.series) {
			series = append(series, p.series)
		}
	}
	xMax := 0.0
	for i := range pts {
		xMax = max(xMax, x(&pts[i]))
	}
	xMax = niceCeil(xMax)
	width, height := len(plotMetrics)*panelW, plotTop+panelH+20+18*len(series)

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" text-anchor="middle">%s</text>`+"\n", width/2, esc(title))
	for m, metric := range plotMetrics {
		yMax := 0.0
		for i := range pts {
			yMax = max(yMax, metric.value(&pts[i].rep))
		}
		yMax = niceCeil(yMax)
		ox := m * panelW
		left, right, top, bottom := ox+padL, ox+panelW-padR, plotTop+padT, plotTop+panelH-padB
		px := func(v float64) float64 { return float64(left) + v/xMax*float64(right-left) }
		py := func(v float64) float64 { return float64(bottom) - v/yMax*float64(bottom-top) }
		fmt.Fprintf(&b, `<g class="panel" data-metric="%s">`+"\n", metric.name)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (left+right)/2, top-10, esc(metric.title))
		fmt.Fprintf(&b, `<path d="M%d %dV%dH%d" fill="none" stroke="#333"/>`+"\n", left, top, bottom, right)
		for _, f := range []float64{0, 0.5, 1} {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, py(f*yMax)+4, num(f*yMax))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(f*xMax), bottom+14, num(f*xMax))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">subscribers</text>`+"\n", (left+right)/2, bottom+30)
		for s, name := range series {
			color := plotColors[s%len(plotColors)]
			var line []string
			var circles bytes.Buffer
			runs := map[float64][]float64{} // x: the runs' values, for the line through their medians
			var xs []float64
			for i := range pts {
				p := &pts[i]
				if p.series != name {
					continue
				}
				cx, cy := px(x(p)), py(metric.value(&p.rep))
				if _, ok := runs[x(p)]; !ok {
					xs = append(xs, x(p))
				}
				runs[x(p)] = append(runs[x(p)], metric.value(&p.rep))
				fmt.Fprintf(&circles, `<circle class="point" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s subscribers, %s</title></circle>`+"\n",
					cx, cy, color, esc(p.file), num(x(p)), num(metric.value(&p.rep)))
			}
			for _, v := range xs {
				line = append(line, fmt.Sprintf("%.1f,%.1f", px(v), py(medianOf(runs[v]))))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s"/>`+"\n", strings.Join(line, " "), color)
			b.Write(circles.Bytes())
		}
		b.WriteString("</g>\n")
	}
	for s, name := range series {
		y := plotTop + panelH + 10 + 18*s
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", padL, y, plotColors[s%len(plotColors)], padL+18, y+10, esc(name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceCeil is the smallest of 1, 2, 5 times a power of ten at or above v
// (1 for v <= 0: an axis of zeros).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e9 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// medianOf is the median of vs (not empty).
func medianOf(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
