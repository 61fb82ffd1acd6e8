package storage

import (
	"strconv"
	"time"
)

// Timers are the clocks of liveness and stall. Real clients announce at
// their own pace whatever interval they are handed (libtorrent at most every
// 300 s, rtorrent 600 s, anacrolix 60 s), so each peer is judged against
// its own cadence, learned from its announces, not against a fixed count of
// announces:
//
//   - A peer's cadence is the gap between its announces, measured at each
//     periodic (event-less) announce that comes before its deadline. A
//     longer gap is taken at once, a shorter one pulls the cadence down by a
//     quarter of the difference (a client that asks early once keeps its
//     slack). It is capped at MaxCadence. Until a peer has announced twice,
//     its cadence is taken to be FirstCadence.
//   - A peer expires when it is silent past its deadline: its last announce
//     plus the longer of PeerTimeout and Cadences times its cadence. The
//     deadline is the score of the expiry index, written at each announce,
//     so that an expiry pass reads only the peers that expire.
//   - A representative silent for the longer of OverdueFloor and
//     OverdueCadences of its cadence is overdue: the rack's next announce
//     (any of its peers, including "stopped") takes the role from it and
//     refills the slot, and an overdue peer is not elected. It stays
//     current until it expires. (The floor keeps a client that once
//     announced twice in a second from being called overdue a second
//     later. It is not PeerTimeout: a rack whose only representative died
//     would wait that long, whatever its hosts' cadence, for another.)
//   - A representative that makes no progress while its rack has no seeder
//     (and the swarm has one) loses the role once Stall has passed since
//     its election or the announce that last showed its left, whichever is
//     later, so that at 600 s a stuck representative goes at its first
//     announce without progress. A rack
//     whose leechers show no progress for Stall lets them escape (SPEC
//     section 4).
type Timers struct {
	PeerTimeout  time.Duration
	Cadences     float64
	FirstCadence time.Duration
	Stall        time.Duration
	// OverdueFloor is the least silence that makes a representative
	// overdue; the tracker sets twice announce.min_interval, the soonest a
	// client that follows it announces twice.
	OverdueFloor time.Duration
}

// The defaults of a zero Timers field.
const (
	DefaultPeerTimeout  = 90 * time.Second
	DefaultCadences     = 2.5
	DefaultFirstCadence = 600 * time.Second
	DefaultStall        = 90 * time.Second
	DefaultOverdueFloor = 20 * time.Second
)

// OverdueCadences is how many of its own cadences (at least OverdueFloor) a
// representative may stay silent before its rack's next announce gives its
// slot away. It leaves
// room for a client's jitter (the tracker's interval is handed out +-10%)
// and a slow round trip, and is below any Cadences that keeps a peer alive
// past one missed announce.
const OverdueCadences = 1.5

// MaxCadence caps a learned cadence, so that a peer that announces ever
// more slowly cannot stay current for ever without announcing.
const MaxCadence = time.Hour

// withDefaults fills the zero fields.
func (t Timers) withDefaults() Timers {
	if t.PeerTimeout <= 0 {
		t.PeerTimeout = DefaultPeerTimeout
	}
	if t.Cadences <= 0 {
		t.Cadences = DefaultCadences
	}
	if t.FirstCadence <= 0 {
		t.FirstCadence = DefaultFirstCadence
	}
	if t.Stall <= 0 {
		t.Stall = DefaultStall
	}
	if t.OverdueFloor <= 0 {
		t.OverdueFloor = DefaultOverdueFloor
	}
	return t
}

// renderedTimers is a Timers value with its args.
type renderedTimers struct {
	t    Timers
	args []any
}

// timerArgs is t.args(), rendered once for as long as announces carry the
// same timers (read-only: callers copy from it).
func (s *Store) timerArgs(t Timers) []any {
	if r := s.timersRendered.Load(); r != nil && r.t == t {
		return r.args
	}
	r := &renderedTimers{t: t, args: t.args()}
	s.timersRendered.Store(r)
	return r.args
}

// args renders the timers as the scripts' timers() reads them: the peer
// timeout, the cadences, the first cadence, the stall (milliseconds), the
// overdue cadences, the cadence cap and the overdue floor (milliseconds).
func (t Timers) args() []any {
	t = t.withDefaults()
	return []any{
		t.PeerTimeout.Milliseconds(),
		strconv.FormatFloat(t.Cadences, 'f', -1, 64),
		t.FirstCadence.Milliseconds(),
		t.Stall.Milliseconds(),
		strconv.FormatFloat(OverdueCadences, 'f', -1, 64),
		MaxCadence.Milliseconds(),
		t.OverdueFloor.Milliseconds(),
	}
}
