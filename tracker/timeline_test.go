package tracker

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"racktracker/storage"
	"racktracker/storage/storagetest"
)

func TestStuckRacks(t *testing.T) {
	rk := func(name string, s, l, r int, left, minLeft int64) storage.TimelineRack {
		return storage.TimelineRack{Rack: name, Seeders: s, Leechers: l, Representatives: r, Left: left, MinLeft: minLeft}
	}
	ref := &storage.TimelineSample{Racks: []storage.TimelineRack{
		rk("r1", 1, 0, 0, 0, 0),
		rk("r2", 0, 2, 1, 200, 90),
		rk("r3", 0, 2, 1, 200, 90),
	}}
	for _, tc := range []struct {
		name string
		cur  []storage.TimelineRack
		ref  *storage.TimelineSample
		want map[string]string
	}{
		{"all progress", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 2, 1, 150, 80)}, ref, map[string]string{}},
		{"r3 alone without progress", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 2, 1, 200, 90)}, ref, map[string]string{"r3": stuckNoProgress}},
		{"a joiner does not hide progress", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 3, 1, 250, 80)}, ref, map[string]string{}},
		{"a leecher leaving is no progress", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 1, 1, 110, 110)}, ref, map[string]string{"r3": stuckNoProgress}},
		{"the rest passing the most advanced leecher, which left", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 1, 1, 80, 80)}, ref, map[string]string{}},
		{"a new seeder is progress", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 1, 1, 1, 100, 100)}, ref, map[string]string{}},
		{"nobody progresses: the swarm's problem", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 200, 90), rk("r3", 0, 2, 1, 200, 90)}, ref, map[string]string{}},
		{"too young to judge progress", []storage.TimelineRack{rk("r2", 0, 2, 1, 100, 40), rk("r3", 0, 2, 1, 200, 90)}, nil, map[string]string{}},
		{"leechers without representative", []storage.TimelineRack{rk("r2", 0, 2, 0, 100, 40)}, nil, map[string]string{"r2": stuckNoRepresentative}},
		{"a rack done is not stuck", []storage.TimelineRack{rk("r1", 1, 0, 0, 0, 0), rk("r2", 0, 2, 1, 100, 40), rk("r3", 2, 0, 1, 0, 0)}, ref, map[string]string{}},
		{"a rack that joined later is not judged", []storage.TimelineRack{rk("r2", 0, 2, 1, 100, 40), rk("r4", 0, 2, 1, 200, 90)}, ref, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stuckRacks(tc.cur, tc.ref); !maps.Equal(got, tc.want) {
				t.Errorf("stuckRacks = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTimelineStuckRack drives a swarm through the sampler on both
// backends: the timeline grows one sample per period, a rack that stops
// progressing while another does is marked stuck in the API, on the
// dashboard and in /metrics, logged once, and recovers when it progresses.
func TestTimelineStuckRack(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, r *rig) {
		ctx := t.Context()
		var out storagetest.Buffer
		cfg := DefaultConfig()
		cfg.Transfers.TimelineInterval = 10 * time.Second
		cfg.Transfers.StuckAfter = 30 * time.Second
		// Representatives that stall long enough lose the role, which
		// would make r3 stuck for want of one; here it keeps them.
		policy := DefaultRackPolicy()
		policy.RepresentativeStall = 100
		srv := New(cfg, policy, r.store, testRacks(t), Options{
			Now: r.clock.Now, Logger: slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		r.http, r.srv = ts, srv

		if res := r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), ""); res.status != http.StatusCreated {
			t.Fatalf("register: %d", res.status)
		}
		h := mustHash(t, singleHash)
		seed, a1, a2, b1, b2 := newHost(t, "127.0.1.1"), newHost(t, "127.0.2.1"), newHost(t, "127.0.2.2"), newHost(t, "127.0.3.1"), newHost(t, "127.0.3.2")
		left := map[*host]int64{seed: 0, a1: singleLength, a2: singleLength, b1: singleLength, b2: singleLength}
		announce := func() {
			for _, hh := range []*host{seed, a1, a2, b1, b2} {
				r.announce(t, hh, params{hash: h, port: 6881, left: left[hh]})
			}
		}
		step := func() {
			t.Helper()
			r.clock.Advance(10 * time.Second)
			announce()
			srv.sample(ctx)
		}
		announce()
		srv.sample(ctx)
		// r2 progresses, r3 does not.
		for range 4 {
			left[a1] -= 10000
			left[a2] -= 8000
			step()
		}
		detail := func() transferDetailJSON {
			t.Helper()
			res := r.api(t, "GET", "/api/transfers/"+singleHash, nil, "")
			var d transferDetailJSON
			if err := json.Unmarshal(res.body, &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
		d := detail()
		if len(d.Timeline) != 5 {
			t.Errorf("timeline has %d samples after 5 periods, want 5", len(d.Timeline))
		}
		if last := d.Timeline[len(d.Timeline)-1]; len(last.Racks) != 3 || last.Racks[1].Progress == nil || *last.Racks[1].Progress <= 0 || *last.Racks[2].Progress != 0 {
			t.Errorf("last sample %+v, want r2 above 0 and r3 at 0", last)
		}
		stuckOf := func(d transferDetailJSON) map[string]string {
			m := map[string]string{}
			for _, rk := range d.Racks {
				if rk.Stuck != nil {
					m[rk.Rack] = rk.Stuck.Reason
				}
			}
			return m
		}
		if got := stuckOf(d); !maps.Equal(got, map[string]string{"r3": stuckNoProgress}) {
			t.Errorf("stuck racks in the API %v, want r3 no_progress", got)
		}
		page := r.dashboard(t, "/transfers/"+singleHash)
		if rows := htmlElements(page.doc, hasClass("stuckrow")); len(rows) != 1 || attrOf(rows[0], "data-rack") != "r3" {
			t.Errorf("dashboard marks %d rows stuck, want r3 alone", len(rows))
		}
		if svg := htmlElements(page.doc, hasAttr("data-chart")); len(svg) != 1 || attrOf(svg[0], "data-samples") != "5" {
			t.Errorf("dashboard has %d charts, want one of 5 samples", len(svg))
		}
		if lines := htmlElements(page.doc, hasAttr("data-points")); len(lines) != 3 {
			t.Errorf("chart draws %d racks, want 3", len(lines))
		}
		fams := scrapeMetrics(t, r)
		if v, _ := metricValue(fams, "racktracker_stuck_racks", map[string]string{"reason": stuckNoProgress}); v != 1 {
			t.Errorf("racktracker_stuck_racks{no_progress} = %v, want 1", v)
		}
		if v, ok := metricValue(fams, "racktracker_rack_stuck", map[string]string{"infohash": singleHash, "rack": "r3", "reason": stuckNoProgress}); !ok || v != 1 {
			t.Errorf("racktracker_rack_stuck for r3 = %v (%v), want 1", v, ok)
		}

		// Still stuck: no second line. Then r3 progresses and recovers.
		step()
		left[b1] -= 5000
		step()
		if got := stuckOf(detail()); len(got) != 0 {
			t.Errorf("stuck racks after r3 progressed: %v", got)
		}
		if v, ok := metricValue(scrapeMetrics(t, r), "racktracker_rack_stuck", map[string]string{"infohash": singleHash, "rack": "r3", "reason": stuckNoProgress}); ok {
			t.Errorf("racktracker_rack_stuck for r3 still exported (%v) after recovery", v)
		}
		var stuckLines, recovered int
		for _, l := range logLines(t, &out) {
			switch l["msg"] {
			case "rack stuck":
				stuckLines++
				if l["rack"] != "r3" || l["infohash"] != singleHash || l["reason"] != stuckNoProgress || l["level"] != "WARN" {
					t.Errorf("stuck line %v", l)
				}
			case "rack recovered":
				recovered++
				if l["rack"] != "r3" || l["level"] != "WARN" {
					t.Errorf("recovered line %v", l)
				}
			}
		}
		if stuckLines != 1 || recovered != 1 {
			t.Errorf("%d stuck and %d recovered lines, want one each", stuckLines, recovered)
		}

		// A second tracker process sampling the same period adds nothing.
		other := New(cfg, policy, r.store, testRacks(t), Options{Now: r.clock.Now})
		other.sample(ctx)
		if n := len(detail().Timeline); n != 7 {
			t.Errorf("timeline has %d samples after a second process sampled, want 7", n)
		}

		// The deactivated run keeps its timeline.
		res := r.api(t, "DELETE", "/api/transfers/"+singleHash, nil, "")
		var gone transferJSON
		json.Unmarshal(res.body, &gone)
		if gone.Deregistered == nil {
			t.Fatalf("DELETE answered %s", res.body)
		}
		run := r.api(t, "GET", "/api/transfers/"+singleHash+"/runs/"+*gone.Deregistered, nil, "")
		var rj runJSON
		if err := json.Unmarshal(run.body, &rj); err != nil || run.status != http.StatusOK || len(rj.Timeline) != 7 {
			t.Fatalf("run timeline: status %d, %d samples, %v; want 200 and 7", run.status, len(rj.Timeline), err)
		}
		// The run knows its length: r2's progress is its share held, not
		// its seeders' share (0).
		if p := rj.Timeline[6].Racks[1].Progress; p == nil || *p <= 0 {
			t.Errorf("run's last sample: r2 progress %v, want above 0", p)
		}
		if p := r.dashboard(t, "/transfers/"+singleHash+"/runs/"+*gone.Deregistered); p.status != http.StatusOK || len(htmlElements(p.doc, hasAttr("data-chart"))) != 1 {
			t.Errorf("run page: status %d, want 200 with a chart", p.status)
		}
		if res := r.api(t, "GET", "/api/transfers/"+singleHash+"/runs/yesterday", nil, ""); res.status != http.StatusBadRequest {
			t.Errorf("run yesterday: status %d, want 400", res.status)
		}
		srv.sample(ctx)
		if v, _ := metricValue(scrapeMetrics(t, r), "racktracker_stuck_racks", map[string]string{"reason": stuckNoProgress}); v != 0 {
			t.Errorf("racktracker_stuck_racks after deactivation = %v, want 0", v)
		}
	})
}

// TestTimelineChart: the chart escapes rack names and says so when there is
// nothing to draw.
func TestTimelineChart(t *testing.T) {
	at := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	tl := []storage.TimelineSample{
		{At: at, Racks: []storage.TimelineRack{{Rack: "<r1>", Leechers: 1, Representatives: 1, Left: 100}}},
		{At: at.Add(time.Minute), Racks: []storage.TimelineRack{{Rack: "<r1>", Leechers: 1, Representatives: 1, Left: 50}}},
	}
	svg := string(timelineChart(tl, 100, map[string]string{"<r1>": stuckNoProgress}, time.Time{}))
	if strings.Contains(svg, "<r1>") || !strings.Contains(svg, "&lt;r1&gt;") || !strings.Contains(svg, "stuck: no progress") {
		t.Errorf("chart does not escape or mark the rack: %s", svg)
	}
	if !strings.Contains(svg, `points="48.0,250.0 890.0,132.0"`) {
		t.Errorf("chart points, want 0%% at the left and 50%% at the right: %s", svg)
	}
	if empty := string(timelineChart(nil, 100, nil, time.Time{})); !strings.Contains(empty, "No sample yet") {
		t.Errorf("empty chart %s", empty)
	}
}

func attrOf(n *html.Node, key string) string { v, _ := htmlAttr(n, key); return v }
