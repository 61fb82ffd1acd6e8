package tracker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"racktracker/storage"
	"racktracker/storage/storagetest"
)

// logLines decodes the JSON log lines written to b so far.
func logLines(t *testing.T, b *storagetest.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRequestLog: at debug, every kind of request gets one "request" line
// with its outcome, status and peer, and, where it names one, the transfer.
func TestRequestLog(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, nil)
	var out storagetest.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := DefaultConfig()
	cfg.Transfers.AllowUnregistered = false
	srv := New(cfg, DefaultRackPolicy(), r.store, testRacks(t), Options{Now: r.clock.Now, Logger: log})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	r.http = ts

	reg := apiCall(t, "POST", ts.URL+"/api/transfers", torrentFile(t, "single.torrent"), "", "")
	if reg.status != http.StatusCreated {
		t.Fatalf("register: status %d", reg.status)
	}
	h := mustHash(t, singleHash)
	h1 := newHost(t, "127.0.2.7")
	r.announce(t, h1, params{hash: h, port: 6881, left: 10, event: "started"})
	r.announce(t, h1, params{rawHash: "0123456789012345678", port: 6881})
	var other storage.InfoHash
	other[0] = 7
	r.announce(t, h1, params{hash: other, port: 6881})
	r.get(t, h1, "/scrape?info_hash="+url.QueryEscape(string(h[:])))
	resp, err := h1.client.Get(ts.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	apiCall(t, "GET", ts.URL+"/api/transfers/xyz", nil, "", "")

	type want struct {
		kind, outcome, status, infohash, peer, rack, reason string
	}
	wants := []want{
		{"admin", "ok", "201", "", "", "", ""},
		{"announce", "ok", "200", singleHash, "127.0.2.7:6881", "r2", ""},
		{"announce", "bad_request", "200", "", "127.0.2.7:", "", "info_hash must be 20 bytes, got 19"},
		{"announce", "unregistered", "200", other.String(), "127.0.2.7:6881", "r2", failureUnregistered},
		{"scrape", "ok", "200", singleHash, "127.0.2.7:", "", ""},
		{"other", "error", "404", "", "127.0.2.7:", "", ""},
		{"admin", "error", "400", "", "127.0.0.1:", "", `bad info hash "xyz": want 40 hex digits`},
	}
	var got []map[string]any
	for _, l := range logLines(t, &out) {
		if l["msg"] == "request" {
			got = append(got, l)
		}
	}
	if len(got) != len(wants) {
		t.Fatalf("%d request lines, want %d: %v", len(got), len(wants), got)
	}
	str := func(v any) string {
		switch v := v.(type) {
		case nil:
			return ""
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return v.(string)
		}
	}
	for i, w := range wants {
		l := got[i]
		if l["level"] != "DEBUG" {
			t.Errorf("line %d level %v, want DEBUG", i, l["level"])
		}
		for _, f := range []struct{ key, want string }{
			{"kind", w.kind}, {"outcome", w.outcome}, {"status", w.status},
			{"infohash", w.infohash}, {"rack", w.rack}, {"reason", w.reason},
		} {
			if g := str(l[f.key]); g != f.want {
				t.Errorf("line %d (%s %v): %s = %q, want %q", i, w.kind, l["path"], f.key, g, f.want)
			}
		}
		if p := str(l["peer"]); !strings.HasPrefix(p, w.peer) {
			t.Errorf("line %d: peer %q, want prefix %q", i, p, w.peer)
		}
		if _, ok := l["took"]; !ok {
			t.Errorf("line %d has no took", i)
		}
	}

	// The summary counts the same requests by outcome and reason.
	var summary storagetest.Buffer
	slog.New(slog.NewJSONHandler(&summary, nil)).LogAttrs(t.Context(), slog.LevelInfo, "requests", srv.metrics.reqs.summary()...)
	l := logLines(t, &summary)[0]
	ann := l["announce"].(map[string]any)
	for k, v := range map[string]float64{"ok": 1, "bad_request": 1, "unregistered": 1, "storage_error": 0} {
		if ann[k] != v {
			t.Errorf("summary announce.%s = %v, want %v", k, ann[k], v)
		}
	}
	if l["announces"] != 3.0 || l["scrapes"] != 1.0 || l["unrouted"] != 1.0 {
		t.Errorf("summary announces %v scrapes %v unrouted %v, want 3 1 1", l["announces"], l["scrapes"], l["unrouted"])
	}
	fails := l["failures"].(map[string]any)
	if fails["info_hash must be 20 bytes, got 19"] != 1.0 || fails[failureUnregistered] != 1.0 || len(fails) != 2 {
		t.Errorf("summary failures %v", fails)
	}
	// and starts over.
	if again := srv.metrics.reqs.summary(); again[0].Value.Int64() != 0 {
		t.Errorf("second summary counts %v announces, want 0", again[0].Value)
	}
}

// TestRequestLogInfoAllocs: at info level the request log adds no
// allocation to a request.
func TestRequestLogInfoAllocs(t *testing.T) {
	srv := New(DefaultConfig(), DefaultRackPolicy(), nil, testRacks(t), Options{
		Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /announce", func(w http.ResponseWriter, r *http.Request) {
		if noteOf(w) != nil {
			t.Error("a note at info level")
		}
		srv.metrics.reqs.announce("ok")
	})
	h := srv.logRequests(mux)
	req := httptest.NewRequest("GET", "/announce", nil)
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n != 0 {
		t.Errorf("%v allocations per request at info level, want 0", n)
	}
}
