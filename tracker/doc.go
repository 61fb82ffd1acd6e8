// Package tracker owns the HTTP side of racktracker: announce and scrape
// (query parsing, bencoding), the rack-aware peer handout policy, the
// transfer lifecycle passes (expiry, idle deactivation), the admin API, the
// dashboard and the metrics. It keeps no state of its own: every swarm
// lives in the Store.
package tracker
