package tracker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"racktracker/storage"
)

// failureStorage is what a client is told while Redis is away; the details
// go to the log.
const failureStorage = "tracker storage unavailable"

// failureUnregistered refuses an announce for a transfer nobody registered.
const failureUnregistered = "torrent not registered with this tracker"

// failureDeactivated refuses an announce for a deactivated transfer, until
// it is registered again; failureCap one for an unknown transfer past
// transfers.max_unregistered.
const (
	failureDeactivated = "transfer deactivated"
	failureCap         = "too many unregistered transfers on this tracker: register the torrent"
)

func (s *Server) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	q, err := parseAnnounce(r.URL.RawQuery)
	if err != nil {
		s.metrics.announce(q.Event, "bad_request")
		s.fail(w, err)
		return
	}
	addr, err := s.clientIP(r, q.IP)
	if err != nil {
		s.metrics.announce(q.Event, "bad_request")
		s.fail(w, err)
		return
	}
	numwant := q.Numwant
	if numwant < 0 {
		numwant = s.cfg.Announce.NumwantDefault
	}
	numwant = min(numwant, s.cfg.Announce.NumwantMax)
	rack, host := s.locate(r.Context(), addr)
	note := noteOf(w)
	if note != nil {
		note.kind, note.event = "announce", q.Event
		note.infohash = storage.InfoHash(q.InfoHash).String()
		note.peer = netip.AddrPortFrom(addr, q.Port).String()
		note.rack = rack
	}

	a := storage.Announce{
		InfoHash:          storage.InfoHash(q.InfoHash),
		Addr:              netip.AddrPortFrom(addr, q.Port),
		PeerID:            string(q.PeerID[:]),
		Key:               q.Key,
		Event:             q.Event,
		Uploaded:          q.Uploaded,
		Downloaded:        q.Downloaded,
		Left:              q.Left,
		Compact:           q.Compact,
		Rack:              rack,
		Hostname:          host,
		AllowUnregistered: s.cfg.Transfers.AllowUnregistered,
		MaxUnregistered:   s.cfg.Transfers.MaxUnregistered,
		Representatives:   s.policy.RepresentativesPerRack,
		Timers:            s.timers,
		Plan:              s.plan,
		PeerIDs:           !q.Compact && !q.NoPeerID,
	}
	if q.Event != storage.EventStopped {
		a.Numwant = numwant
	}
	storeStart := time.Now()
	sw, err := s.store.Announce(r.Context(), a)
	refused := errors.Is(err, storage.ErrNotRegistered) || errors.Is(err, storage.ErrDeactivated) || errors.Is(err, storage.ErrTooManyUnregistered)
	if refused {
		s.metrics.storage("announce", storeStart, nil) // storage answered: a refusal
	} else {
		s.metrics.storage("announce", storeStart, err)
	}
	switch {
	case errors.Is(err, storage.ErrNotRegistered):
		s.metrics.announce(q.Event, "unregistered")
		s.fail(w, clientError(failureUnregistered))
		return
	case errors.Is(err, storage.ErrDeactivated):
		s.metrics.announce(q.Event, "deactivated")
		s.fail(w, clientError(failureDeactivated))
		return
	case errors.Is(err, storage.ErrTooManyUnregistered):
		s.metrics.announce(q.Event, "unregistered_cap")
		s.warn.log(s.log, "announce: refused an unknown transfer, transfers.max_unregistered reached",
			"infohash", a.InfoHash.String(), "peer", a.Addr.String(), "max_unregistered", s.cfg.Transfers.MaxUnregistered)
		s.fail(w, clientError(failureCap))
		return
	case err != nil && r.Context().Err() != nil:
		// The client hung up: nobody to answer, nothing wrong with storage.
		s.metrics.announce(q.Event, "canceled")
		if note != nil {
			note.outcome = "canceled"
		}
		return
	case err != nil:
		s.metrics.announce(q.Event, "storage_error")
		s.warn.log(s.log, "announce: storage failed", "infohash", a.InfoHash.String(), "peer", a.Addr.String(), "err", err)
		s.failStorage(w)
		return
	}
	s.metrics.elections.Add(float64(sw.Elected))
	s.metrics.demotions.Add(float64(sw.Demoted))
	s.identity(a, sw.SharedIP)

	var picked []storage.Peer
	if a.Numwant > 0 {
		picked = s.handout.pick(s.plan, sw, a.Addr.Addr(), numwant, q.Event == storage.EventStarted)
	}
	s.metrics.handout.Observe(float64(len(picked)))
	resp := announceResponse{
		Interval:    s.interval(),
		MinInterval: int(s.cfg.Announce.MinInterval / time.Second),
		Complete:    sw.Complete,
		Incomplete:  sw.Incomplete,
		TrackerID:   q.TrackerID,
	}
	resp.Peers = make([]handoutPeer, len(picked))
	for i, p := range picked {
		resp.Peers[i] = handoutPeer{Addr: p.Addr}
		if a.PeerIDs && p.PeerID != "" {
			resp.Peers[i].PeerID = []byte(p.PeerID)
		}
	}
	bp := s.bufs.Get().(*[]byte)
	out := appendAnnounce((*bp)[:0], resp, q.Compact, q.NoPeerID)
	writeBencode(w, out)
	*bp = out
	s.bufs.Put(bp)
	s.metrics.announce(q.Event, "ok")
	if note != nil {
		note.role, note.peers = string(sw.Role), len(picked)
	}
}

// interval is announce.interval with +-10% jitter, so that hosts started
// together by a deploy spread their announces out.
func (s *Server) interval() int {
	base := s.cfg.Announce.Interval.Seconds()
	return max(1, int(base*(0.9+0.2*rand.Float64())+0.5))
}

// locate names the host and finds its rack: an explicit host entry, else
// reverse DNS when enabled, else the IP as text.
func (s *Server) locate(ctx context.Context, addr netip.Addr) (rack, host string) {
	m := s.racks.Load()
	name, ok := m.Host(addr)
	if !ok && s.resolver != nil {
		if n := s.resolver.Hostname(ctx, addr); n != addr.String() {
			name, ok = n, true
		}
	}
	if !ok {
		return m.Lookup(addr, ""), addr.String()
	}
	return m.Lookup(addr, name), name
}

// clientIP is the peer's address: the connection's source, unless config
// says to believe the ip parameter or a trusted proxy's headers.
func (s *Server) clientIP(r *http.Request, ipParam string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, clientError("cannot tell the client's address")
	}
	addr := ap.Addr().Unmap()
	if s.trusted(addr) {
		if fwd := s.forwarded(r); fwd.IsValid() {
			addr = fwd
		}
	}
	if ipParam != "" && s.cfg.Announce.TrustIPParam {
		p, err := netip.ParseAddr(ipParam)
		if err != nil {
			return netip.Addr{}, clientError("invalid ip " + shorten(ipParam))
		}
		addr = p.Unmap()
	}
	return addr.WithZone(""), nil
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwarded is the client a trusted proxy reports: the right-most address of
// X-Forwarded-For that is not itself a trusted proxy, else X-Real-IP.
func (s *Server) forwarded(r *http.Request) netip.Addr {
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) serveScrape(w http.ResponseWriter, r *http.Request) {
	s.metrics.scrapes.Inc()
	s.metrics.reqs.scrapes.Add(1)
	raw, err := parseScrape(r.URL.RawQuery)
	if err != nil {
		s.metrics.reqs.scrapeFailures.Add(1)
		s.fail(w, err)
		return
	}
	if note := noteOf(w); note != nil {
		note.kind, note.hashes = "scrape", len(raw)
		if len(raw) == 1 {
			note.infohash = storage.InfoHash(raw[0]).String()
		}
	}
	hashes := make([]storage.InfoHash, len(raw))
	for i, h := range raw {
		hashes[i] = storage.InfoHash(h)
	}
	start := time.Now()
	counts, err := s.store.Scrape(r.Context(), hashes)
	s.metrics.storage("scrape", start, err)
	if err != nil {
		s.warn.log(s.log, "scrape: storage failed", "err", err)
		s.metrics.reqs.scrapeFailures.Add(1)
		s.failStorage(w)
		return
	}
	files := make([]scrapeFile, len(counts))
	for i, c := range counts {
		files[i] = scrapeFile{InfoHash: c.InfoHash, Complete: c.Complete, Incomplete: c.Incomplete, Downloaded: c.Downloaded}
	}
	writeBencode(w, appendScrape(nil, files))
}

// failStorage answers an announce or scrape while storage is away (Redis
// restarting, or Sentinel promoting a replica): a failure reason with the
// usual jittered interval, so that clients come back at their normal,
// spread-out cadence instead of all at once when Redis returns.
func (s *Server) failStorage(w http.ResponseWriter) {
	s.noteFailure(w, failureStorage)
	writeBencode(w, appendFailure(nil, failureStorage, s.interval(), int(s.cfg.Announce.MinInterval/time.Second)))
}

// fail answers a request the way every BitTorrent client understands: HTTP
// 200 with a bencoded failure reason, and the intervals to retry at. Only a
// clientError's text reaches the client.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var ce clientError
	if !errors.As(err, &ce) {
		s.log.Error("request failed", "err", err)
		ce = clientError("internal tracker error")
	}
	s.noteFailure(w, string(ce))
	writeBencode(w, appendFailure(nil, string(ce), s.interval(), int(s.cfg.Announce.MinInterval/time.Second)))
}

func writeBencode(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Cache-Control", "no-store")
	w.Write(b)
}
