// Package e2e holds racktracker's end-to-end tests: real BitTorrent clients
// (github.com/anacrolix/torrent) downloading through a tracker on loopback
// addresses, and tracker processes sharing one redis-server. Every client is
// bound to an address of 127.0.0.0/8 whose third byte is its rack, so that
// the tracker places it by the source address of its announces, as it would
// a host in a data center. The package has no non-test code; this file only
// lets the directory build.
//
// TestElectionTwoProcesses needs redis-server (it skips without it, unless
// RACKTRACKER_REQUIRE_REDIS is set) and the go command, to build the binary.
// Set RACKTRACKER_E2E_DEBUG=1 to see the BitTorrent clients' warnings and,
// when a download stalls, every client's status.
package e2e
