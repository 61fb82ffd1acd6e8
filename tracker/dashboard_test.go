package tracker

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/net/html"

	"racktracker/storage"
)

// htmlPage is a dashboard answer, parsed.
type htmlPage struct {
	status int
	header http.Header
	doc    *html.Node
}

func (r *rig) dashboard(t testing.TB, path string) htmlPage {
	t.Helper()
	res := r.api(t, "GET", path, nil, "")
	doc, err := html.Parse(bytes.NewReader(res.body))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if ct := res.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	return htmlPage{status: res.status, header: res.header, doc: doc}
}

// htmlElements lists, in document order, the elements under n that match.
func htmlElements(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	return out
}

func htmlAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasAttr(key string) func(*html.Node) bool {
	return func(n *html.Node) bool { _, ok := htmlAttr(n, key); return ok }
}

func hasClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool {
		v, _ := htmlAttr(n, "class")
		return slices.Contains(strings.Fields(v), class)
	}
}

func htmlText(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}

// rackRow is what a rack's row says through its data attributes, its
// representatives' marks and its bar's segments.
type rackRow struct {
	rack, seeders, leechers, peersSeen, representatives, progress string
	marked                                                        []string
	seeded                                                        string // style of the seeders' segment
}

func rackRows(t testing.TB, section *html.Node) []rackRow {
	t.Helper()
	var rows []rackRow
	for _, n := range htmlElements(section, hasAttr("data-rack")) {
		get := func(k string) string { v, _ := htmlAttr(n, k); return v }
		row := rackRow{
			rack: get("data-rack"), seeders: get("data-seeders"), leechers: get("data-leechers"),
			peersSeen: get("data-peers-seen"), representatives: get("data-representatives"), progress: get("data-progress"),
		}
		for _, m := range htmlElements(n, hasAttr("data-representative")) {
			v, _ := htmlAttr(m, "data-representative")
			row.marked = append(row.marked, v)
		}
		bars := htmlElements(n, hasClass("seeded"))
		if len(bars) != 1 {
			t.Errorf("rack %s: %d seeders' segments, want 1", row.rack, len(bars))
		} else {
			row.seeded, _ = htmlAttr(bars[0], "style")
		}
		rows = append(rows, row)
	}
	return rows
}

// wantRows are the racks of the single transfer after runSwarm: r1 has 2
// seeders of 3 current peers and holds 2 copies of 3; r2 has 1 leecher
// that holds nothing.
var wantRows = []rackRow{
	{"r1", "2", "1", "3", "1", "0.6667", []string{"10.1.0.2:6002"}, "width: 66.7%"},
	{"r2", "0", "1", "2", "1", "0.0000", []string{"10.2.0.1:6004"}, "width: 0.0%"},
}

func checkRows(t testing.TB, what string, got []rackRow) {
	t.Helper()
	if len(got) != len(wantRows) {
		t.Fatalf("%s: rack rows %+v, want %+v", what, got, wantRows)
	}
	for i, w := range wantRows {
		g := got[i]
		if g.rack != w.rack || g.seeders != w.seeders || g.leechers != w.leechers || g.peersSeen != w.peersSeen ||
			g.representatives != w.representatives || g.progress != w.progress || !slices.Equal(g.marked, w.marked) || g.seeded != w.seeded {
			t.Errorf("%s: rack row %+v, want %+v", what, g, w)
		}
	}
}

// checkSelfContained: no script, no external asset, refreshing itself.
func checkSelfContained(t testing.TB, what string, p htmlPage) {
	t.Helper()
	for _, n := range htmlElements(p.doc, func(n *html.Node) bool {
		return n.Data == "script" || n.Data == "link" || n.Data == "img" || n.Data == "iframe"
	}) {
		t.Errorf("%s: has a <%s>", what, n.Data)
	}
	for _, n := range htmlElements(p.doc, hasAttr("src")) {
		t.Errorf("%s: <%s> loads src", what, n.Data)
	}
	for _, n := range htmlElements(p.doc, hasAttr("href")) {
		if v, _ := htmlAttr(n, "href"); !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") {
			t.Errorf("%s: link to %q leaves the tracker", what, v)
		}
	}
	refresh := htmlElements(p.doc, func(n *html.Node) bool { v, _ := htmlAttr(n, "http-equiv"); return n.Data == "meta" && v == "refresh" })
	if len(refresh) != 1 {
		t.Errorf("%s: %d meta refresh, want 1", what, len(refresh))
	} else if v, _ := htmlAttr(refresh[0], "content"); v != "5" {
		t.Errorf("%s: meta refresh every %q seconds, want 5", what, v)
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
}

// TestDashboard renders a known swarm: the index with a bar per rack, and
// the transfer's page with its rack table.
func TestDashboard(t *testing.T) {
	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil)
			empty := r.dashboard(t, "/")
			if empty.status != http.StatusOK || !strings.Contains(htmlText(empty.doc), "No active transfer") {
				t.Errorf("empty dashboard: status %d, text %q", empty.status, htmlText(empty.doc))
			}
			for _, f := range []string{"single.torrent", "multi.torrent"} {
				r.api(t, "POST", "/api/transfers", torrentFile(t, f), "").decode(t, "register "+f, http.StatusCreated, &transferJSON{})
			}
			runSwarm(t, r, mustHash(t, singleHash))

			index := r.dashboard(t, "/")
			if index.status != http.StatusOK {
				t.Fatalf("GET /: status %d", index.status)
			}
			checkSelfContained(t, "index", index)
			sections := htmlElements(index.doc, hasAttr("data-hash"))
			var hashes []string
			for _, s := range sections {
				v, _ := htmlAttr(s, "data-hash")
				hashes = append(hashes, v)
			}
			if !slices.Equal(hashes, []string{multiHash, singleHash}) {
				t.Fatalf("index shows transfers %q, want %s and %s", hashes, multiHash, singleHash)
			}
			if rows := rackRows(t, sections[0]); len(rows) != 0 {
				t.Errorf("multi has no peer, but rows %+v", rows)
			}
			checkRows(t, "index", rackRows(t, sections[1]))
			if v, _ := htmlAttr(sections[1], "data-progress"); v != "0.5000" {
				t.Errorf("single's data-progress %q, want 0.5000", v)
			}
			links := htmlElements(sections[1], func(n *html.Node) bool { v, _ := htmlAttr(n, "href"); return v == "/transfers/"+singleHash })
			if len(links) != 1 || htmlText(links[0]) != singleName {
				t.Errorf("single's section links %d times to its page, want once, named %q", len(links), singleName)
			}

			tp := r.dashboard(t, "/transfers/"+strings.ToLower(singleHash))
			if tp.status != http.StatusOK {
				t.Fatalf("transfer page: status %d", tp.status)
			}
			checkSelfContained(t, "transfer page", tp)
			sections = htmlElements(tp.doc, hasAttr("data-hash"))
			if len(sections) != 1 {
				t.Fatalf("transfer page has %d transfer sections, want 1", len(sections))
			}
			checkRows(t, "transfer page", rackRows(t, sections[0]))
			heads := htmlElements(tp.doc, func(n *html.Node) bool { return n.Data == "th" && n.Parent.Parent.Data == "thead" })
			var cols []string
			for _, h := range heads {
				cols = append(cols, htmlText(h))
			}
			if want := []string{"rack", "seeders", "leechers", "peers seen", "representatives", "progress", ""}; !slices.Equal(cols, want) {
				t.Errorf("transfer page columns %q, want %q", cols, want)
			}

			for _, tc := range []struct {
				path   string
				status int
			}{
				{"/transfers/xyz", http.StatusBadRequest},
				{"/transfers/" + strings.Repeat("0", 40), http.StatusNotFound},
			} {
				p := r.dashboard(t, tc.path)
				if p.status != tc.status {
					t.Errorf("GET %s: status %d, want %d", tc.path, p.status, tc.status)
				}
				if errs := htmlElements(p.doc, hasAttr("data-status")); len(errs) != 1 {
					t.Errorf("GET %s: no error block", tc.path)
				}
			}
		})
	}
}

// TestDashboardEscapes: a torrent's name is text, never markup.
func TestDashboardEscapes(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, nil)
	const name = `<b onmouseover="x()">bold</b>`
	tor, err := bencode.Marshal(map[string]any{
		"info": map[string]any{"name": name, "piece length": 16384, "length": 1, "pieces": strings.Repeat("p", 20)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got transferJSON
	r.api(t, "POST", "/api/transfers", tor, "").decode(t, "register", http.StatusCreated, &got)
	for _, path := range []string{"/", "/transfers/" + got.Hash} {
		p := r.dashboard(t, path)
		if b := htmlElements(p.doc, func(n *html.Node) bool { return n.Data == "b" }); len(b) != 0 {
			t.Errorf("GET %s: the name became markup", path)
		}
		if !strings.Contains(htmlText(p.doc), name) {
			t.Errorf("GET %s: the name %q is not shown as text", path, name)
		}
	}
}

// TestDashboardOutage: a 503 page that keeps refreshing while the store is
// away.
func TestDashboardOutage(t *testing.T) {
	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil)
			breakStore(t, r)
			for _, path := range []string{"/", "/transfers/" + singleHash} {
				p := r.dashboard(t, path)
				if p.status != http.StatusServiceUnavailable {
					t.Errorf("GET %s: status %d, want 503", path, p.status)
				}
				checkSelfContained(t, path, p)
			}
		})
	}
}
