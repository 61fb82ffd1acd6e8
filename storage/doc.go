// Package storage owns the tracker's state in Redis: the key layout of SPEC
// section 3 (keys.go, the only place that builds a key), every Redis command
// and Lua script, the two backends (an external Redis, or miniredis in
// process, both reached through the same go-redis client code), expiry by
// data rather than TTL, and the embedded store's snapshots.
//
// Every announce is one script run: one round trip, atomic, so that no
// reader sees a peer in two classes at once and no rack holds more
// representatives than configured, whichever tracker process writes.
package storage
