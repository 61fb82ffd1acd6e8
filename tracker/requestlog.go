package tracker

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The request log. At debug level every request of every kind gets one
// line, "request", with the stable keys below; at info level a summary line,
// "requests", once a minute (summaryEvery). The hot path at info level pays
// one Enabled check and a few atomic adds per request: no attribute is built
// and nothing is allocated unless a line is written.
//
//	kind      announce, scrape, admin, dashboard, metrics, healthz, other
//	method, path, status, took
//	outcome   ok; for announces and scrapes the metrics' result
//	          (bad_request, unregistered, storage_error, canceled);
//	          otherwise "error" for a status of 400 or more
//	reason    the failure reason or error message the client was given
//	peer      ip:port that announced, else the connection's source
//	infohash  40 uppercase hex digits, when the request names one transfer
//	rack, event, role, peers   announces that reached the store

// summaryEvery is the period of the info-level summary.
const summaryEvery = time.Minute

// reqNote is what a handler tells the request log about its request. It
// lives in the reqWriter wrapped around the response, so a handler finds it
// from its ResponseWriter without a context value; at info level there is
// no reqWriter and noteOf returns nil.
type reqNote struct {
	kind     string
	outcome  string
	reason   string
	peer     string
	infohash string
	rack     string
	event    string
	role     string
	hashes   int
	peers    int
}

// reqWriter records the status and carries the note of one request.
type reqWriter struct {
	http.ResponseWriter
	status int
	note   reqNote
}

func (w *reqWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *reqWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection underneath.
func (w *reqWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noteOf is the note of the request w answers, nil when requests are not
// being logged one by one.
func noteOf(w http.ResponseWriter) *reqNote {
	if rw, ok := w.(*reqWriter); ok {
		return &rw.note
	}
	return nil
}

// logRequests logs each request at debug level. Handlers below it fill in
// the note; a request already wrapped (the admin handler mounted inside the
// public one) is logged once, by the outer wrapper.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*reqWriter); ok || !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			if !ok && r.Pattern == "" {
				s.metrics.reqs.other.Add(1)
			}
			return
		}
		start := time.Now()
		rw := &reqWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK
		}
		n := &rw.note
		if n.kind == "" {
			n.kind = requestKind(r)
			if n.kind == "other" {
				s.metrics.reqs.other.Add(1)
			}
		}
		if n.outcome == "" {
			n.outcome = "ok"
			if rw.status >= 400 {
				n.outcome = "error"
			}
		}
		if n.peer == "" {
			n.peer = r.RemoteAddr
		}
		attrs := make([]slog.Attr, 0, 14)
		attrs = append(attrs,
			slog.String("kind", n.kind),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rw.status),
			slog.String("outcome", n.outcome),
			slog.Duration("took", time.Since(start)),
			slog.String("peer", n.peer),
		)
		if n.reason != "" {
			attrs = append(attrs, slog.String("reason", n.reason))
		}
		if n.infohash != "" {
			attrs = append(attrs, slog.String("infohash", n.infohash))
		}
		if n.hashes > 1 {
			attrs = append(attrs, slog.Int("hashes", n.hashes))
		}
		if n.rack != "" {
			attrs = append(attrs, slog.String("rack", n.rack))
		}
		if n.kind == "announce" && n.outcome == "ok" {
			event := n.event
			if event == "" {
				event = "none"
			}
			attrs = append(attrs, slog.String("event", event), slog.String("role", n.role), slog.Int("peers", n.peers))
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request", attrs...)
	})
}

// requestKind names what a request was for, from the route the mux chose
// (r.Pattern is set on the request the mux served).
func requestKind(r *http.Request) string {
	p := r.Pattern
	if _, path, ok := strings.Cut(p, " "); ok {
		p = path
	}
	switch {
	case p == "":
		return "other" // no route: a 404, or a 405 from the mux
	case p == "/announce":
		return "announce"
	case p == "/scrape":
		return "scrape"
	case p == "/metrics":
		return "metrics"
	case p == "/healthz":
		return "healthz"
	case strings.HasPrefix(p, "/api/"):
		return "admin"
	default:
		return "dashboard"
	}
}

// Announce results, as in racktracker_announces_total{result}.
var announceResults = [...]string{"ok", "bad_request", "unregistered", "storage_error", "canceled"}

// maxReasons bounds the distinct failure reasons one summary counts; the
// rest are counted as "other" (a reason may quote the client's input).
const maxReasons = 16

// reqStats are the counters of the info-level summary, reset every period.
type reqStats struct {
	announces      [len(announceResults)]atomic.Int64
	scrapes        atomic.Int64
	scrapeFailures atomic.Int64
	other          atomic.Int64 // requests no route matched

	mu      sync.Mutex
	reasons map[string]int64
}

func (st *reqStats) announce(result string) {
	for i, r := range announceResults {
		if r == result {
			st.announces[i].Add(1)
			return
		}
	}
}

// failure counts a failure reason handed to a client.
func (st *reqStats) failure(reason string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reasons == nil {
		st.reasons = map[string]int64{}
	}
	if _, ok := st.reasons[reason]; !ok && len(st.reasons) >= maxReasons {
		reason = "other"
	}
	st.reasons[reason]++
}

// summary takes the counts since the last call and resets them.
func (st *reqStats) summary() []slog.Attr {
	ann := make([]any, 0, 2*len(announceResults))
	var total int64
	for i, r := range announceResults {
		n := st.announces[i].Swap(0)
		total += n
		ann = append(ann, slog.Int64(r, n))
	}
	st.mu.Lock()
	reasons := st.reasons
	st.reasons = nil
	st.mu.Unlock()
	type rc struct {
		reason string
		n      int64
	}
	var rcs []rc
	for r, n := range reasons {
		rcs = append(rcs, rc{r, n})
	}
	slices.SortFunc(rcs, func(a, b rc) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.reason, b.reason))
	})
	fails := make([]any, len(rcs))
	for i, r := range rcs {
		fails[i] = slog.Int64(r.reason, r.n)
	}
	return []slog.Attr{
		slog.Int64("announces", total),
		slog.Group("announce", ann...),
		slog.Int64("scrapes", st.scrapes.Swap(0)),
		slog.Int64("scrape_failures", st.scrapeFailures.Swap(0)),
		slog.Int64("unrouted", st.other.Swap(0)),
		slog.Group("failures", fails...),
	}
}

// summarize logs the request summary every period until ctx ends. A
// minute with no request still gets its line: silence from the clients is
// news at 3 a.m.
func (s *Server) summarize(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "requests", append([]slog.Attr{slog.Duration("period", every)}, s.metrics.reqs.summary()...)...)
	}
}

// noteFailure counts a failure reason handed to a client and, at debug
// level, names it in the request's line with its outcome.
func (s *Server) noteFailure(w http.ResponseWriter, reason string) {
	s.metrics.reqs.failure(reason)
	n := noteOf(w)
	if n == nil || n.outcome != "" {
		return
	}
	n.reason = reason
	switch reason {
	case failureStorage:
		n.outcome = "storage_error"
	case failureUnregistered:
		n.outcome = "unregistered"
	case failureDeactivated:
		n.outcome = "deactivated"
	case failureCap:
		n.outcome = "unregistered_cap"
	default:
		n.outcome = "bad_request"
	}
}
