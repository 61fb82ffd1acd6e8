package main

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestShare checks the max-min fair shares of a few link layouts.
func TestShare(t *testing.T) {
	tests := []struct {
		name  string
		caps  []float64
		flows [][]int32 // links of each flow
		want  []float64
	}{
		{"one link, two flows", []float64{10}, [][]int32{{0}, {0}}, []float64{5, 5}},
		{"a flow limited elsewhere leaves the rest to the other", []float64{10, 2}, [][]int32{{0, 1}, {0}}, []float64{2, 8}},
		{"chain", []float64{6, 6, 6}, [][]int32{{0, 1, 2}, {0}, {1}, {2}}, []float64{3, 3, 3, 3}},
		{"three on a slow link, one of them also on a fast one", []float64{3, 100}, [][]int32{{0}, {0}, {0, 1}, {1}}, []float64{1, 1, 1, 99}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{caps: tt.caps}
			for _, ls := range tt.flows {
				var f flow
				copy(f.links[:], ls)
				f.nl = int8(len(ls))
				w.flows = append(w.flows, f)
			}
			w.share()
			for i, f := range w.flows {
				if math.Abs(f.rate-tt.want[i]) > 0.06*tt.want[i] {
					t.Errorf("flow %d: rate %.3f, want %.3f", i, f.rate, tt.want[i])
				}
			}
			used := make([]float64, len(tt.caps))
			for _, f := range w.flows {
				for _, l := range f.links[:f.nl] {
					used[l] += f.rate
				}
			}
			for l, u := range used {
				if u > tt.caps[l]*1.0001 {
					t.Errorf("link %d carries %.3f, above its capacity %.3f", l, u, tt.caps[l])
				}
			}
		})
	}
}

// TestRun simulates a small rollout with both handouts through the real
// tracker and store: every host completes, and the rack-aware handout moves
// fewer copies into the racks than the random one; also with
// representatives leaving, and with tit-for-tat choking (and the trace).
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"kill", []string{"-kill"}},
		{"tft", []string{"-tft", "-trace", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"-racks", "3", "-hosts", "4", "-payload", "4", "-piece", "64", "-ratios", "3"}, tc.extra...)
			if err := run(t.Context(), args, &out, &errb); err != nil {
				t.Fatalf("run: %v\n%s", err, errb.String())
			}
			t.Logf("%s%s", errb.String(), out.String())
			var local, random float64 = -1, -1
			for line := range strings.Lines(out.String()) {
				f := strings.Split(line, "|")
				if len(f) < 6 || !strings.Contains(f[1], " x ") {
					continue
				}
				if strings.Contains(f[3], "unfinished") {
					t.Errorf("hosts did not finish: %s", line)
				}
				var mean, mx float64
				if _, err := fmt.Sscanf(strings.TrimSpace(f[4]), "%f / %f", &mean, &mx); err != nil {
					t.Fatalf("copies %q: %v", f[4], err)
				}
				switch strings.TrimSpace(f[3]) {
				case "local":
					local = mean
				case "random":
					random = mean
				}
			}
			if local < 0 || random < 0 {
				t.Fatalf("no local and random rows in:\n%s", out.String())
			}
			if local >= random {
				t.Errorf("copies per rack: local %.2f, random %.2f; want fewer with local", local, random)
			}
		})
	}
}
