package tracker

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"racktracker/storage"
)

// getHealth is /healthz's status and body.
func getHealth(t *testing.T, r *rig) (int, string) {
	t.Helper()
	res, err := http.Get(r.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestHealthzSnapshotFailing: while the embedded store's snapshots fail,
// /healthz says degraded and why (still 200: the tracker serves), and
// /metrics has the failures and the time of the last good snapshot; both
// recover with the next good snapshot. With an external Redis neither
// speaks of snapshots.
func TestHealthzSnapshotFailing(t *testing.T) {
	ctx := context.Background()
	eachBackend(t, nil, func(t *testing.T, r *rig) {
		if r.backend == storage.BackendRedis {
			if code, body := getHealth(t, r); code != http.StatusOK || body != "ok\n" {
				t.Errorf("/healthz = %d %q, want 200 ok", code, body)
			}
			if _, ok := metricValue(scrapeMetrics(t, r), "racktracker_snapshot_failures_total", nil); ok {
				t.Errorf("/metrics has racktracker_snapshot_failures_total with an external Redis")
			}
			return
		}
		path := r.store.SnapshotStatus().Path
		if err := r.store.Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		good, _ := metricValue(scrapeMetrics(t, r), "racktracker_snapshot_last_success_timestamp_seconds", nil)
		if good == 0 {
			t.Fatalf("racktracker_snapshot_last_success_timestamp_seconds missing or 0")
		}

		// A directory where the snapshot goes: every write fails, as it
		// does for root (who ignores permissions) on a full disk.
		os.Remove(path)
		if err := os.MkdirAll(filepath.Join(path, "in the way"), 0o755); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := r.store.Snapshot(ctx); err == nil {
				t.Fatal("Snapshot with a directory in the way: error = nil")
			}
		}
		code, body := getHealth(t, r)
		if code != http.StatusOK || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, path) || !strings.Contains(body, "2 failures") {
			t.Errorf("/healthz while snapshots fail = %d %q, want 200, degraded, the path and 2 failures", code, body)
		}
		fams := scrapeMetrics(t, r)
		for name, want := range map[string]float64{
			"racktracker_snapshot_failures_total":                 2,
			"racktracker_snapshot_failing":                        1,
			"racktracker_snapshot_last_success_timestamp_seconds": good,
		} {
			if got, ok := metricValue(fams, name, nil); !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
			}
		}

		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := r.store.Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot after the way is clear: %v", err)
		}
		if code, body := getHealth(t, r); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz after recovering = %d %q, want 200 ok", code, body)
		}
		fams = scrapeMetrics(t, r)
		if got, _ := metricValue(fams, "racktracker_snapshot_failing", nil); got != 0 {
			t.Errorf("racktracker_snapshot_failing after recovering = %v, want 0", got)
		}
		if got, _ := metricValue(fams, "racktracker_snapshot_last_success_timestamp_seconds", nil); got <= good {
			t.Errorf("last success after recovering = %v, want after %v", got, good)
		}
	})
}
