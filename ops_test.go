package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
)

// TestVersion: -version prints one line and starts nothing.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-version", "-config", "/nonexistent/tracker.yaml"}, &out, io.Discard); err != nil {
		t.Fatalf("run -version: %v", err)
	}
	if line := out.String(); !strings.HasPrefix(line, "racktracker ") || strings.Count(line, "\n") != 1 || !strings.Contains(line, "go1.") {
		t.Errorf("-version printed %q, want one line \"racktracker <version> ... go1.x\"", line)
	}
	if err := run(context.Background(), []string{"-log-format", "xml"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("run -log-format xml = %v, want an error naming -log-format", err)
	}
}

// TestLogFormatJSON: with -log-format json every line on stderr is one JSON
// object; at debug an announce gets its request line with the stable keys.
func TestLogFormatJSON(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "listen: 127.0.0.1:0\nstorage:\n  embedded:\n    snapshot_path: "+dir+"/s\n")
	s := start(t, "-config", cfg, "-log-format", "json", "-log-level", "debug")
	hash := strings.Repeat("\x43", 20)
	q := url.Values{"info_hash": {hash}, "peer_id": {"-RT0001-000000000001"}, "port": {"6881"}, "left": {"0"}}
	httpGet(t, s.base+"/announce?"+q.Encode())
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", l, err)
		}
		if m["msg"] == "request" && m["kind"] == "announce" {
			found = true
			if m["infohash"] != strings.Repeat("43", 20) || m["outcome"] != "ok" || !strings.HasPrefix(m["peer"].(string), "127.0.0.1:6881") {
				t.Errorf("announce line %v, want infohash, outcome ok and peer", m)
			}
		}
	}
	if !found {
		t.Errorf("no request line for the announce in %q", s.stderr.String())
	}
}
