package tracker

import (
	"errors"
	"fmt"
	"html"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"racktracker/storage"
)

// The rollout timeline in the API and on the dashboard. The sampler
// (stuck.go) writes one sample per transfers.timeline_interval into
// <hash>:timeline; the API serves it as "timeline" and the transfer's page
// draws it as an inline SVG chart of each rack's progress over time.
//
// sample (API):
//
//	at                datetime  start of the sampling period
//	racks             [{rack, seeders, leechers, representatives, left,
//	                    progress}]  progress as in rack, null when unknown

// timelineJSON is one sample in the API.
type timelineJSON struct {
	At    string             `json:"at"`
	Racks []timelineRackJSON `json:"racks"`
}

type timelineRackJSON struct {
	Rack            string   `json:"rack"`
	Seeders         int      `json:"seeders"`
	Leechers        int      `json:"leechers"`
	Representatives int      `json:"representatives"`
	Left            int64    `json:"left"`
	Progress        *float64 `json:"progress"`
}

// stuckJSON is a stuck rack's state in the API.
type stuckJSON struct {
	Reason string `json:"reason"`
	Since  string `json:"since"`
}

// transferDetailJSON is GET /api/transfers/<hash>: the transfer and its
// timeline.
type transferDetailJSON struct {
	transferJSON
	Timeline []timelineJSON `json:"timeline"`
}

// runJSON is the timeline of a deactivated run.
type runJSON struct {
	Hash         string         `json:"hash"`
	Deregistered string         `json:"deregistered"`
	Timeline     []timelineJSON `json:"timeline"`
}

func (s *Server) stuckJSON(t storage.TransferStats, rack string) *stuckJSON {
	if !t.Active {
		return nil
	}
	st, ok := s.ops.rackStuckState(t.InfoHash, rack)
	if !ok {
		return nil
	}
	return &stuckJSON{Reason: st.Reason, Since: storage.FormatTime(st.Since)}
}

// transferDetail is a transfer with its timeline; a timeline that cannot
// be read leaves it empty rather than failing the answer.
func (s *Server) transferDetail(r *http.Request, t storage.TransferStats) transferDetailJSON {
	out := transferDetailJSON{transferJSON: s.transferJSON(r, t), Timeline: []timelineJSON{}}
	tl, err := s.store.Timeline(r.Context(), t.InfoHash, "")
	if err != nil {
		s.warn.log(s.log, "timeline: read failed", "infohash", t.InfoHash.String(), "err", err)
		return out
	}
	out.Timeline = timelineView(tl, t.Length)
	return out
}

func timelineView(tl []storage.TimelineSample, length int64) []timelineJSON {
	out := make([]timelineJSON, len(tl))
	for i, sm := range tl {
		out[i] = timelineJSON{At: storage.FormatTime(sm.At), Racks: make([]timelineRackJSON, len(sm.Racks))}
		for j, r := range sm.Racks {
			out[i].Racks[j] = timelineRackJSON{
				Rack: r.Rack, Seeders: r.Seeders, Leechers: r.Leechers, Representatives: r.Representatives,
				Left: r.Left, Progress: optProgress(r.Progress(length)),
			}
		}
	}
	return out
}

// serveRun answers the timeline of a deactivated run.
func (s *Server) serveRun(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	at := r.PathValue("at")
	if _, err := storage.ParseTime(at); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad run %q: want the deregistered datetime of GET /api/transfers' history", shorten(at)))
		return
	}
	tl, length, err := s.store.RunTimeline(r.Context(), h, at)
	if err != nil {
		s.storageFailed(w, r, "read timeline", err)
		return
	}
	if len(tl) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no timeline for run %s of %s", at, h))
		return
	}
	writeJSON(w, http.StatusOK, runJSON{Hash: h.String(), Deregistered: at, Timeline: timelineView(tl, length)})
}

// serveRunPage draws the timeline of a deactivated run.
func (s *Server) serveRunPage(w http.ResponseWriter, r *http.Request) {
	h, err := storage.ParseInfoHash(r.PathValue("hash"))
	at := r.PathValue("at")
	if _, terr := storage.ParseTime(at); err != nil || terr != nil {
		p := s.page("bad run")
		p.Status, p.Error = http.StatusBadRequest, "Want /transfers/<40 hex digits>/runs/<deregistered datetime>."
		s.render(w, "error", p)
		return
	}
	tl, length, err := s.store.RunTimeline(r.Context(), h, at)
	if err != nil {
		s.dashboardFailed(w, r, err)
		return
	}
	if len(tl) == 0 {
		p := s.page("no timeline")
		p.Status, p.Error = http.StatusNotFound, fmt.Sprintf("No timeline for run %s of %s.", at, h)
		s.render(w, "error", p)
		return
	}
	v := dashTransfer{Hash: h.String(), Name: "run of " + h.String()[:8] + " deactivated " + at, Chart: timelineChart(tl, length, nil, time.Time{})}
	p := s.page(v.Name + " · racktracker")
	p.Transfer = &v
	s.render(w, "run", p)
}

// decorate adds what the sampler knows to a transfer's view: stuck racks
// and, with its timeline, the chart.
func (s *Server) decorate(v *dashTransfer, t storage.TransferStats, tl []storage.TimelineSample) {
	stuckNow := map[string]string{}
	for i := range v.Racks {
		if st, ok := s.ops.rackStuckState(t.InfoHash, v.Racks[i].Rack); ok {
			v.Racks[i].Stuck = st.Reason
			v.Racks[i].StuckSince = storage.FormatTime(st.Since)
			stuckNow[v.Racks[i].Rack] = st.Reason
			v.Stuck++
		}
	}
	if tl != nil {
		v.Chart = timelineChart(tl, t.Length, stuckNow, s.now())
	}
}

// dashboardRoutesOps adds the pages of this file to the public mux.
func (s *Server) dashboardRoutesOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /transfers/{hash}/runs/{at}", s.serveRunPage)
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW, chartH             = 1100, 280
	chartLeft, chartRight      = 48, 210
	chartTop, chartBottom      = 14, 30
	chartPlotW                 = chartW - chartLeft - chartRight
	chartPlotH                 = chartH - chartTop - chartBottom
	chartMaxPoints             = 160 // beyond it, points get no marker of their own
	chartStuckColor            = "#c62828"
	chartGridColor             = "#dde2e7"
	chartAxisColor             = "#66717d"
	chartFont                  = `font-family="system-ui, sans-serif" font-size="11"`
	chartRackLimit             = 24 // racks drawn; the rest are summed up in the legend
	chartLegendLine, chartDash = 16, "5 3"
)

// chartColors tell racks apart; a stuck rack's legend entry is red.
var chartColors = []string{"#1d4f91", "#2e8540", "#e08a00", "#7b3fa0", "#00838f", "#8d6e63", "#d81b60", "#5d7a2a", "#3f51b5", "#6d4c41"}

// timelineChart draws each rack's progress (0 to 100 %) over the samples'
// time as an inline SVG, with a legend naming the racks and marking the
// stuck ones (stuck maps a rack to its reason). length is the payload's
// (-1 when unknown: progress is then the seeders' share).
func timelineChart(tl []storage.TimelineSample, length int64, stuck map[string]string, now time.Time) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="progress per rack over time" data-chart="timeline" data-samples="%d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, len(tl))
	if len(tl) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s">No sample yet: the timeline takes one every period.</text></svg>`, chartLeft, chartH/2, chartFont, chartAxisColor)
		return template.HTML(b.String())
	}
	t0, t1 := tl[0].At, tl[len(tl)-1].At
	if !now.IsZero() && now.After(t1) && now.Sub(t1) < t1.Sub(t0)/4+time.Minute {
		t1 = now // an active transfer: the axis runs to now
	}
	span := t1.Sub(t0)
	if span <= 0 {
		span = time.Minute
	}
	x := func(t time.Time) float64 { return chartLeft + chartPlotW*float64(t.Sub(t0))/float64(span) }
	y := func(p float64) float64 { return chartTop + chartPlotH*(1-p) }

	// Grid and axes.
	for _, p := range []float64{0, .25, .5, .75, 1} {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, chartLeft, chartLeft+chartPlotW, y(p), y(p), chartGridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" %s fill="%s">%d%%</text>`, chartLeft-6, y(p)+4, chartFont, chartAxisColor, int(p*100))
	}
	layout := "15:04"
	if span < 10*time.Minute {
		layout = "15:04:05"
	}
	if span > 36*time.Hour {
		layout = "Jan 2 15:04"
	}
	const ticks = 6
	for i := 0; i <= ticks; i++ {
		at := t0.Add(time.Duration(float64(span) * float64(i) / ticks))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s"/>`, x(at), x(at), chartTop+chartPlotH, chartTop+chartPlotH+4, chartAxisColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" %s fill="%s">%s</text>`, x(at), chartH-10, chartFont, chartAxisColor, at.UTC().Format(layout))
	}

	// One line per rack, sorted by name so that a rack keeps its colour
	// from page to page.
	var racks []string
	seen := map[string]bool{}
	for _, sm := range tl {
		for _, r := range sm.Racks {
			if !seen[r.Rack] {
				seen[r.Rack] = true
				racks = append(racks, r.Rack)
			}
		}
	}
	slices.Sort(racks)
	drawn := racks
	if len(drawn) > chartRackLimit {
		drawn = drawn[:chartRackLimit]
	}
	for i, rack := range drawn {
		color := chartColors[i%len(chartColors)]
		dash := ""
		if stuck[rack] != "" {
			dash = ` stroke-dasharray="` + chartDash + `"`
		}
		var pts []string
		var marks strings.Builder
		n := 0
		for _, sm := range tl {
			for _, r := range sm.Racks {
				if r.Rack != rack {
					continue
				}
				p := r.Progress(length)
				if p < 0 || math.IsNaN(p) {
					continue
				}
				n++
				px, py := x(sm.At), y(p)
				pts = append(pts, strconv.FormatFloat(px, 'f', 1, 64)+","+strconv.FormatFloat(py, 'f', 1, 64))
				if len(tl) <= chartMaxPoints {
					fmt.Fprintf(&marks, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s %s: %.0f%%, %d seeders, %d leechers, %d representatives</title></circle>`,
						px, py, color, html.EscapeString(rack), sm.At.UTC().Format("15:04:05"), 100*p, r.Seeders, r.Leechers, r.Representatives)
				}
			}
		}
		fmt.Fprintf(&b, `<g data-rack="%s" data-points="%d">`, html.EscapeString(rack), n)
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"><title>%s</title></polyline>`, color, dash, strings.Join(pts, " "), html.EscapeString(rack))
		}
		b.WriteString(marks.String())
		b.WriteString(`</g>`)

		// Legend.
		ly := chartTop + 6 + i*16
		lx := chartLeft + chartPlotW + 16
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, lx, lx+chartLegendLine, ly, ly, color, dash)
		label, fill := html.EscapeString(rack), "#1d232b"
		if reason := stuck[rack]; reason != "" {
			label += " · stuck: " + strings.ReplaceAll(reason, "_", " ")
			fill = chartStuckColor
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s" data-legend="%s">%s</text>`, lx+chartLegendLine+6, ly+4, chartFont, fill, html.EscapeString(rack), label)
	}
	if extra := len(racks) - len(drawn); extra > 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s">and %d more racks</text>`, chartLeft+chartPlotW+16, chartTop+6+len(drawn)*16+4, chartFont, chartAxisColor, extra)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// timelineFor reads an active transfer's timeline for its page; a read
// that fails draws no chart rather than failing the page.
func (s *Server) timelineFor(r *http.Request, h storage.InfoHash) []storage.TimelineSample {
	tl, err := s.store.Timeline(r.Context(), h, "")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.warn.log(s.log, "timeline: read failed", "infohash", h.String(), "err", err)
		return nil
	}
	if tl == nil {
		tl = []storage.TimelineSample{}
	}
	return tl
}
