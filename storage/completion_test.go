package storage

import (
	"fmt"
	"testing"
	"time"
)

// TestCompletionCountedOnce: a peer that reaches left=0 counts as one
// completion whether or not it sends "completed" (rtorrent and anacrolix
// never do), and never twice.
func TestCompletionCountedOnce(t *testing.T) {
	type step struct {
		event string
		left  int64
	}
	tests := []struct {
		name  string
		steps []step
		want  int
	}{
		{"completed event", []step{{EventStarted, 100}, {EventNone, 50}, {EventCompleted, 0}}, 1},
		{"left=0 without the event (rtorrent)", []step{{EventStarted, 100}, {EventNone, 50}, {EventNone, 0}}, 1},
		{"left=0, then completed (late event)", []step{{EventStarted, 100}, {EventNone, 0}, {EventCompleted, 0}}, 1},
		{"completed twice", []step{{EventStarted, 100}, {EventCompleted, 0}, {EventCompleted, 0}}, 1},
		{"seeder announcing on", []step{{EventStarted, 100}, {EventNone, 0}, {EventNone, 0}, {EventNone, 0}}, 1},
		{"origin seeder starts complete", []step{{EventStarted, 0}, {EventNone, 0}}, 0},
		{"completed from a peer with no record", []step{{EventCompleted, 0}}, 1},
		{"still leeching", []step{{EventStarted, 100}, {EventNone, 10}}, 0},
		{"stopped before the end", []step{{EventStarted, 100}, {EventStopped, 40}}, 0},
	}
	backends(t, func(t *testing.T, e *env) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := hash(byte(0x30 + i))
				for _, st := range tt.steps {
					e.clock.Advance(time.Minute)
					mustAnnounce(t, e.store, ann(h, "10.0.0.1:6881", "r1", st.event, st.left))
				}
				k := transferKeys(h)
				got := e.raw.Get(t.Context(), k.field("completions")).Val()
				if want := fmt.Sprint(tt.want); got != want && !(tt.want == 0 && got == "") {
					t.Errorf("completions = %q, want %s", got, want)
				}
				first := e.raw.Get(t.Context(), k.field("first_completed")).Val()
				if (tt.want > 0) != (first != "") {
					t.Errorf("first_completed = %q with %d completions", first, tt.want)
				}
			})
		}
	})
}
