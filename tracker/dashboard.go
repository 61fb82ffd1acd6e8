package tracker

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"

	"racktracker/storage"
)

// The dashboard (SPEC section 6): server-rendered pages on the public
// listener, with no script and no external asset, that refresh themselves.
//
// It is deliberately outside admin.token: it shows what the tracker already
// hands to any announcing client (counts, progress, the representatives'
// ip:port) and nothing secret, and it changes nothing, so operators can keep
// it open on a screen without the token. Anything that changes state or
// serves the .torrent stays under /api.
//
// Elements carry data-* attributes with the raw figures (data-rack,
// data-seeders, data-leechers, data-peers-seen, data-representatives,
// data-progress), so that tests and scrapers read the figures without
// depending on the layout.

//go:embed dashboard.html
var dashboardHTML string

var dashboardTmpl = template.Must(template.New("dashboard").Parse(dashboardHTML))

// dashboardRefresh is how often the pages reload themselves, in seconds.
const dashboardRefresh = 5

// dashboardRoutes adds the dashboard to the public mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.serveDashboard)
	mux.HandleFunc("GET /transfers/{hash}", s.serveTransferPage)
	s.dashboardRoutesOps(mux)
}

// dashPage is what every page template gets.
type dashPage struct {
	Title     string
	Refresh   int
	Now       string
	Status    int
	Error     string
	Transfers []dashTransfer // the index
	Transfer  *dashTransfer  // a transfer's page
}

// dashTransfer is a transfer as the pages show it.
type dashTransfer struct {
	Hash            string
	Name            string
	Length          string
	Seeders         int
	Leechers        int
	Representatives int
	PeersSeen       int
	Completions     int
	Uploaded        string
	Downloaded      string
	Registered      string
	FirstStarted    string
	LastStarted     string
	FirstCompleted  string
	LastCompleted   string
	LastAnnounce    string
	Bar             dashBar
	Racks           []dashRack
	Stuck           int           // racks judged stuck (stuck.go)
	Chart           template.HTML // the timeline's SVG (timeline.go); transfer page only
}

// dashRack is one rack's row.
type dashRack struct {
	Rack      string
	Seeders   int
	Leechers  int
	PeersSeen int
	Reps      []string
	Bar       dashBar
	// Stuck is the reason the rack is judged stuck, "" when it is not.
	Stuck      string
	StuckSince string
}

// dashBar is a progress bar in two segments: the seeders' share of the
// current peers, then what the leechers hold on top of it; together they
// are the share of the payload the current peers hold.
type dashBar struct {
	Seeded   string // width of the seeders' segment, percent
	Held     string // width of the leechers' segment, percent
	Progress string // data-progress: 0 to 1 with 4 decimals; "" when unknown
	Label    string
}

func (s *Server) serveDashboard(w http.ResponseWriter, r *http.Request) {
	// Index, not Active: the page shows no byte counts, and refreshes
	// every 5 s in every open browser.
	active, err := s.store.Index(r.Context())
	if err != nil {
		s.dashboardFailed(w, r, err)
		return
	}
	p := s.page("racktracker")
	p.Transfers = make([]dashTransfer, len(active))
	for i, t := range active {
		p.Transfers[i] = dashView(t)
		s.decorate(&p.Transfers[i], t, nil)
	}
	s.render(w, "index", p)
}

func (s *Server) serveTransferPage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("hash")
	h, err := storage.ParseInfoHash(raw)
	if err != nil {
		p := s.page("bad info hash")
		p.Status, p.Error = http.StatusBadRequest, fmt.Sprintf("%q is not an info hash: want 40 hex digits.", shorten(raw))
		s.render(w, "error", p)
		return
	}
	t, err := s.store.Transfer(r.Context(), h)
	if errors.Is(err, storage.ErrNotFound) {
		p := s.page("not active")
		p.Status, p.Error = http.StatusNotFound, fmt.Sprintf("Transfer %s is not active.", h)
		s.render(w, "error", p)
		return
	}
	if err != nil {
		s.dashboardFailed(w, r, err)
		return
	}
	v := dashView(t)
	s.decorate(&v, t, s.timelineFor(r, h))
	p := s.page(v.Name + " · racktracker")
	p.Transfer = &v
	s.render(w, "transfer", p)
}

// dashboardFailed shows a 503 page that keeps refreshing, so the screen
// comes back by itself with the store.
func (s *Server) dashboardFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil {
		s.warn.log(s.log, "dashboard: storage failed", "path", r.URL.Path, "err", err)
	}
	p := s.page("storage unavailable")
	p.Status, p.Error = http.StatusServiceUnavailable, "Tracker storage unavailable: this page retries by itself."
	s.render(w, "error", p)
}

func (s *Server) page(title string) dashPage {
	return dashPage{Title: title, Refresh: dashboardRefresh, Now: storage.FormatTime(s.now()), Status: http.StatusOK}
}

// render executes a page into a buffer first, so that a template error is
// a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, name string, p dashPage) {
	var buf bytes.Buffer
	if err := dashboardTmpl.ExecuteTemplate(&buf, name, p); err != nil {
		s.log.Error("dashboard: render failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	w.Write(buf.Bytes())
}

// dashView turns a transfer's state into what the pages show.
func dashView(t storage.TransferStats) dashTransfer {
	v := dashTransfer{
		Hash:            t.InfoHash.String(),
		Name:            t.Name,
		Length:          "unknown",
		Seeders:         t.Seeders,
		Leechers:        t.Leechers,
		Representatives: t.Representatives,
		PeersSeen:       t.PeersSeen,
		Completions:     t.Completions,
		Uploaded:        humanBytes(t.Uploaded),
		Downloaded:      humanBytes(t.Downloaded),
		Registered:      t.Registered,
		FirstStarted:    t.FirstStarted,
		LastStarted:     t.LastStarted,
		FirstCompleted:  t.FirstCompleted,
		LastCompleted:   t.LastCompleted,
		LastAnnounce:    t.LastAnnounce,
		Bar:             bar(t.Seeders, t.Leechers, t.Progress()),
	}
	if v.Name == "" {
		v.Name = "(unnamed) " + v.Hash[:8]
	}
	if t.Length >= 0 {
		v.Length = humanBytes(t.Length)
	}
	for _, rs := range t.Racks {
		v.Racks = append(v.Racks, dashRack{
			Rack:      rs.Rack,
			Seeders:   rs.Seeders,
			Leechers:  rs.Leechers,
			PeersSeen: rs.PeersSeen,
			Reps:      rs.Representatives,
			Bar:       bar(rs.Seeders, rs.Leechers, rs.Progress(t.Length)),
		})
	}
	return v
}

func bar(seeders, leechers int, progress float64) dashBar {
	peers := seeders + leechers
	if peers == 0 {
		return dashBar{Seeded: "0", Held: "0", Label: "no current peer"}
	}
	seeded := 100 * float64(seeders) / float64(peers)
	b := dashBar{
		Seeded: strconv.FormatFloat(seeded, 'f', 1, 64),
		Held:   "0",
		Label:  fmt.Sprintf("%d/%d seeding", seeders, peers),
	}
	if progress >= 0 {
		b.Held = strconv.FormatFloat(max(0, 100*progress-seeded), 'f', 1, 64)
		b.Progress = strconv.FormatFloat(progress, 'f', 4, 64)
		b.Label += fmt.Sprintf(" · %.0f%%", 100*progress)
	}
	return b
}

// humanBytes is n in binary units, as operators size payloads.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
