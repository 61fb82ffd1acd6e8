package tracker

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"racktracker/storage"
)

// scrapeMetrics reads /metrics and parses the text format.
func scrapeMetrics(t testing.TB, r *rig) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(r.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", res.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the series of name with exactly these labels:
// a counter's or gauge's value, a histogram's sample count. ok is false when
// there is no such series.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics runs a scripted sequence (a registration, announces with each
// event, a bad request, a scrape, an expiry pass) and reads the counters
// back from /metrics.
func TestMetrics(t *testing.T) {
	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil) // one representative per rack
			h := mustHash(t, singleHash)
			local := newHost(t, "127.0.0.1")
			r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register", http.StatusCreated, &transferJSON{})

			for _, s := range []swarmStep{
				{"10.1.0.1", 6001, "started", singleLength, 0, 0},   // a: r1's leecher, elected
				{"10.2.0.1", 6004, "started", 0, 0, 0},              // b: r2's seeder
				{"10.1.0.1", 6001, "", 50000, 0, 50000},             // a progresses
				{"10.1.0.1", 6001, "completed", 0, 0, singleLength}, // a completes, still r1's representative
				{"10.1.0.2", 6002, "started", singleLength, 0, 0},   // c: r1's slot is taken
				{"10.1.0.2", 6002, "stopped", singleLength, 0, 0},   // c leaves
			} {
				r.clock.Advance(time.Second)
				resp := r.announce(t, local, params{hash: h, port: s.port, event: s.event, left: s.left, downloaded: s.downloaded, extra: "ip=" + s.ip})
				if resp.Failure != "" {
					t.Fatalf("announce %+v: %s", s, resp.Failure)
				}
			}
			if resp := r.announce(t, local, params{hash: h, omitPort: true}); resp.Failure == "" {
				t.Fatal("announce without a port succeeded")
			}
			r.get(t, local, "/scrape?info_hash="+url.QueryEscape(string(h[:])))

			// b announces again at 60s; at 100s a (last seen at 4s) is past
			// the 90s peer timeout, b is not.
			r.clock.Advance(54 * time.Second)
			if resp := r.announce(t, local, params{hash: h, port: 6004, extra: "ip=10.2.0.1"}); resp.Failure != "" {
				t.Fatalf("b's announce: %s", resp.Failure)
			}
			r.clock.Advance(40 * time.Second)
			r.srv.maintain(context.Background())

			fams := scrapeMetrics(t, r)
			for _, tc := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"racktracker_announces_total", map[string]string{"event": "started", "result": "ok"}, 3},
				{"racktracker_announces_total", map[string]string{"event": "none", "result": "ok"}, 2},
				{"racktracker_announces_total", map[string]string{"event": "completed", "result": "ok"}, 1},
				{"racktracker_announces_total", map[string]string{"event": "stopped", "result": "ok"}, 1},
				{"racktracker_announces_total", map[string]string{"event": "none", "result": "bad_request"}, 1},
				{"racktracker_scrapes_total", nil, 1},
				{"racktracker_representative_elections_total", nil, 1},
				{"racktracker_representative_demotions_total", nil, 0},
				{"racktracker_expired_peers_total", nil, 1},
				{"racktracker_handout_peers", nil, 7}, // every announce that succeeded
				{"racktracker_storage_seconds", map[string]string{"op": "register", "result": "ok"}, 1},
				{"racktracker_storage_seconds", map[string]string{"op": "announce", "result": "ok"}, 7},
				{"racktracker_storage_seconds", map[string]string{"op": "scrape", "result": "ok"}, 1},
				{"racktracker_storage_seconds", map[string]string{"op": "expire", "result": "ok"}, 1},
				{"racktracker_storage_seconds", map[string]string{"op": "totals", "result": "ok"}, 1},
				{"racktracker_active_transfers", nil, 1},
				{"racktracker_current_peers", map[string]string{"state": "seeder"}, 1},
				{"racktracker_current_peers", map[string]string{"state": "leecher"}, 0},
			} {
				got, ok := metricValue(fams, tc.name, tc.labels)
				if !ok || got != tc.want {
					t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
				}
			}
			for _, labels := range []map[string]string{
				{"event": "started", "result": "storage_error"},
				{"event": "none", "result": "unregistered"},
			} {
				if v, ok := metricValue(fams, "racktracker_announces_total", labels); ok {
					t.Errorf("racktracker_announces_total%v = %v, want no such series", labels, v)
				}
			}
		})
	}
}
