package tracker

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The admin API (SPEC section 6). Every answer is JSON, except the .torrent
// itself; every error is {"error": "<what is wrong>"} with a 4xx or 5xx
// status: 400 bad input (a hash that is not 40 hex digits, a file that is
// not a .torrent), 401 no or wrong token, 404 unknown or inactive transfer,
// 405 wrong method, 409 already active, 413 upload too large, 503 storage
// unavailable.
//
//	POST   /api/transfers                 register a .torrent: the raw body, or the
//	                                      multipart/form-data field "torrent";
//	                                      201 transfer, Location /api/transfers/<hash>;
//	                                      for a transfer announces alone activated,
//	                                      its name, length and .torrent are attached
//	                                      (also 201); 409 when active with a .torrent
//	GET    /api/transfers                 200 {"active": [transfer], "history": [deactivated],
//	                                      "history_next": cursor|null}; ?limit=N (1 to 1000,
//	                                      default 100) runs of history per page, newest
//	                                      first; ?after=<history_next> for the next page
//	GET    /api/transfers/<hash>          200 transfer (active transfers only)
//	DELETE /api/transfers/<hash>          deactivate (SPEC section 3): 200 transfer, its
//	                                      final state with "active": false and "deregistered" set
//	GET    /api/transfers/<hash>/torrent  the registered .torrent, application/x-bittorrent
//	GET    /api/transfers/<hash>/runs/<deregistered>  200 {"hash", "deregistered", "timeline"}:
//	                                      the timeline of a deactivated run
//	GET    /api/racks                     200 {"racks": [{"rack": "r1", "hosts": ["..."]}]}
//
// <hash> is the info hash as 40 hex digits, either case; answers give it in
// uppercase, as the keys of SPEC section 3 do. The JSON field names below
// are part of the API: they only ever get added to, never renamed. Datetimes
// are as stored, UTC "2006-01-02T15:04:05.000000Z" (valid RFC 3339), null
// when the event never happened.
//
// transfer:
//
//	hash              string   40 uppercase hex digits
//	name              string   from the .torrent; "" when activated by an announce
//	length            int|null payload bytes; null when unknown
//	active            bool
//	announce_url      string   this tracker's announce URL (see announceURL)
//	registered, deregistered, first_started, last_started,
//	first_completed, last_completed, last_announce     datetime|null
//	seeders, leechers, representatives                 int, current peers
//	peers_seen        int      every peer seen while active
//	completions       int      completed events
//	uploaded, downloaded, left int  sums of what the current peers reported
//	progress          float|null  share of the payload the current peers hold,
//	                           0 to 1; null when length is unknown or no peer is current
//	racks             [rack]   sorted by name
//	timeline          [sample] GET /api/transfers/<hash> only: the rollout timeline
//	                           (timeline.go), oldest first
//
// rack (in a transfer):
//
//	rack              string
//	seeders, leechers int      current peers of the rack
//	peers_seen        int
//	representatives   int      current representatives of the rack
//	representative_peers [string] their ip:port, sorted
//	left              int      sum over the rack's current leechers
//	progress          float|null  as above, over the rack's current peers
//	stuck             {reason, since}|null  set while the rack is stuck (stuck.go):
//	                           reason no_progress or no_representative, since a datetime
//
// deactivated (history, newest first):
//
//	hash, name, length, registered    as in transfer
//	deregistered      datetime the run was deactivated; its keys live under
//	                           "<deregistered>:<hash>:..."
//	peers_seen, completions, uploaded, downloaded   as in transfer, at deactivation

// AdminHandler serves /api. Handler mounts it under the main listener
// unless admin.listen is set, in which case app.Run serves it there alone.
// With admin.token set, every /api request needs the token, unknown paths
// included, so that an unauthenticated caller learns nothing.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods)+1)
		for m, h := range methods {
			mux.HandleFunc(m+" "+path, h)
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
		slices.Sort(allow)
		// Without a method, the pattern only catches the methods above
		// did not: a 405 in JSON rather than the mux's plain text.
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		})
	}
	route("/api/transfers", map[string]http.HandlerFunc{
		http.MethodGet:  s.serveTransfers,
		http.MethodPost: s.serveRegister,
	})
	route("/api/transfers/{hash}", map[string]http.HandlerFunc{
		http.MethodGet:    s.serveTransfer,
		http.MethodDelete: s.serveDeactivate,
	})
	route("/api/transfers/{hash}/torrent", map[string]http.HandlerFunc{
		http.MethodGet: s.serveTorrent,
	})
	route("/api/transfers/{hash}/runs/{at}", map[string]http.HandlerFunc{
		http.MethodGet: s.serveRun,
	})
	route("/api/racks", map[string]http.HandlerFunc{
		http.MethodGet: s.serveRacks,
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+shorten(r.URL.Path))
	})
	var h http.Handler = mux
	if s.cfg.Admin.Token != "" {
		h = s.requireToken(h)
	}
	return s.logRequests(h)
}
