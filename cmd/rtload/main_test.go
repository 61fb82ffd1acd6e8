package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for rtload's tracker process:
// rtload starts its own executable with serveEnv set.
func TestMain(m *testing.M) {
	if raw, ok := os.LookupEnv(serveEnv); ok {
		if err := serveChild(raw, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "rtload tracker: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunShort runs a small bounded load against the embedded backend and
// checks that it reports throughput and no failures.
func TestRunShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"-hosts", "50", "-racks", "5", "-requests", "200", "-duration", "5s", "-concurrency", "8", "-backends", "embedded", "-json"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v, want nil; stderr:\n%s", args, err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	if len(rep.Backends) != 1 || rep.Backends[0].Backend != "embedded" {
		t.Fatalf("backends = %+v, want embedded only", rep.Backends)
	}
	b := rep.Backends[0]
	for name, p := range map[string]Phase{"hello": b.Hello, "healthz": b.Healthz, "announce": b.Announce} {
		if p.Requests != 200 {
			t.Errorf("%s requests = %d, want 200", name, p.Requests)
		}
		if p.PerSecond <= 0 {
			t.Errorf("%s per_second = %v, want > 0", name, p.PerSecond)
		}
		if p.Failures != 0 {
			t.Errorf("%s failures = %d (%v), want 0", name, p.Failures, p.Reasons)
		}
	}
	if b.ThroughputRatio <= 0 || b.AnnouncePerHello <= 0 {
		t.Errorf("announce/healthz throughput = %v, announce/hello = %v, want > 0", b.ThroughputRatio, b.AnnouncePerHello)
	}
}

// TestRunBurst runs a small burst: every (host, transfer) pair through its
// five announces, in each of two rounds, with CPU read from /proc.
func TestRunBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"-burst", "-hosts", "20", "-racks", "4", "-transfers", "2", "-rounds", "2", "-concurrency", "4", "-backends", "embedded", "-json"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v, want nil; stderr:\n%s", args, err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	b := rep.Backends[0]
	const want = 2 * 5 * 20 * 2 // rounds, steps, hosts, transfers
	for name, p := range map[string]Phase{"hello": b.Hello, "healthz": b.Healthz, "announce": b.Announce} {
		if p.Requests != want || p.Failures != 0 {
			t.Errorf("%s: %d requests, %d failed (%v); want %d, none failed", name, p.Requests, p.Failures, p.Reasons, want)
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil && b.Announce.TrackerCPUus <= 0 {
		t.Errorf("tracker CPU per announce = %v µs, want > 0 (read from /proc)", b.Announce.TrackerCPUus)
	}
}

func TestHostAddr(t *testing.T) {
	tests := []struct {
		i, racks int
		want     string
	}{
		{0, 10, "127.0.1.1"},
		{9, 10, "127.0.10.1"},
		{10, 10, "127.0.1.2"},
		{2499, 10, "127.0.10.250"},
		{2500, 10, "127.1.1.1"},
		{250, 1, "127.1.1.1"},
	}
	for _, tt := range tests {
		got := hostAddr(tt.i, tt.racks)
		if got != netip.MustParseAddr(tt.want) {
			t.Errorf("hostAddr(%d, %d) = %v, want %s", tt.i, tt.racks, got, tt.want)
		}
	}
	// Every host's rack is the one the rack map gives its address.
	cfg := rackConfig(3000, 4)
	for i := range 3000 {
		r := i%4 + 1
		a := hostAddr(i, 4)
		found := false
		for _, c := range cfg.Map[r-1].CIDRs {
			if netip.MustParsePrefix(c).Contains(a) {
				found = true
			}
		}
		if !found {
			t.Fatalf("host %d at %v is not in rack r%d's CIDRs %v", i, a, r, cfg.Map[r-1].CIDRs)
		}
	}
}

func TestFailureReason(t *testing.T) {
	tests := []struct {
		body   string
		want   string
		failed bool
	}{
		{"d14:failure reason12:missing porte", "missing port", true},
		{"d8:completei1e10:incompletei2e8:intervali30e5:peers0:e", "", false},
		{"d14:failure reason99:shorte", "malformed", true},
	}
	for _, tt := range tests {
		got, failed := failureReason([]byte(tt.body))
		if got != tt.want || failed != tt.failed {
			t.Errorf("failureReason(%q) = %q, %v, want %q, %v", tt.body, got, failed, tt.want, tt.failed)
		}
	}
}
