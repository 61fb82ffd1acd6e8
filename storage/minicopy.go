package storage

import (
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// A copy of the whole store under one hold of miniredis' mutex grows with
// the store: at 150,000 keys it held every announce for 10 ms on a quiet
// machine, and for up to 400 ms on a busy one, where the holder loses its
// core in the middle. So a snapshot copies in chunks, letting go of the
// mutex between them, and then takes it once more, briefly, to re-copy
// what was written meanwhile: the result is the store at that last moment.
//
// What was written meanwhile is known exactly, because during a chunked
// copy every write goes one of two ways:
//   - a script the hook runs (every announce): its redis.call marks every
//     argument of every command that may write (over-marking is harmless:
//     a marked name is just copied again, or found absent);
//   - any other command that may write (from the store's own calls or from
//     embedded.listen) waits until the copy ends: the hook runs it itself
//     and holds copyGate shared meanwhile, which the copy holds alone.
//
// Blocking commands (BLPOP and the like) are not held back, since they may
// wait for long; they write only when a write to the key they wait on wakes
// them, which is itself marked or held back. BLMOVE and BRPOPLPUSH also
// push onto a second list, so lists, hashes and streams (which the tracker
// never writes; operators may) are copied whole in the last hold.

// copyChunk is how many keys and members a chunk copies before letting go
// of miniredis' mutex; a variable for tests.
var copyChunk = 1024

// blockingCommands may wait inside miniredis for long, so the hook never
// holds them back.
var blockingCommands = map[string]bool{
	"BLPOP": true, "BRPOP": true, "BRPOPLPUSH": true, "BLMOVE": true, "BLMPOP": true,
	"BZPOPMIN": true, "BZPOPMAX": true, "BZMPOP": true, "XREAD": true, "XREADGROUP": true,
}

// harmless commands change no key, though miniredis does not flag them
// read-only.
var harmless = map[string]bool{
	"PING": true, "ECHO": true, "HELLO": true, "AUTH": true, "SELECT": true, "CLIENT": true,
	"INFO": true, "COMMAND": true, "QUIT": true, "DBSIZE": true, "TIME": true,
	"MULTI": true, "DISCARD": true, "WATCH": true, "UNWATCH": true,
}

// mayWrite reports whether a command may change a key (unknown ones too).
// Callers hold m's mutex or not; the cache has its own.
func (ms *miniScripts) mayWrite(cmd string) bool {
	if harmless[cmd] {
		return false
	}
	if w, ok := ms.writes.Load(cmd); ok {
		return w.(bool)
	}
	w := !ms.srv.IsReadOnlyCommand(cmd)
	ms.writes.Store(cmd, w)
	return w
}

// holdBack runs a command that may write from a connection (not a
// script's own call) with copyGate shared, so that it waits while a
// chunked copy runs; it returns false for the commands it leaves to
// miniredis as they come.
func (ms *miniScripts) holdBack(c *server.Peer, cmd string, args []string) bool {
	if blockingCommands[cmd] || !ms.mayWrite(cmd) || peerNested(ms.layout, c) {
		return false
	}
	if _, in := ms.inside.Load(c); in {
		return false // the Dispatch below
	}
	ms.copyGate.RLock()
	defer ms.copyGate.RUnlock()
	ms.inside.Store(c, struct{}{})
	defer ms.inside.Delete(c)
	ms.srv.Dispatch(c, append([]string{cmd}, args...))
	return true
}

// mark records, during a chunked copy, the names a script's command may
// write. Called under m's mutex.
func (ms *miniScripts) mark(args []string) {
	if ms.marks == nil || len(args) < 2 || !ms.mayWrite(strings.ToUpper(args[0])) {
		return
	}
	for _, a := range args[1:] {
		ms.marks[a] = struct{}{}
	}
}

// peerNested reports whether c is a script's own call.
func peerNested(l connCtxLayout, c *server.Peer) bool {
	if c.Ctx == nil {
		return false
	}
	p := unsafe.Pointer(reflectPointer(c.Ctx))
	return p != nil && *(*bool)(unsafe.Add(p, l.nested))
}

// copyChunked copies database 0 of m at one point in time, in chunks (see
// above); ok is false when it cannot (miniredis' layout is not the one
// minidb.go reads), and the caller copies in one hold instead.
func copyChunked(m *miniredis.Miniredis, ms *miniScripts) (c storeCopy, ok bool) {
	o, ok := miniLayout()
	if !ok || ms == nil {
		return c, false
	}
	ms.copyGate.Lock()
	defer ms.copyGate.Unlock()
	view := func() (miniView, bool) {
		dbs := *(*map[int]*miniredis.RedisDB)(unsafe.Add(unsafe.Pointer(m), o.dbs))
		db := dbs[0]
		if db == nil {
			return miniView{}, false
		}
		return viewOf(unsafe.Pointer(db), o.fields), true
	}
	// The records' array (tens of megabytes for a large store) is made
	// before the first hold: zeroing it there would hold every command.
	m.Lock()
	v, found := view()
	n := 0
	if found {
		n = len(v.keys) // read under the mutex: scripts change it
	}
	m.Unlock()
	if !found {
		return c, true
	}
	recs := make([]record, 0, n+n/8)
	m.Lock()
	locked := time.Now()
	if v, found = view(); !found {
		m.Unlock()
		return c, true
	}
	ms.marks = map[string]struct{}{} // set and cleared under m's mutex
	start := v
	// moved reports whether a map itself was replaced while the mutex was
	// let go (a FLUSHDB in a script, say): the copy then starts over in
	// one hold.
	moved := func() bool {
		now, ok := view()
		return !ok || !sameMaps(now, start)
	}
	work := 0
	// pause lets go of the mutex once a chunk's work is done, and reports
	// whether the copy must start over.
	pause := func(n int) bool {
		if work += n; work < copyChunk {
			return false
		}
		work = 0
		d := time.Since(locked)
		c.held += d
		c.maxHold = max(c.maxHold, d)
		m.Unlock()
		m.Lock()
		locked = time.Now()
		c.chunks++
		return moved()
	}
	aborted := false
	for k, val := range v.stringKeys {
		recs = append(recs, record{key: k, kind: kindString, value: val})
		if aborted = pause(1); aborted {
			break
		}
	}
	for k, s := range v.setKeys {
		if aborted {
			break
		}
		recs = append(recs, setRecord(k, s))
		aborted = pause(1 + len(s))
	}
	for k, z := range v.sortedsetKeys {
		if aborted {
			break
		}
		recs = append(recs, zsetRecord(k, z))
		aborted = pause(1 + len(z))
	}
	if aborted {
		ms.marks = nil
		m.Unlock()
		return storeCopy{}, false
	}
	// The last hold: what scripts wrote since, and every list, hash and
	// stream.
	final := make([]record, 0, len(ms.marks))
	gone := map[string]bool{}
	for k := range ms.marks {
		switch v.keys[k] {
		case "string":
			final = append(final, record{key: k, kind: kindString, value: v.stringKeys[k]})
		case "set":
			final = append(final, setRecord(k, v.setKeys[k]))
		case "zset":
			final = append(final, zsetRecord(k, v.sortedsetKeys[k]))
		case "":
			gone[k] = true
		default:
			gone[k] = true // a list, hash or stream: below
		}
	}
	for k, h := range v.hashKeys {
		final = append(final, hashRecord(k, h))
	}
	for k, l := range v.listKeys {
		final = append(final, record{key: k, kind: kindList, members: slices.Clone(l)})
	}
	for k, s := range v.streamKeys {
		final = append(final, streamRecord(k, s))
	}
	live := len(v.keys)
	if len(v.stringKeys)+len(v.setKeys)+len(v.sortedsetKeys)+len(v.hashKeys)+len(v.listKeys)+len(v.streamKeys) != live {
		c.skipped = skippedKeys(v.keys)
	}
	c.dead = max(len(v.keyVersion)-live, 0)
	for _, r := range final {
		gone[r.key] = true // replaced by its copy from the last hold
	}
	ms.marks = nil
	c.lastHold = time.Since(locked)
	c.held += c.lastHold
	c.maxHold = max(c.maxHold, c.lastHold)
	m.Unlock()

	// Outside the mutex: drop what the last hold replaced or found gone,
	// and any key the walk met twice (deleted and written again while the
	// mutex was let go: then it is marked, so that cannot remain).
	kept := recs[:0]
	for _, r := range recs {
		if !gone[r.key] {
			kept = append(kept, r)
		}
	}
	c.recs = append(kept, final...)
	canonical(c.recs)
	c.recs = slices.CompactFunc(c.recs, func(a, b record) bool { return a.key == b.key })
	slices.Sort(c.skipped)
	return c, true
}

// sameMaps reports whether a and b are views of the same maps.
func sameMaps(a, b miniView) bool {
	p := func(m any) uintptr { return uintptr(reflectPointer(m)) }
	return p(a.keys) == p(b.keys) && p(a.stringKeys) == p(b.stringKeys) && p(a.setKeys) == p(b.setKeys) &&
		p(a.sortedsetKeys) == p(b.sortedsetKeys) && p(a.hashKeys) == p(b.hashKeys) &&
		p(a.listKeys) == p(b.listKeys) && p(a.streamKeys) == p(b.streamKeys) && p(a.keyVersion) == p(b.keyVersion)
}
