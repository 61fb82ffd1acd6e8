package tracker

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// escapeAll percent-encodes every byte, the way strict clients send binary
// parameters.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// BEP 3's own example: the escaped form mixes raw unreserved bytes and
// escapes.
const (
	bepHashEscaped = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"
	bepHash        = "\x12\x34\x56\x78\x9a\xbc\xde\xf1\x23\x45\x67\x89\xab\xcd\xef\x12\x34\x56\x78\x9a"
	testPeerID     = "-RT0001-abcdefghijkl"
)

// binaryHash has the bytes that trip up naive decoders: NUL, high bytes,
// and bytes that are separators or escapes when left raw.
var binaryHash = "\x00\xff\x80\x7f ;&=%+\x00\x01\xfe\x2b\x20\x00\x99\xaa\x10\x00"

// required is the smallest valid announce; the tests append to it.
var required = "info_hash=" + bepHashEscaped + "&peer_id=" + testPeerID + "&port=6881&left=0"

// wantQuery returns the announceQuery of required, changed by edit.
func wantQuery(edit func(*announceQuery)) announceQuery {
	q := announceQuery{Port: 6881, Numwant: -1, Compact: true}
	copy(q.InfoHash[:], bepHash)
	copy(q.PeerID[:], testPeerID)
	if edit != nil {
		edit(&q)
	}
	return q
}

func TestParseAnnounce(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  announceQuery
	}{
		{"required only", required, wantQuery(nil)},
		{
			"every field",
			"info_hash=" + bepHashEscaped + "&peer_id=" + testPeerID + "&port=51413&uploaded=1024&downloaded=2048&left=4096" +
				"&event=started&numwant=30&compact=0&no_peer_id=1&key=5C0A2B1F&trackerid=tr%2D1&ip=10.1.0.7",
			wantQuery(func(q *announceQuery) {
				q.Port = 51413
				q.Uploaded, q.Downloaded, q.Left = 1024, 2048, 4096
				q.Event = "started"
				q.Numwant = 30
				q.Compact = false
				q.NoPeerID = true
				q.Key = "5C0A2B1F"
				q.TrackerID = "tr-1"
				q.IP = "10.1.0.7"
			}),
		},
		{
			"binary info_hash every byte escaped",
			strings.Replace(required, bepHashEscaped, escapeAll(binaryHash), 1),
			wantQuery(func(q *announceQuery) { copy(q.InfoHash[:], binaryHash) }),
		},
		{
			// anacrolix/torrent's announce: url.Values with '+' turned into %20.
			"as anacrolix encodes it",
			strings.ReplaceAll(url.Values{"info_hash": {binaryHash}, "peer_id": {testPeerID}, "port": {"6881"}, "left": {"0"}}.Encode(), "+", "%20"),
			wantQuery(func(q *announceQuery) { copy(q.InfoHash[:], binaryHash) }),
		},
		{
			"lowercase hex escapes",
			strings.Replace(required, bepHashEscaped, strings.ToLower(escapeAll(binaryHash)), 1),
			wantQuery(func(q *announceQuery) { copy(q.InfoHash[:], binaryHash) }),
		},
		{
			"binary peer_id",
			strings.Replace(required, testPeerID, escapeAll(binaryHash), 1),
			wantQuery(func(q *announceQuery) { copy(q.PeerID[:], binaryHash) }),
		},
		{
			"plus is a space byte",
			strings.Replace(required, testPeerID, "-RT0001-abcdefghijk+", 1),
			wantQuery(func(q *announceQuery) { copy(q.PeerID[:], "-RT0001-abcdefghijk ") }),
		},
		{
			"escaped plus is a plus byte",
			strings.Replace(required, testPeerID, "-RT0001-abcdefghijk%2B", 1),
			wantQuery(func(q *announceQuery) { copy(q.PeerID[:], "-RT0001-abcdefghijk+") }),
		},
		{
			"semicolon is data in a binary value",
			strings.Replace(required, testPeerID, "-RT0001-abcdefghijk;", 1),
			wantQuery(func(q *announceQuery) { copy(q.PeerID[:], "-RT0001-abcdefghijk;") }),
		},
		{
			"semicolon is data in a text value",
			required + "&key=abc;port=1",
			wantQuery(func(q *announceQuery) { q.Key = "abc;port=1" }),
		},
		{
			"escaped parameter name",
			strings.Replace(required, "info_hash=", "info%5Fhash=", 1),
			wantQuery(nil),
		},
		{"event completed", required + "&event=completed", wantQuery(func(q *announceQuery) { q.Event = "completed" })},
		{"event stopped", required + "&event=stopped", wantQuery(func(q *announceQuery) { q.Event = "stopped" })},
		{"event paused", required + "&event=paused", wantQuery(func(q *announceQuery) { q.Event = "paused" })},
		{"event empty value", required + "&event=", wantQuery(nil)},
		{"event literal empty", required + "&event=empty", wantQuery(nil)},
		{"event escaped", required + "&event=st%61rted", wantQuery(func(q *announceQuery) { q.Event = "started" })},
		{"numwant zero", required + "&numwant=0", wantQuery(func(q *announceQuery) { q.Numwant = 0 })},
		{"numwant escaped", required + "&numwant=%35%30", wantQuery(func(q *announceQuery) { q.Numwant = 50 })},
		{"numwant negative", required + "&numwant=-5", wantQuery(nil)},
		{"numwant not a number", required + "&numwant=lots", wantQuery(nil)},
		{"numwant empty", required + "&numwant=", wantQuery(nil)},
		{"numwant bad escape", required + "&numwant=%zz", wantQuery(nil)},
		{"numwant huge", required + "&numwant=99999999999999999999999", wantQuery(func(q *announceQuery) { q.Numwant = math.MaxInt32 })},
		{"compact 1", required + "&compact=1", wantQuery(nil)},
		{"compact 0", required + "&compact=0", wantQuery(func(q *announceQuery) { q.Compact = false })},
		{"compact without value", required + "&compact", wantQuery(nil)},
		{"no_peer_id 0", required + "&no_peer_id=0", wantQuery(nil)},
		{"no_peer_id 1", required + "&no_peer_id=1", wantQuery(func(q *announceQuery) { q.NoPeerID = true })},
		{"ip v6 escaped", required + "&ip=fd00%3A1%3A%3A7", wantQuery(func(q *announceQuery) { q.IP = "fd00:1::7" })},
		{"key with plus", required + "&key=a+b", wantQuery(func(q *announceQuery) { q.Key = "a b" })},
		{"port bounds low", strings.Replace(required, "port=6881", "port=1", 1), wantQuery(func(q *announceQuery) { q.Port = 1 })},
		{"port bounds high", strings.Replace(required, "port=6881", "port=65535", 1), wantQuery(func(q *announceQuery) { q.Port = 65535 })},
		{"port leading zeros", strings.Replace(required, "port=6881", "port=0080", 1), wantQuery(func(q *announceQuery) { q.Port = 80 })},
		{"left max int64", strings.Replace(required, "left=0", "left=9223372036854775807", 1), wantQuery(func(q *announceQuery) { q.Left = math.MaxInt64 })},
		{"first port wins", required + "&port=1", wantQuery(nil)},
		{"first invalid repeat ignored", required + "&port=abc&left=-1&event=&event=foo&compact=1&compact=%zz&peer_id=short", wantQuery(nil)},
		{"first compact wins", required + "&compact=0&compact=1", wantQuery(func(q *announceQuery) { q.Compact = false })},
		{"first event wins", required + "&event=stopped&event=started", wantQuery(func(q *announceQuery) { q.Event = "stopped" })},
		{"unknown parameters ignored", "supportcrypto=1&corrupt=%zz&x%zz=1&" + required + "&redundant=0", wantQuery(nil)},
		{"parameter names are case-sensitive", required + "&Port=1&EVENT=foo", wantQuery(nil)},
		{"empty segments", "&&=x&" + required + "&", wantQuery(nil)},
		{"order does not matter", "left=0&port=6881&peer_id=" + testPeerID + "&info_hash=" + bepHashEscaped, wantQuery(nil)},
		{"size limit is inclusive", required + "&pad=" + strings.Repeat("x", maxQueryLen-len(required)-len("&pad=")), wantQuery(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAnnounce(tt.query)
			if err != nil {
				t.Fatalf("parseAnnounce(%q) error = %v, want nil", tt.query, err)
			}
			if got != tt.want {
				t.Errorf("parseAnnounce(%q) =\n%+v\nwant\n%+v", tt.query, got, tt.want)
			}
		})
	}
}

func TestParseAnnounceErrors(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(required, old, new, 1) }
	tests := []struct {
		name    string
		query   string
		wantErr string
	}{
		{"empty query", "", "missing info_hash"},
		{"missing info_hash", "peer_id=" + testPeerID + "&port=6881&left=0", "missing info_hash"},
		{"short info_hash", replace(bepHashEscaped, escapeAll(binaryHash[:19])), "info_hash must be 20 bytes, got 19"},
		{"long info_hash", replace(bepHashEscaped, bepHashEscaped+"x"), "info_hash must be 20 bytes, got 21"},
		{"empty info_hash", replace(bepHashEscaped, ""), "info_hash must be 20 bytes, got 0"},
		{"hex info_hash", replace(bepHashEscaped, "123456789abcdef0123456789abcdef012345678"), "info_hash must be 20 bytes, got 40"},
		{"semicolon is not a separator", replace(bepHashEscaped, bepHashEscaped+";x=1"), "info_hash must be 20 bytes, got 24"},
		{"duplicate info_hash", required + "&info_hash=" + bepHashEscaped, "duplicate info_hash"},
		{"info_hash bad escape", replace(bepHashEscaped, "%G0"+bepHashEscaped[3:]), "bad percent-encoding in info_hash"},
		{"info_hash truncated escape", replace(bepHashEscaped, bepHashEscaped[:len(bepHashEscaped)-2]), "bad percent-encoding in info_hash"},
		{"info_hash lone percent", replace(bepHashEscaped, bepHashEscaped+"%"), "bad percent-encoding in info_hash"},
		{"missing peer_id", "info_hash=" + bepHashEscaped + "&port=6881&left=0", "missing peer_id"},
		{"short peer_id", replace(testPeerID, testPeerID[:19]), "peer_id must be 20 bytes, got 19"},
		{"long peer_id", replace(testPeerID, testPeerID+"%00"), "peer_id must be 20 bytes, got 21"},
		{"peer_id bad escape", replace(testPeerID, testPeerID[:18]+"%x"), "bad percent-encoding in peer_id"},
		{"missing port", replace("&port=6881", ""), "missing port"},
		{"port not a number", replace("port=6881", "port=abc"), `invalid port "abc"`},
		{"port zero", replace("port=6881", "port=0"), `invalid port "0"`},
		{"port too big", replace("port=6881", "port=65536"), `invalid port "65536"`},
		{"port huge", replace("port=6881", "port=184467440737095516160"), `invalid port "184467440737095516160"`},
		{"port negative", replace("port=6881", "port=-1"), `invalid port "-1"`},
		{"port empty", replace("port=6881", "port="), `invalid port ""`},
		{"port plus sign", replace("port=6881", "port=+6881"), `invalid port " 6881"`},
		{"port escaped sign", replace("port=6881", "port=%2B6881"), `invalid port "+6881"`},
		{"port bad escape", replace("port=6881", "port=68%8"), "bad percent-encoding in port"},
		{"port long value shortened", replace("port=6881", "port="+strings.Repeat("9", 100)), `invalid port "` + strings.Repeat("9", 64) + `..."`},
		{"uploaded negative", required + "&uploaded=-1", `invalid uploaded "-1"`},
		{"uploaded not a number", required + "&uploaded=1e6", `invalid uploaded "1e6"`},
		{"downloaded negative", required + "&downloaded=-1", `invalid downloaded "-1"`},
		{"downloaded empty", required + "&downloaded=", `invalid downloaded ""`},
		{"left negative", replace("left=0", "left=-1"), `invalid left "-1"`},
		{"left overflow", replace("left=0", "left=9223372036854775808"), `invalid left "9223372036854775808"`},
		{"left decimal point", replace("left=0", "left=1.5"), `invalid left "1.5"`},
		{"missing left", replace("&left=0", ""), "missing left"},
		{"left bad escape", replace("left=0", "left=%"), "bad percent-encoding in left"},
		{"unknown event", required + "&event=foo", `unknown event "foo"`},
		{"event case matters", required + "&event=Started", `unknown event "Started"`},
		{"event bad escape", required + "&event=%%", "bad percent-encoding in event"},
		{"compact bad escape", required + "&compact=%1", "bad percent-encoding in compact"},
		{"no_peer_id bad escape", required + "&no_peer_id=%", "bad percent-encoding in no_peer_id"},
		{"key bad escape", required + "&key=%zz", "bad percent-encoding in key"},
		{"trackerid bad escape", required + "&trackerid=%zz", "bad percent-encoding in trackerid"},
		{"ip bad escape", required + "&ip=%zz", "bad percent-encoding in ip"},
		{"first error in query order", "port=abc&info_hash=x", `invalid port "abc"`},
		{"missing checked in order", "left=0", "missing info_hash"},
		{"too large", required + "&pad=" + strings.Repeat("x", maxQueryLen-len(required)-len("&pad=")+1), "request too large"},
		{"too large before anything else", strings.Repeat("&", maxQueryLen+1), "request too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAnnounce(tt.query)
			if err == nil {
				t.Fatalf("parseAnnounce(%q) = %+v, want error %q", tt.query, got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("parseAnnounce(%q) error = %v, want %q", tt.query, err, tt.wantErr)
			}
			var ce clientError
			if !errors.As(err, &ce) {
				t.Errorf("parseAnnounce(%q) error %v is a %T, want clientError", tt.query, err, err)
			}
			if got != (announceQuery{}) {
				t.Errorf("parseAnnounce(%q) returned %+v with its error, want the zero value", tt.query, got)
			}
		})
	}
}

// scrapeHash returns a distinct hash for i made of unreserved bytes only, so
// that a query of many fits the size limit unescaped.
func scrapeHash(i int) string { return fmt.Sprintf("%020d", i) }

func TestParseScrape(t *testing.T) {
	many := func(n int, repeat bool) (string, []string) {
		var params, want []string
		for i := range n {
			params = append(params, "info_hash="+scrapeHash(i))
			if repeat {
				params = append(params, "info_hash="+scrapeHash(i))
			}
			want = append(want, scrapeHash(i))
		}
		return strings.Join(params, "&"), want
	}
	limit, limitWant := many(maxScrapeHashes, false)
	repeated, repeatedWant := many(maxScrapeHashes/2, true)
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"no info_hash", "", nil},
		{"only other parameters", "peer_id=x&foo=bar", nil},
		{"one", "info_hash=" + bepHashEscaped, []string{bepHash}},
		{"binary", "info_hash=" + escapeAll(binaryHash), []string{binaryHash}},
		{"plus is a space byte", "info_hash=" + scrapeHash(1)[:19] + "+", []string{scrapeHash(1)[:19] + " "}},
		{"semicolon is data", "info_hash=" + scrapeHash(1)[:19] + ";", []string{scrapeHash(1)[:19] + ";"}},
		{
			"order kept",
			"info_hash=" + scrapeHash(3) + "&info_hash=" + scrapeHash(1) + "&info_hash=" + scrapeHash(2),
			[]string{scrapeHash(3), scrapeHash(1), scrapeHash(2)},
		},
		{
			"duplicates removed, first position kept",
			"info_hash=" + scrapeHash(2) + "&info_hash=" + scrapeHash(1) + "&info_hash=" + escapeAll(scrapeHash(2)),
			[]string{scrapeHash(2), scrapeHash(1)},
		},
		{"as url.Values encodes it", url.Values{"info_hash": {binaryHash}}.Encode(), []string{binaryHash}},
		{"other parameters ignored", "x=%zz&info_hash=" + bepHashEscaped + "&peer_id=short", []string{bepHash}},
		{"escaped name", "info%5fhash=" + bepHashEscaped, []string{bepHash}},
		{"limit is inclusive", limit, limitWant},
		{"repeats do not count against the limit", repeated, repeatedWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScrape(tt.query)
			if err != nil {
				t.Fatalf("parseScrape(%q) error = %v, want nil", tt.query, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseScrape(%q) returned %d hashes, want %d", tt.query, len(got), len(tt.want))
			}
			for i := range got {
				if string(got[i][:]) != tt.want[i] {
					t.Errorf("parseScrape(%q)[%d] = %q, want %q", tt.query, i, got[i][:], tt.want[i])
				}
			}
		})
	}
}

func TestParseScrapeErrors(t *testing.T) {
	tooMany := make([]string, maxScrapeHashes+1)
	for i := range tooMany {
		tooMany[i] = "info_hash=" + scrapeHash(i)
	}
	tests := []struct {
		name    string
		query   string
		wantErr string
	}{
		{"short", "info_hash=" + escapeAll(binaryHash[:19]), "info_hash must be 20 bytes, got 19"},
		{"empty", "info_hash=" + bepHashEscaped + "&info_hash=", "info_hash must be 20 bytes, got 0"},
		{"bad escape", "info_hash=" + bepHashEscaped[:len(bepHashEscaped)-1], "bad percent-encoding in info_hash"},
		{"too many", strings.Join(tooMany, "&"), fmt.Sprintf("too many info_hash, at most %d", maxScrapeHashes)},
		{"too large", strings.Repeat("x", maxQueryLen+1), "request too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScrape(tt.query)
			if err == nil {
				t.Fatalf("parseScrape(%q) = %q, want error %q", tt.query, got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("parseScrape(%q) error = %v, want %q", tt.query, err, tt.wantErr)
			}
			var ce clientError
			if !errors.As(err, &ce) {
				t.Errorf("parseScrape(%q) error %v is a %T, want clientError", tt.query, err, err)
			}
		})
	}
}

// TestParseAnnounceMatchesReference checks the hand-written parser against
// one built on net/url for every query both can read.
func TestParseAnnounceMatchesReference(t *testing.T) {
	for _, q := range []string{
		required,
		required + "&event=completed&numwant=12&compact=0&key=k&trackerid=t&ip=1.2.3.4&uploaded=5&downloaded=6",
		required + "&info_hash=" + bepHashEscaped,
		strings.Replace(required, "port=6881", "port=70000", 1),
	} {
		checkAnnounceReference(t, q)
	}
}

// referenceAnnounce is parseAnnounce written the obvious way on top of
// net/url, for queries that url.ParseQuery accepts. It reports only whether
// the query is valid, not which error it has.
func referenceAnnounce(raw string) (q announceQuery, ok bool) {
	v, err := url.ParseQuery(raw)
	if err != nil || len(raw) > maxQueryLen {
		return q, false
	}
	q.Numwant = -1
	q.Compact = true
	id := func(name string, dst *[20]byte) bool {
		vs := v[name]
		if len(vs) == 0 || len(vs[0]) != 20 {
			return false
		}
		copy(dst[:], vs[0])
		return true
	}
	count := func(name string, dst *int64, required bool) bool {
		vs, has := v[name]
		if !has {
			return !required
		}
		s := vs[0]
		if s == "" || s[0] < '0' || s[0] > '9' {
			return false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		*dst = n
		return err == nil
	}
	if len(v["info_hash"]) > 1 || !id("info_hash", &q.InfoHash) || !id("peer_id", &q.PeerID) {
		return q, false
	}
	port, has := v["port"]
	if !has {
		return q, false
	}
	if port[0] == "" || port[0][0] < '0' || port[0][0] > '9' {
		return q, false
	}
	p, err := strconv.ParseUint(port[0], 10, 16)
	if err != nil || p == 0 {
		return q, false
	}
	q.Port = uint16(p)
	if !count("uploaded", &q.Uploaded, false) || !count("downloaded", &q.Downloaded, false) || !count("left", &q.Left, true) {
		return q, false
	}
	switch e := v.Get("event"); e {
	case "", "empty":
	case "started", "completed", "stopped", "paused":
		q.Event = e
	default:
		return q, false
	}
	if s := v.Get("numwant"); s != "" && s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(s, 10, 64)
		if err == nil || errors.Is(err, strconv.ErrRange) {
			q.Numwant = int(min(n, math.MaxInt32))
		}
	}
	if vs, has := v["compact"]; has {
		q.Compact = vs[0] != "0"
	}
	q.NoPeerID = v.Get("no_peer_id") == "1"
	q.Key = v.Get("key")
	q.TrackerID = v.Get("trackerid")
	q.IP = v.Get("ip")
	return q, true
}

// checkAnnounceReference compares parseAnnounce with referenceAnnounce and
// checks the invariants of an accepted query.
func checkAnnounceReference(t *testing.T, raw string) {
	t.Helper()
	got, err := parseAnnounce(raw)
	if err != nil {
		var ce clientError
		if !errors.As(err, &ce) {
			t.Fatalf("parseAnnounce(%q) error %v is a %T, want clientError", raw, err, err)
		}
	} else {
		if len(raw) > maxQueryLen {
			t.Fatalf("parseAnnounce accepted a query of %d bytes", len(raw))
		}
		if got.Port == 0 {
			t.Fatalf("parseAnnounce(%q) accepted port 0", raw)
		}
		if got.Uploaded < 0 || got.Downloaded < 0 || got.Left < 0 {
			t.Fatalf("parseAnnounce(%q) accepted negative counters %+v", raw, got)
		}
		switch got.Event {
		case "", "started", "completed", "stopped", "paused":
		default:
			t.Fatalf("parseAnnounce(%q) accepted event %q", raw, got.Event)
		}
		if got.Numwant < -1 {
			t.Fatalf("parseAnnounce(%q) numwant = %d", raw, got.Numwant)
		}
	}
	if _, err := url.ParseQuery(raw); err != nil {
		return // net/url cannot judge it: a ';' or an escape we ignore
	}
	want, ok := referenceAnnounce(raw)
	switch {
	case ok && err != nil:
		t.Fatalf("parseAnnounce(%q) error = %v, want %+v", raw, err, want)
	case !ok && err == nil:
		t.Fatalf("parseAnnounce(%q) = %+v, want an error", raw, got)
	case ok && got != want:
		t.Fatalf("parseAnnounce(%q) =\n%+v\nwant\n%+v", raw, got, want)
	}
}

func FuzzParseAnnounce(f *testing.F) {
	// A strict client: every binary byte escaped.
	f.Add(strings.Replace(required, bepHashEscaped, escapeAll(binaryHash), 1))
	// BEP 3's example hash, raw unreserved bytes between escapes.
	f.Add(required + "&uploaded=0&downloaded=0&event=started&numwant=50&compact=1&no_peer_id=1&key=abc&trackerid=t&ip=::1")
	// '+' and ';' inside values.
	f.Add(strings.Replace(required, testPeerID, "-RT0001-abcdefghi+;k", 1))
	// Repeated parameters: first wins, a second info_hash fails.
	f.Add(required + "&port=1&event=stopped&event=x&info_hash=" + bepHashEscaped)
	// Broken escapes and stray separators.
	f.Add("info_hash=%&peer_id=%g&&=&port=%2&left")
	// Numbers at and past their limits.
	f.Add(strings.Replace(required, "port=6881&left=0", "port=65536&left=9223372036854775808&numwant=99999999999999999999", 1))
	f.Fuzz(func(t *testing.T, raw string) {
		checkAnnounceReference(t, raw)
	})
}

func FuzzParseScrape(f *testing.F) {
	// Nothing asked: a valid, empty scrape.
	f.Add("")
	// Two distinct hashes and a repeat in another spelling.
	f.Add("info_hash=" + bepHashEscaped + "&info_hash=" + escapeAll(binaryHash) + "&info_hash=" + escapeAll(bepHash))
	// '+' and ';' inside a hash, and a parameter that is not ours.
	f.Add("info_hash=" + scrapeHash(7)[:18] + "+;&peer_id=%zz")
	// A hash of the wrong length and a broken escape.
	f.Add("info_hash=abc&info_hash=%4")
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseScrape(raw)
		if err != nil {
			var ce clientError
			if !errors.As(err, &ce) {
				t.Fatalf("parseScrape(%q) error %v is a %T, want clientError", raw, err, err)
			}
		} else {
			if len(got) > maxScrapeHashes {
				t.Fatalf("parseScrape(%q) returned %d hashes", raw, len(got))
			}
			seen := make(map[[20]byte]bool)
			for _, h := range got {
				if seen[h] {
					t.Fatalf("parseScrape(%q) repeated %q", raw, h[:])
				}
				seen[h] = true
			}
		}
		v, perr := url.ParseQuery(raw)
		if perr != nil || len(raw) > maxQueryLen {
			return
		}
		var want []string
		valid := true
		for _, h := range v["info_hash"] {
			if len(h) != 20 {
				valid = false
				break
			}
			if !slices.Contains(want, h) {
				want = append(want, h)
			}
		}
		if len(want) > maxScrapeHashes {
			valid = false
		}
		if valid != (err == nil) {
			t.Fatalf("parseScrape(%q) error = %v, want valid = %v", raw, err, valid)
		}
		if !valid {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("parseScrape(%q) returned %d hashes, want %d", raw, len(got), len(want))
		}
		for i := range got {
			if string(got[i][:]) != want[i] {
				t.Fatalf("parseScrape(%q)[%d] = %q, want %q", raw, i, got[i][:], want[i])
			}
		}
	})
}

// BenchmarkParseAnnounce parses what a typical client sends on its first
// announce; it should not allocate. The baseline is the same parse done the
// obvious way on url.ParseQuery (referenceAnnounce).
func BenchmarkParseAnnounce(b *testing.B) {
	raw := "info_hash=" + bepHashEscaped + "&peer_id=-qB4650-%8B%A1%9F%04%02%C7%F2%91%CF%3E%95%DF" +
		"&port=50007&uploaded=0&downloaded=0&left=1073741824&corrupt=0&key=5C0A2B1F&event=started" +
		"&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0"
	if _, err := parseAnnounce(raw); err != nil {
		b.Fatal(err)
	}
	if _, ok := referenceAnnounce(raw); !ok {
		b.Fatal("referenceAnnounce rejects the benchmark query")
	}
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseAnnounce(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-url", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			referenceAnnounce(raw)
		}
	})
}
