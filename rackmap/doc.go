// Package rackmap owns the answer to "which rack is this host in?" (SPEC
// section 4) and nothing else: no HTTP, no Redis.
//
// A [Map] is built once from the racks section of tracker.yaml and the
// optional hosts file, and never changes afterwards, so that announces can
// read it without locks while a reload builds a new Map and the caller swaps
// it in (with an atomic.Pointer, say). [Map.Diff] summarises a reload for the
// log.
//
// Reverse DNS is kept apart in [Resolver], because it is the only part with
// state that changes (a cache) and with I/O that can be slow: the Map stays
// pure and the Resolver bounds how long an announce can wait for a name.
package rackmap
