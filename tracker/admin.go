package tracker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"racktracker/storage"
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
//	                                      201 transfer, Location /api/transfers/<hash>
//	GET    /api/transfers                 200 {"active": [transfer], "history": [deactivated]}
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

// maxTorrentSize bounds an upload, which is held in memory and stored in
// Redis whole. A .torrent holds 20 bytes per piece: 16 MiB is over 800,000
// pieces, far beyond any payload this tracker serves.
const maxTorrentSize = 16 << 20

// transferJSON is a transfer in the API's answers; see the table above.
type transferJSON struct {
	Hash            string     `json:"hash"`
	Name            string     `json:"name"`
	Length          *int64     `json:"length"`
	Active          bool       `json:"active"`
	AnnounceURL     string     `json:"announce_url"`
	Registered      *string    `json:"registered"`
	Deregistered    *string    `json:"deregistered"`
	FirstStarted    *string    `json:"first_started"`
	LastStarted     *string    `json:"last_started"`
	FirstCompleted  *string    `json:"first_completed"`
	LastCompleted   *string    `json:"last_completed"`
	LastAnnounce    *string    `json:"last_announce"`
	Seeders         int        `json:"seeders"`
	Leechers        int        `json:"leechers"`
	Representatives int        `json:"representatives"`
	PeersSeen       int        `json:"peers_seen"`
	Completions     int        `json:"completions"`
	Uploaded        int64      `json:"uploaded"`
	Downloaded      int64      `json:"downloaded"`
	Left            int64      `json:"left"`
	Progress        *float64   `json:"progress"`
	Racks           []rackJSON `json:"racks"`
}

// rackJSON is one rack's share of a transfer.
type rackJSON struct {
	Rack                string   `json:"rack"`
	Seeders             int      `json:"seeders"`
	Leechers            int      `json:"leechers"`
	PeersSeen           int      `json:"peers_seen"`
	Representatives     int      `json:"representatives"`
	RepresentativePeers []string `json:"representative_peers"`
	Left                int64    `json:"left"`
	Progress            *float64 `json:"progress"`
	// Stuck is set while the rack is judged stuck (stuck.go).
	Stuck *stuckJSON `json:"stuck"`
}

// deactivatedJSON is one retired run of a transfer.
type deactivatedJSON struct {
	Hash         string  `json:"hash"`
	Name         string  `json:"name"`
	Length       *int64  `json:"length"`
	Registered   *string `json:"registered"`
	Deregistered string  `json:"deregistered"`
	PeersSeen    int     `json:"peers_seen"`
	Completions  int     `json:"completions"`
	Uploaded     int64   `json:"uploaded"`
	Downloaded   int64   `json:"downloaded"`
}

type transfersJSON struct {
	Active  []transferJSON    `json:"active"`
	History []deactivatedJSON `json:"history"`
}

type rackHostsJSON struct {
	Rack  string   `json:"rack"`
	Hosts []string `json:"hosts"`
}

type racksJSON struct {
	Racks []rackHostsJSON `json:"racks"`
}

type errorJSON struct {
	Error string `json:"error"`
}

// AdminHandler serves /api. Handler mounts it under the main listener
// unless admin.listen is set, in which case main serves it there alone.
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

// requireToken lets through only requests that carry admin.token as a
// bearer token. Both sides are hashed before the constant-time comparison,
// so that neither the token's content nor its length shows in the timing.
func (s *Server) requireToken(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.cfg.Admin.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="racktracker admin"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <admin.token>")
			return
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="racktracker admin", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveRegister activates a transfer from an uploaded .torrent.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
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

// readUpload reads the .torrent of a registration: the multipart field
// "torrent" when the body is a form, else the raw body. On error it returns
// the status to answer with.
func readUpload(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTorrentSize)
	var body io.Reader = r.Body
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad multipart form: %w", err)
		}
		for body = nil; body == nil; {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil, http.StatusBadRequest, errors.New(`multipart form has no field "torrent"`)
			}
			if err != nil {
				status, err := uploadError("bad multipart form", err)
				return nil, status, err
			}
			if p.FormName() == "torrent" {
				body = p
			}
		}
	}
	b, err := io.ReadAll(body)
	if err != nil {
		status, err := uploadError("reading the upload", err)
		return nil, status, err
	}
	if len(b) == 0 {
		return nil, http.StatusBadRequest, errors.New(`empty upload: send the .torrent as the request body or as the multipart field "torrent"`)
	}
	return b, 0, nil
}

// uploadError is the status and reason for an upload that could not be
// read: too large, or cut short.
func uploadError(doing string, err error) (int, error) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("upload larger than %d MiB: no .torrent is that large", maxTorrentSize>>20)
	}
	return http.StatusBadRequest, fmt.Errorf("%s: %w", doing, err)
}

// torrentMeta is what registration takes from a .torrent.
type torrentMeta struct {
	hash   storage.InfoHash
	name   string
	length int64
}

// parseTorrent checks that b is a .torrent a BitTorrent client could use
// with this tracker, and returns its v1 info hash, name and length.
func parseTorrent(b []byte) (torrentMeta, error) {
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		return torrentMeta{}, err
	}
	if len(mi.InfoBytes) == 0 {
		return torrentMeta{}, errors.New("no info dictionary")
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return torrentMeta{}, fmt.Errorf("info dictionary: %w", err)
	}
	if !info.HasV1() {
		// Clients announce a v2-only torrent under a truncated SHA-256,
		// which is not the SHA-1 this tracker keys transfers by.
		return torrentMeta{}, errors.New("a v2-only torrent (BEP 52) has no v1 info hash; make a v1 or hybrid torrent")
	}
	if info.PieceLength <= 0 {
		return torrentMeta{}, fmt.Errorf("piece length %d", info.PieceLength)
	}
	length := info.TotalLength()
	if length < 0 {
		return torrentMeta{}, fmt.Errorf("negative length %d", length)
	}
	if len(info.Pieces)%20 != 0 {
		return torrentMeta{}, fmt.Errorf("pieces is %d bytes, not a multiple of 20", len(info.Pieces))
	}
	if !info.HasV2() {
		// Hybrid torrents pad files to pieces; their v1 count is theirs.
		if want := (length + info.PieceLength - 1) / info.PieceLength; int64(len(info.Pieces)/20) != want {
			return torrentMeta{}, fmt.Errorf("%d piece hashes for %d bytes in pieces of %d, want %d", len(info.Pieces)/20, length, info.PieceLength, want)
		}
	}
	name := info.BestName()
	if name == "" {
		return torrentMeta{}, errors.New("info dictionary has no name")
	}
	return torrentMeta{hash: storage.InfoHash(mi.HashInfoBytes()), name: name, length: length}, nil
}

// serveTransfers lists the active transfers and the deactivated history.
func (s *Server) serveTransfers(w http.ResponseWriter, r *http.Request) {
	active, err := s.store.Active(r.Context())
	if err != nil {
		s.storageFailed(w, r, "list active transfers", err)
		return
	}
	history, err := s.store.History(r.Context())
	if err != nil {
		s.storageFailed(w, r, "list transfer history", err)
		return
	}
	out := transfersJSON{
		Active:  make([]transferJSON, len(active)),
		History: make([]deactivatedJSON, len(history)),
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
	b, err := s.store.Torrent(r.Context(), h)
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
	hd.Set("Content-Disposition", contentDisposition(b, h))
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("Cache-Control", "no-store")
	w.Write(b)
}

// contentDisposition names the download after the torrent: "<name>.torrent",
// the name made safe as a file name; "<hash>.torrent" when it has none.
func contentDisposition(b []byte, h storage.InfoHash) string {
	name := ""
	if t, err := parseTorrent(b); err == nil {
		name = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
				return '_'
			}
			return r
		}, strings.TrimSpace(t.name))
	}
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

// transferJSON renders a transfer's state for the API.
func (s *Server) transferJSON(r *http.Request, t storage.TransferStats) transferJSON {
	out := transferJSON{
		Hash:            t.InfoHash.String(),
		Name:            t.Name,
		Length:          optLength(t.Length),
		Active:          t.Active,
		AnnounceURL:     s.announceURL(r),
		Registered:      optTime(t.Registered),
		Deregistered:    optTime(t.Deregistered),
		FirstStarted:    optTime(t.FirstStarted),
		LastStarted:     optTime(t.LastStarted),
		FirstCompleted:  optTime(t.FirstCompleted),
		LastCompleted:   optTime(t.LastCompleted),
		LastAnnounce:    optTime(t.LastAnnounce),
		Seeders:         t.Seeders,
		Leechers:        t.Leechers,
		Representatives: t.Representatives,
		PeersSeen:       t.PeersSeen,
		Completions:     t.Completions,
		Uploaded:        t.Uploaded,
		Downloaded:      t.Downloaded,
		Left:            t.Left,
		Progress:        optProgress(t.Progress()),
		Racks:           make([]rackJSON, len(t.Racks)),
	}
	for i, rs := range t.Racks {
		reps := rs.Representatives
		if reps == nil {
			reps = []string{}
		}
		out.Racks[i] = rackJSON{
			Rack:                rs.Rack,
			Seeders:             rs.Seeders,
			Leechers:            rs.Leechers,
			PeersSeen:           rs.PeersSeen,
			Representatives:     len(reps),
			RepresentativePeers: reps,
			Left:                rs.Left,
			Progress:            optProgress(rs.Progress(t.Length)),
			Stuck:               s.stuckJSON(t, rs.Rack),
		}
	}
	return out
}

// announceURL is the URL clients announce to: http, path /announce, on the
// host the caller reached. That host is the announce listener's when /api
// shares it. When /api has its own listener (admin.listen), the port, and
// the host when listen names one, come from listen instead: the caller
// reached the admin address, which clients cannot announce to.
func (s *Server) announceURL(r *http.Request) string {
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

func optTime(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optLength(n int64) *int64 {
	if n < 0 {
		return nil
	}
	return &n
}

func optProgress(p float64) *float64 {
	if p < 0 {
		return nil
	}
	return &p
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // the types above always marshal
		status, b = http.StatusInternalServerError, []byte(`{"error": "internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	if n := noteOf(w); n != nil {
		n.reason = msg
	}
	writeJSON(w, status, errorJSON{Error: msg})
}
