package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRegisterAttaches: a .torrent registered for a transfer that announces
// alone activated attaches its name, length and file, keeping the peers;
// a second registration is refused.
func TestRegisterAttaches(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		h := hash(0x81)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		registered := e.raw.Get(ctx, transferKeys(h).field("registered")).Val()
		e.clock.Advance(time.Minute)
		torrent := []byte("d4:infod4:name3:abcee")
		if err := e.store.Register(ctx, h, "abc", 3, torrent); err != nil {
			t.Fatalf("Register of an announce-activated transfer = %v, want nil", err)
		}
		st, err := e.store.Transfer(ctx, h)
		if err != nil || st.Name != "abc" || st.Length != 3 || st.Leechers != 1 || st.Registered != registered {
			t.Errorf("Transfer = %+v, %v; want name abc, length 3, its leecher, registered %s", st, err, registered)
		}
		if got, name, err := e.store.Torrent(ctx, h); err != nil || string(got) != string(torrent) || name != "abc" {
			t.Errorf("Torrent = %q, %q, %v; want the upload named abc", got, name, err)
		}
		if err := e.store.Register(ctx, h, "abc", 3, torrent); !errors.Is(err, ErrExists) {
			t.Errorf("second Register = %v, want ErrExists", err)
		}
	})
}

// TestMaxUnregistered: past the cap, an announce for an unknown transfer is
// refused and writes nothing; registered transfers do not count, and a
// deactivation frees a place.
func TestMaxUnregistered(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		capped := func(h InfoHash) Announce {
			a := ann(h, "10.0.0.1:1", "r1", EventStarted, 100)
			a.MaxUnregistered = 2
			return a
		}
		for _, b := range []byte{0x91, 0x92, 0x93} {
			if err := e.store.Register(ctx, hash(b), "x", 1, []byte("t")); err != nil {
				t.Fatal(err)
			}
		}
		mustAnnounce(t, e.store, capped(hash(0xa1)))
		mustAnnounce(t, e.store, capped(hash(0xa2)))
		mustAnnounce(t, e.store, capped(hash(0xa2))) // known: not a new one
		mustAnnounce(t, e.store, capped(hash(0x91))) // registered
		before := keyspace(t, e.raw)
		if _, err := e.store.Announce(ctx, capped(hash(0xa3))); !errors.Is(err, ErrTooManyUnregistered) {
			t.Fatalf("third unregistered Announce = %v, want ErrTooManyUnregistered", err)
		}
		if after := keyspace(t, e.raw); !maps.Equal(before, after) {
			t.Errorf("a refused announce changed the keyspace")
		}
		if _, err := e.store.Deactivate(ctx, hash(0xa1)); err != nil {
			t.Fatal(err)
		}
		mustAnnounce(t, e.store, capped(hash(0xa3)))
	})
}

// TestHistoryPaging walks the history page by page, across runs
// deactivated at the same instant, and pages on from a pruned cursor.
func TestHistoryPaging(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var want []string
		for i := range 7 {
			h := hash(byte(0xb0 + i))
			mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
			at, err := e.store.Deactivate(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, at+":"+h.String())
			if i%3 != 0 {
				e.clock.Advance(time.Millisecond) // others share an instant
			}
		}
		slices.Reverse(want)
		slices.SortStableFunc(want, func(a, b string) int { return -strings.Compare(a, b) })

		for _, limit := range []int{1, 2, 3, 7, 10} {
			var got []string
			after := ""
			for page := 0; ; page++ {
				runs, next, err := e.store.History(ctx, limit, after)
				if err != nil {
					t.Fatalf("History(%d, %q): %v", limit, after, err)
				}
				if len(runs) > limit {
					t.Fatalf("History(%d, %q) = %d runs", limit, after, len(runs))
				}
				for _, r := range runs {
					got = append(got, r.Cursor())
				}
				if next == "" {
					break
				}
				if next != runs[len(runs)-1].Cursor() {
					t.Errorf("next = %q, want the last run %q", next, runs[len(runs)-1].Cursor())
				}
				after = next
				if page > 10 {
					t.Fatal("too many pages")
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: pages = %q\nwant %q", limit, got, want)
			}
		}

		// A cursor whose run was pruned still pages on from its place.
		gone := want[2]
		if err := e.raw.ZRem(ctx, keyDeactivations, gone).Err(); err != nil {
			t.Fatal(err)
		}
		runs, _, err := e.store.History(ctx, 2, gone)
		if err != nil || len(runs) != 2 || runs[0].Cursor() != want[3] {
			t.Errorf("History after a pruned cursor = %v, %v; want from %s", runs, err, want[3])
		}
		for _, bad := range []string{"x", gone + "0", strings.ToLower(gone), "2026-13-01T00:00:00.000000Z:" + hash(1).String()} {
			if _, _, err := e.store.History(ctx, 2, bad); !errors.Is(err, ErrBadCursor) {
				t.Errorf("History(2, %q) = %v, want ErrBadCursor", bad, err)
			}
		}
	})
}

// TestPrune deletes the runs older than the retention, every key of each,
// and nothing else; a hash whose runs are gone stays deactivated.
func TestPrune(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old, young, active := hash(0xc1), hash(0xc2), hash(0xc3)
		for _, h := range []InfoHash{old, young, active} {
			if err := e.store.Register(ctx, h, "x", 1, []byte("t")); err != nil {
				t.Fatal(err)
			}
			mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
			mustAnnounce(t, e.store, ann(h, "[fd00::1]:1", "r2", EventCompleted, 0))
		}
		oldAt, _ := e.store.Deactivate(ctx, old)
		// Old runs of another hash: more than two batches.
		many := hash(0xc4)
		for range 2*pruneBatch + 3 {
			if err := e.store.Register(ctx, many, "x", 1, []byte("t")); err != nil {
				t.Fatal(err)
			}
			mustAnnounce(t, e.store, ann(many, "10.0.0.2:1", "r1", EventStarted, 100))
			if _, err := e.store.Deactivate(ctx, many); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Millisecond)
		}
		e.clock.Advance(2 * time.Hour)
		youngAt, _ := e.store.Deactivate(ctx, young)
		e.clock.Advance(30 * time.Minute)
		before := keyspace(t, e.raw)

		n, err := e.store.Prune(ctx, time.Hour)
		if err != nil || n != 1+2*pruneBatch+3 {
			t.Fatalf("Prune = %d, %v; want %d runs", n, err, 1+2*pruneBatch+3)
		}
		after := keyspace(t, e.raw)
		for k, v := range before {
			_, kept := after[k]
			gone := strings.HasPrefix(k, oldAt+":") || strings.Contains(k, "Z:"+many.String())
			switch {
			case k == keyDeactivations:
				if want := fmt.Sprintf("zset[%s:%s=%v]", youngAt, young, float64(e.clock.Now().Add(-30*time.Minute).UnixMilli())); after[k] != want {
					t.Errorf("deactivations = %s, want %s", after[k], want)
				}
			case gone && kept:
				t.Errorf("%s kept, want it pruned", k)
			case !gone && (!kept || after[k] != v):
				t.Errorf("%s = %q (kept %v), want %q untouched", k, after[k], kept, v)
			}
		}
		if _, err := e.store.Announce(ctx, ann(old, "10.0.0.1:1", "r1", EventStarted, 100)); !errors.Is(err, ErrDeactivated) {
			t.Errorf("Announce of a pruned transfer = %v, want ErrDeactivated", err)
		}
		if n, err := e.store.Prune(ctx, time.Hour); err != nil || n != 0 {
			t.Errorf("second Prune = %d, %v; want nothing", n, err)
		}
	})
}

// TestMigrateDeactivations: a store written by an older version, with a
// per-hash history index, is moved to the global index at Open.
func TestMigrateDeactivations(t *testing.T) {
	ctx := context.Background()
	red := newRedis(t, nil)
	h := hash(0xd1)
	mustAnnounce(t, red.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
	at, err := red.store.Deactivate(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the index the way older versions kept it.
	legacy := transferKeys(h).legacyDeactivations()
	red.raw.ZRem(ctx, keyDeactivations, at+":"+h.String())
	red.raw.SAdd(ctx, legacy, at)

	s, err := Open(ctx, red.cfg, red.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if n := red.raw.Exists(ctx, legacy).Val(); n != 0 {
		t.Errorf("%s still exists after Open", legacy)
	}
	runs, _, err := s.History(ctx, 10, "")
	if err != nil || len(runs) != 1 || runs[0].At != at || runs[0].Stats.InfoHash != h {
		t.Errorf("History after migration = %+v, %v; want the run at %s", runs, err, at)
	}
	if keys := red.raw.Keys(ctx, h.String()+"*").Val(); len(keys) != 0 {
		t.Errorf("keys starting with the hash after migration: %q", keys)
	}
}

// TestSharedIP: a second client (another peer_id) on the IP of a current
// peer is reported; the same client re-announcing, or one after a stop, is
// not.
func TestSharedIP(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0xe1)
		a := ann(h, "10.0.0.1:1", "r1", EventStarted, 100)
		if sw := mustAnnounce(t, e.store, a); sw.SharedIP {
			t.Errorf("first announce: SharedIP")
		}
		if sw := mustAnnounce(t, e.store, a); sw.SharedIP {
			t.Errorf("same client again: SharedIP")
		}
		b := ann(h, "10.0.0.1:2", "r1", EventStarted, 100)
		b.PeerID = "-XX0001-" + strings.Repeat("y", 12)
		if sw := mustAnnounce(t, e.store, b); !sw.SharedIP {
			t.Errorf("second client on the IP: SharedIP not set")
		}
		b.Event = EventStopped
		mustAnnounce(t, e.store, b)
		a.Event = EventNone
		if sw := mustAnnounce(t, e.store, a); sw.SharedIP {
			t.Errorf("client after the other stopped: SharedIP")
		}
	})
}
