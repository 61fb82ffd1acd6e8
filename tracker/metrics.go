package tracker

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's own: a registry per Server, so that two servers
// in one process (tests, for one) never share counters.
type metrics struct {
	reg        *prometheus.Registry
	announces  *prometheus.CounterVec
	scrapes    prometheus.Counter
	handout    prometheus.Histogram
	elections  prometheus.Counter
	demotions  prometheus.Counter
	expired    prometheus.Counter
	storageDur *prometheus.HistogramVec
	transfers  prometheus.Gauge
	peers      *prometheus.GaugeVec

	// reqs are the counts of the request log's summary (requestlog.go).
	reqs reqStats

	identity *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racktracker_announces_total",
			Help: "Announces by event and result (ok, bad_request, unregistered, deactivated, unregistered_cap, storage_error, canceled).",
		}, []string{"event", "result"}),
		scrapes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racktracker_scrapes_total", Help: "Scrape requests.",
		}),
		handout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "racktracker_handout_peers",
			Help:    "Peers handed out per announce.",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100, 200},
		}),
		elections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racktracker_representative_elections_total", Help: "Representatives elected.",
		}),
		demotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racktracker_representative_demotions_total", Help: "Representatives demoted for stalling.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racktracker_expired_peers_total", Help: "Peers expired for not announcing within the peer timeout.",
		}),
		storageDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "racktracker_storage_seconds",
			Help:    "Latency of storage calls by operation and result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op", "result"}),
		transfers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "racktracker_active_transfers", Help: "Active transfers, as of the last maintenance pass.",
		}),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "racktracker_current_peers", Help: "Current peers over all active transfers, by state, as of the last maintenance pass.",
		}, []string{"state"}),
		identity: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racktracker_identity_conflicts_total",
			Help: "Announces that break one client per IP: shared_ip (another client was current on the IP: NAT, containers), dual_stack (one client over IPv4 and IPv6).",
		}, []string{"kind"}),
	}
	for _, kind := range []string{"shared_ip", "dual_stack"} {
		m.identity.WithLabelValues(kind) // shown at 0 before the first
	}
	m.reg.MustRegister(m.announces, m.scrapes, m.handout, m.elections, m.demotions, m.expired,
		m.storageDur, m.transfers, m.peers, m.identity,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// announce counts one announce; an empty event is reported as "none".
func (m *metrics) announce(event, result string) {
	if event == "" {
		event = "none"
	}
	m.announces.WithLabelValues(event, result).Inc()
	m.reqs.announce(result)
}

func (m *metrics) storage(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.storageDur.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

// refreshGauges reads the swarm totals once per maintenance pass, rather
// than on every scrape of /metrics.
func (m *metrics) refreshGauges(ctx context.Context, st Store) {
	start := time.Now()
	t, err := st.Totals(ctx)
	m.storage("totals", start, err)
	if err != nil {
		return
	}
	m.transfers.Set(float64(t.Transfers))
	m.peers.WithLabelValues("seeder").Set(float64(t.Seeders))
	m.peers.WithLabelValues("leecher").Set(float64(t.Leechers))
}
