package rollout

import (
	"math"
	"testing"
	"time"
)

func TestTimes(t *testing.T) {
	tests := []struct {
		name                 string
		done                 []time.Duration
		rack                 []int
		last, median, spread time.Duration
		ok                   bool
	}{
		{"none", nil, nil, 0, 0, 0, false},
		{"one host", []time.Duration{5}, []int{1}, 5, 5, 0, true},
		// Rack 1 completes at 4, rack 2 at 9: the last rack 5 behind.
		{"two racks", []time.Duration{9, 1, 4, 3}, []int{2, 2, 1, 1}, 9, 4, 5, true},
		{"one rack", []time.Duration{2, 7, 3}, []int{1, 1, 1}, 7, 3, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last, median, spread, ok := Times(tt.done, tt.rack)
			if last != tt.last || median != tt.median || spread != tt.spread || ok != tt.ok {
				t.Errorf("Times(%v, %v) = %v, %v, %v, %v; want %v, %v, %v, %v",
					tt.done, tt.rack, last, median, spread, ok, tt.last, tt.median, tt.spread, tt.ok)
			}
		})
	}
	// Seconds as float64, as the simulator keeps them.
	if last, median, spread, ok := Times([]float64{1.5, 0.5}, []int{1, 2}); last != 1.5 || median != 1.5 || spread != 1 || !ok {
		t.Errorf("Times(float64) = %v, %v, %v, %v; want 1.5, 1.5, 1, true", last, median, spread, ok)
	}
}

func TestMeanCopies(t *testing.T) {
	if got := MeanCopies([]float64{1, 2, 1.5}); got != 1.5 {
		t.Errorf("MeanCopies(1, 2, 1.5) = %v, want 1.5", got)
	}
	if got := MeanCopies(nil); !math.IsNaN(got) {
		t.Errorf("MeanCopies(nil) = %v, want NaN", got)
	}
}
