package tracker

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"racktracker/storage"
)

// snapshotHealth says what /healthz adds to "ok" about the embedded
// store's snapshots: "" while they succeed (or with an external Redis).
// A failing snapshot leaves the tracker serving, so /healthz stays 200 and
// says "degraded": a load balancer or an orchestrator that pulled or
// restarted the tracker on it would lose, in the restart, exactly what
// the snapshots failed to save. /metrics carries the same for alerts.
func snapshotHealth(st storage.SnapshotStatus) string {
	if !st.Degraded() {
		return ""
	}
	return fmt.Sprintf("degraded: snapshots failing since %s (%d failures since start); the last good one is from %s and a restart would lose what came after: %s",
		st.FailingSince.UTC().Format(time.RFC3339), st.Failures, st.LastSuccess.UTC().Format(time.RFC3339), st.LastError)
}

// snapshotCollector reads the store's snapshot status at each scrape of
// /metrics. With an external Redis it has nothing to say.
type snapshotCollector struct {
	status func() storage.SnapshotStatus
}

var (
	descSnapLast = prometheus.NewDesc("racktracker_snapshot_last_success_timestamp_seconds",
		"Unix time of the point the snapshot file holds: the last good snapshot, or the restore at start.", nil, nil)
	descSnapFailing = prometheus.NewDesc("racktracker_snapshot_failing",
		"1 while the latest snapshot failed (see /healthz for why), else 0.", nil, nil)
	descSnapFailures = prometheus.NewDesc("racktracker_snapshot_failures_total",
		"Snapshots that failed since start.", nil, nil)
	descSnapKeys = prometheus.NewDesc("racktracker_snapshot_keys",
		"Keys in the embedded store at the latest snapshot.", nil, nil)
	descDeadKeys = prometheus.NewDesc("racktracker_embedded_dead_key_names",
		"Names of deleted keys the embedded store still keeps bookkeeping for, at the latest snapshot; a rebuild lets them go.", nil, nil)
	descRebuilds = prometheus.NewDesc("racktracker_embedded_rebuilds_total",
		"Times the embedded store was rebuilt to let go of dead key names.", nil, nil)
)

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSnapLast, descSnapFailing, descSnapFailures, descSnapKeys, descDeadKeys, descRebuilds} {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if !st.Embedded {
		return
	}
	failing := 0.0
	if st.Degraded() {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(descSnapLast, prometheus.GaugeValue, float64(st.LastSuccess.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(descSnapFailing, prometheus.GaugeValue, failing)
	ch <- prometheus.MustNewConstMetric(descSnapFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descSnapKeys, prometheus.GaugeValue, float64(st.Keys))
	if st.DeadKeyNames >= 0 {
		ch <- prometheus.MustNewConstMetric(descDeadKeys, prometheus.GaugeValue, float64(st.DeadKeyNames))
	}
	ch <- prometheus.MustNewConstMetric(descRebuilds, prometheus.CounterValue, float64(st.Rebuilds))
}
