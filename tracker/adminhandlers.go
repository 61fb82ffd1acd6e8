package tracker

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"racktracker/storage"
)

// serveRegister activates a transfer from an uploaded .torrent.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > maxTorrentSize {
		status, err := uploadError("", &http.MaxBytesError{Limit: maxTorrentSize})
		writeError(w, status, err.Error())
		return
	}
	// Reserve what the upload may hold before reading it: by its length
	// when the client says (net/http reads no more), else the most.
	cost := uploadCost(maxTorrentSize)
	if r.ContentLength >= 0 {
		cost = uploadCost(r.ContentLength)
	}
	wait, cancel := context.WithTimeout(r.Context(), s.uploadWait)
	err := s.uploads.acquire(wait, cost)
	cancel()
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many uploads at once: retry in a few seconds")
		s.warn.log(s.log, "register: upload refused, the upload memory budget stayed full", "wait", s.uploadWait)
		return
	}
	defer s.uploads.release(cost)
	raw, status, err := readUpload(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	t, err := parseTorrent(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "not a valid .torrent: "+err.Error())
		return
	}
	ctx := r.Context()
	start := time.Now()
	err = s.store.Register(ctx, t.hash, t.name, t.length, raw)
	s.metrics.storage("register", start, err)
	switch {
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, fmt.Sprintf("transfer %s is already active; deactivate it (DELETE /api/transfers/%[1]s) to register it afresh", t.hash))
		return
	case err != nil:
		s.storageFailed(w, r, "register", err)
		return
	}
	s.log.Info("registered transfer", "infohash", t.hash.String(), "name", t.name, "length", t.length)

	st, err := s.store.Transfer(ctx, t.hash)
	if err != nil {
		// Registered all the same: answer with what the upload said
		// rather than a 503 that would make the caller retry into a 409.
		s.warn.log(s.log, "register: reading the new transfer back failed", "infohash", t.hash.String(), "err", err)
		st = storage.TransferStats{InfoHash: t.hash, Active: true, Name: t.name, Length: t.length}
	}
	w.Header().Set("Location", "/api/transfers/"+t.hash.String())
	writeJSON(w, http.StatusCreated, s.transferJSON(r, st))
}

// serveTransfers lists the active transfers and a page of the deactivated
// history.
func (s *Server) serveTransfers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultHistoryPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad limit %q: want 1 to %d", shorten(v), maxHistoryPage))
			return
		}
		limit = n
	}
	after := q.Get("after")
	active, err := s.store.Active(r.Context())
	if err != nil {
		s.storageFailed(w, r, "list active transfers", err)
		return
	}
	history, next, err := s.store.History(r.Context(), limit, after)
	if errors.Is(err, storage.ErrBadCursor) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad after %q: pass the history_next of the previous page", shorten(after)))
		return
	}
	if err != nil {
		s.storageFailed(w, r, "list transfer history", err)
		return
	}
	out := transfersJSON{
		Active:      make([]transferJSON, len(active)),
		History:     make([]deactivatedJSON, len(history)),
		HistoryNext: optTime(next),
	}
	for i, t := range active {
		out.Active[i] = s.transferJSON(r, t)
	}
	for i, d := range history {
		st := d.Stats
		out.History[i] = deactivatedJSON{
			Hash:         st.InfoHash.String(),
			Name:         st.Name,
			Length:       optLength(st.Length),
			Registered:   optTime(st.Registered),
			Deregistered: d.At,
			PeersSeen:    st.PeersSeen,
			Completions:  st.Completions,
			Uploaded:     st.Uploaded,
			Downloaded:   st.Downloaded,
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// serveTransfer shows one active transfer.
func (s *Server) serveTransfer(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	st, err := s.store.Transfer(r.Context(), h)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, notActive(h))
	case err != nil:
		s.storageFailed(w, r, "read transfer", err)
	default:
		writeJSON(w, http.StatusOK, s.transferDetail(r, st))
	}
}

// serveDeactivate retires a transfer and answers with its final state: the
// state read just before, with the deactivation time. An announce that lands
// between the read and the deactivation is in the archived keys but not in
// the answer.
func (s *Server) serveDeactivate(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	st, err := s.store.Transfer(ctx, h)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, notActive(h))
		return
	case err != nil:
		s.storageFailed(w, r, "read transfer", err)
		return
	}
	start := time.Now()
	at, err := s.store.Deactivate(ctx, h)
	s.metrics.storage("deactivate", start, err)
	switch {
	case errors.Is(err, storage.ErrNotFound): // deactivated meanwhile, by idle timeout or another call
		writeError(w, http.StatusNotFound, notActive(h))
		return
	case err != nil:
		s.storageFailed(w, r, "deactivate", err)
		return
	}
	s.log.Info("deactivated transfer", "infohash", h.String(), "by", "api", "at", at)
	st.Active, st.Deregistered = false, at
	writeJSON(w, http.StatusOK, s.transferJSON(r, st))
}

// serveTorrent sends back the registered .torrent, for deploy scripts to
// fetch from the tracker.
func (s *Server) serveTorrent(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	b, name, err := s.store.Torrent(r.Context(), h)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no .torrent for %s: the transfer is not active, or was activated by an announce rather than registered", h))
		return
	case err != nil:
		s.storageFailed(w, r, "read torrent", err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/x-bittorrent")
	hd.Set("Content-Disposition", contentDisposition(name, h))
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("Cache-Control", "no-store")
	w.Write(b)
}

// contentDisposition names the download after the transfer: "<name>.torrent",
// the name (stored from the metainfo at registration) made safe as a file
// name; "<hash>.torrent" when it has none.
func contentDisposition(name string, h storage.InfoHash) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, strings.TrimSpace(name))
	if name == "" || name == "." || name == ".." {
		name = h.String()
	}
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": name + ".torrent"}); v != "" {
		return v
	}
	return mime.FormatMediaType("attachment", map[string]string{"filename": h.String() + ".torrent"})
}

// serveRacks lists every rack seen with its hosts.
func (s *Server) serveRacks(w http.ResponseWriter, r *http.Request) {
	racks, err := s.store.Racks(r.Context())
	if err != nil {
		s.storageFailed(w, r, "list racks", err)
		return
	}
	out := racksJSON{Racks: make([]rackHostsJSON, 0, len(racks))}
	for rack, hosts := range racks {
		if hosts == nil {
			hosts = []string{}
		}
		out.Racks = append(out.Racks, rackHostsJSON{Rack: rack, Hosts: hosts})
	}
	slices.SortFunc(out.Racks, func(a, b rackHostsJSON) int { return strings.Compare(a.Rack, b.Rack) })
	writeJSON(w, http.StatusOK, out)
}
