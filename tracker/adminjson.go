package tracker

import (
	"encoding/json"
	"net/http"

	"racktracker/storage"
)

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
	// HistoryNext is the after parameter of the next page of history;
	// null on the last page.
	HistoryNext *string `json:"history_next"`
}

// History paging of GET /api/transfers.
const (
	defaultHistoryPage = 100
	maxHistoryPage     = 1000
)

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
