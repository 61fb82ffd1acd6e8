package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"racktracker/storage"
)

// testConfig is the default config on free loopback ports, over an
// embedded store whose snapshot goes to a temp dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Storage.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
	return cfg
}

// TestStart: both listeners serve at the addresses Started reports, Wrap's
// handler sits beside the tracker's, the admin listener is not wrapped,
// and Stop ends in order with the final snapshot written.
func TestStart(t *testing.T) {
	cfg := testConfig(t)
	var calls int
	r, err := Start(Options{
		Config: cfg,
		Wrap: func(h http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello\n") })
			mux.Handle("/", h)
			return mux
		},
		Started: func(Started) { calls++ },
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			r.Stop()
		}
	})
	if calls != 1 || r.Listen == nil || r.Admin == nil || r.Store == nil {
		t.Fatalf("Started called %d times with %+v, want once with both addresses and the store", calls, r.Started)
	}
	public, admin := "http://"+r.Listen.String(), "http://"+r.Admin.String()
	for _, tc := range []struct {
		url      string
		code     int
		contains string
	}{
		{public + "/hello", 200, "hello"},
		{public + "/healthz", 200, "ok"},
		{admin + "/hello", 404, ""},
		{admin + "/api/racks", 200, ""},
	} {
		res, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s = %d %q, want %d with %q", tc.url, res.StatusCode, body, tc.code, tc.contains)
		}
	}
	if _, err := r.Store.Transfer(context.Background(), storage.InfoHash{1}); err == nil {
		t.Errorf("Store.Transfer of an unknown hash = nil error, want one")
	}
	stopped = true
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop = %v, want nil", err)
	}
	if _, err := os.Stat(cfg.Storage.Embedded.SnapshotPath); err != nil {
		t.Errorf("no snapshot after Stop: %v", err)
	}
}

// TestStartRefuses: a start that fails returns why, and releases the store
// it had opened (the snapshot's lock, the listener it had bound).
func TestStartRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Admin.Listen = busy.Addr().String()
	if _, err := Start(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("Start with a busy admin.listen = %v, want an error naming admin.listen", err)
	}
	invalid := testConfig(t)
	invalid.Racks.Handout = "nearest"
	if _, err := Start(Options{Config: invalid}); err == nil || !strings.Contains(err.Error(), "racks.handout") {
		t.Fatalf("Start with racks.handout nearest = %v, want an error naming racks.handout", err)
	}
	// The first start released everything: the same config starts now.
	cfg.Admin.Listen = "127.0.0.1:0"
	r, err := Start(Options{Config: cfg})
	if err != nil {
		t.Fatalf("Start after a failed start = %v, want nil", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop = %v", err)
	}
}
