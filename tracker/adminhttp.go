package tracker

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"racktracker/storage"
)

// announceURL is the URL clients announce to: public_url with /announce
// appended when set. Else http, path /announce, on the host the caller
// reached. That host is the announce listener's when /api
// shares it. When /api has its own listener (admin.listen), the port, and
// the host when listen names one, come from listen instead: the caller
// reached the admin address, which clients cannot announce to.
func (s *Server) announceURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/") + "/announce"
	}
	host := r.Host
	if s.cfg.Admin.Listen != "" {
		if lh, lp, err := net.SplitHostPort(s.cfg.Listen); err == nil {
			if a, err := netip.ParseAddr(lh); lh == "" || err == nil && a.IsUnspecified() {
				lh = r.Host
				if h, _, err := net.SplitHostPort(r.Host); err == nil {
					lh = h
				}
			}
			host = net.JoinHostPort(lh, lp)
		}
	}
	return (&url.URL{Scheme: "http", Host: host, Path: "/announce"}).String()
}

// pathHash reads the {hash} of the path, answering 400 when it is not one.
func pathHash(w http.ResponseWriter, r *http.Request) (storage.InfoHash, bool) {
	raw := r.PathValue("hash")
	h, err := storage.ParseInfoHash(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad info hash %q: want 40 hex digits", shorten(raw)))
		return h, false
	}
	return h, true
}

func notActive(h storage.InfoHash) string {
	return fmt.Sprintf("transfer %s is not active", h)
}

// storageFailed answers 503 and logs the cause; reads are logged at most
// every few seconds, since a dashboard or a script polling through an outage
// would repeat them, but a failed change is logged every time.
func (s *Server) storageFailed(w http.ResponseWriter, r *http.Request, op string, err error) {
	writeError(w, http.StatusServiceUnavailable, failureStorage)
	if r.Context().Err() != nil {
		return // the caller left; not the store's fault
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.warn.log(s.log, "admin: storage failed", "op", op, "path", r.URL.Path, "err", err)
		return
	}
	s.log.Error("admin: storage failed", "op", op, "path", r.URL.Path, "err", err)
}
