package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/storage/storagetest"
)

// The .torrent files of testdata/torrents (see its README) and what they
// hold.
const (
	singleHash   = "AE4915D450F17AC71AE967077A94D6E22DABEAAB" // payload.bin, 100000 bytes
	singleName   = "payload.bin"
	singleLength = 100000
	multiHash    = "3200158B671E9C2C334588117AE18DC6E88DC1CF" // bundle/, 110000 bytes
	multiName    = "bundle"
	multiLength  = 110000
)

func torrentFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "torrents", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHash(t testing.TB, s string) storage.InfoHash {
	t.Helper()
	h, err := storage.ParseInfoHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// apiRacks places the hosts the API tests announce for with ip=:
// 10.1.0.0/24 is r1, 10.2.0.0/24 is r2.
func apiRacks(t testing.TB) *rackmap.Map {
	t.Helper()
	cfg := rackmap.DefaultConfig()
	cfg.Map = []rackmap.Rack{
		{Name: "r1", CIDRs: []string{"10.1.0.0/24"}},
		{Name: "r2", CIDRs: []string{"10.2.0.0/24"}},
	}
	m, err := rackmap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newAPIRig is a rig whose peers name their address with ip= (trusted),
// placed by apiRacks, with one representative per rack so that elections
// are easy to follow.
func newAPIRig(t *testing.T, backend string, edit func(*Config)) *rig {
	t.Helper()
	r := newRig(t, backend, func(c *Config, p *RackPolicy) {
		c.Announce.TrustIPParam = true
		p.RepresentativesPerRack = 1
		if edit != nil {
			edit(c)
		}
	})
	r.srv.SetRacks(apiRacks(t))
	return r
}

// apiResult is an answer of the API.
type apiResult struct {
	status int
	header http.Header
	body   []byte
}

// apiCall sends one request to url and reads the whole answer.
func apiCall(t testing.TB, method, url string, body []byte, contentType, token string) apiResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return apiResult{status: res.StatusCode, header: res.Header, body: b}
}

// decode reads a JSON answer into v, after checking its status.
func (a apiResult) decode(t testing.TB, what string, status int, v any) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("%s: %v in %s", what, err, a.body)
	}
}

// errorText checks that a is a JSON error with the status and returns its
// text.
func (a apiResult) errorText(t testing.TB, what string, status int) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	a.decode(t, what, status, &e)
	if e.Error == nil || *e.Error == "" {
		t.Errorf("%s: body %s, want {\"error\": \"...\"}", what, a.body)
		return ""
	}
	return *e.Error
}

func (r *rig) api(t testing.TB, method, path string, body []byte, contentType string) apiResult {
	t.Helper()
	return apiCall(t, method, r.http.URL+path, body, contentType, "")
}

// multipartBody is a form with the file under field.
func multipartBody(t testing.TB, field string, file []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("comment", "uploaded by a deploy script"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile(field, "upload.torrent")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// swarmStep is one announce of the scripted swarm.
type swarmStep struct {
	ip                   string
	port                 int
	event                string
	left                 int64
	uploaded, downloaded int64
}

// swarmScript is the swarm of the API and dashboard tests, on
// single.torrent. With one representative per rack: 10.1.0.2 is elected in
// r1 (its first leecher) and stays one after it completes; 10.2.0.1 in r2;
// 10.2.0.2 comes after r2's slot is taken, then stops.
var swarmScript = []swarmStep{
	{"10.1.0.1", 6001, "started", 0, 4000, 0},
	{"10.1.0.2", 6002, "started", 50000, 0, 50000},
	{"10.1.0.3", 6003, "started", singleLength, 0, 0},
	{"10.2.0.1", 6004, "started", singleLength, 0, 0},
	{"10.2.0.2", 6005, "started", 25000, 100, 75000},
	{"10.2.0.2", 6005, "stopped", 25000, 100, 75000},
	{"10.1.0.2", 6002, "completed", 0, 300, singleLength},
}

// runSwarm announces swarmScript through /announce, one clock second apart,
// starting a second after the current time.
func runSwarm(t testing.TB, r *rig, h storage.InfoHash) {
	t.Helper()
	local := newHost(t, "127.0.0.1")
	for _, s := range swarmScript {
		r.clock.Advance(time.Second)
		resp := r.announce(t, local, params{
			hash: h, peerID: fmt.Sprintf("-RT0001-%012d", s.port), port: s.port, event: s.event, left: s.left,
			uploaded: s.uploaded, downloaded: s.downloaded, extra: "ip=" + s.ip,
		})
		if resp.Failure != "" {
			t.Fatalf("announce %+v: %s", s, resp.Failure)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// rigTime is the rig's start time plus d, as stored.
func rigTime(d time.Duration) string {
	return storage.FormatTime(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).Add(d))
}

// swarmWant is the single transfer's state after runSwarm, registered at
// the rig's start time.
func swarmWant(announceURL string) transferJSON {
	return transferJSON{
		Hash: singleHash, Name: singleName, Length: ptrTo[int64](singleLength), Active: true,
		AnnounceURL:  announceURL,
		Registered:   ptrTo(rigTime(0)),
		FirstStarted: ptrTo(rigTime(1 * time.Second)), LastStarted: ptrTo(rigTime(5 * time.Second)),
		FirstCompleted: ptrTo(rigTime(7 * time.Second)), LastCompleted: ptrTo(rigTime(7 * time.Second)),
		LastAnnounce: ptrTo(rigTime(7 * time.Second)),
		Seeders:      2, Leechers: 2, Representatives: 2, PeersSeen: 5, Completions: 1,
		Uploaded: 4300, Downloaded: singleLength, Left: 2 * singleLength,
		Progress: ptrTo(0.5), // 4 peers hold 2 of 4 copies
		Racks: []rackJSON{
			{
				Rack: "r1", Seeders: 2, Leechers: 1, PeersSeen: 3,
				Representatives: 1, RepresentativePeers: []string{"10.1.0.2:6002"},
				Left: singleLength, Progress: ptrTo(2.0 / 3),
			},
			{
				Rack: "r2", Seeders: 0, Leechers: 1, PeersSeen: 2,
				Representatives: 1, RepresentativePeers: []string{"10.2.0.1:6004"},
				Left: singleLength, Progress: ptrTo(0.0),
			},
		},
	}
}

// sameJSON compares two values by their JSON form, which is what a client
// sees, and reports the difference readably.
func sameJSON(t testing.TB, what string, got, want any) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

// TestAdminTransferLifecycle registers, lists, shows, announces to,
// deactivates and registers again, through the API over a real HTTP server,
// and checks the keys deactivation leaves.
func TestAdminTransferLifecycle(t *testing.T) {
	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil)
			ctx := context.Background()
			announceURL := r.http.URL + "/announce"
			single, multi := torrentFile(t, "single.torrent"), torrentFile(t, "multi.torrent")
			sh := mustHash(t, singleHash)

			// Register: the raw body, and a multipart form.
			res := r.api(t, "POST", "/api/transfers", single, "application/x-bittorrent")
			var got transferJSON
			res.decode(t, "register single", http.StatusCreated, &got)
			sameJSON(t, "register single", got, transferJSON{
				Hash: singleHash, Name: singleName, Length: ptrTo[int64](singleLength), Active: true,
				AnnounceURL: announceURL, Registered: ptrTo(rigTime(0)), Racks: []rackJSON{},
			})
			if loc := res.header.Get("Location"); loc != "/api/transfers/"+singleHash {
				t.Errorf("Location %q", loc)
			}
			body, ct := multipartBody(t, "torrent", multi)
			r.api(t, "POST", "/api/transfers", body, ct).decode(t, "register multi", http.StatusCreated, &got)
			if got.Hash != multiHash || got.Name != multiName || got.Length == nil || *got.Length != multiLength {
				t.Errorf("register multi = %s %q %v, want %s %q %d", got.Hash, got.Name, got.Length, multiHash, multiName, multiLength)
			}
			if e := r.api(t, "POST", "/api/transfers", single, "").errorText(t, "register again", http.StatusConflict); !strings.Contains(e, "already active") {
				t.Errorf("register again: %q, want it to say already active", e)
			}

			// The .torrent comes back as it was uploaded.
			for _, tc := range []struct {
				hash, filename string
				want           []byte
			}{
				{singleHash, "payload.bin.torrent", single},
				{strings.ToLower(multiHash), "bundle.torrent", multi},
			} {
				res := r.api(t, "GET", "/api/transfers/"+tc.hash+"/torrent", nil, "")
				if res.status != http.StatusOK || !bytes.Equal(res.body, tc.want) {
					t.Errorf("GET torrent %s: status %d, %d bytes; want 200 and the %d bytes uploaded", tc.hash, res.status, len(res.body), len(tc.want))
				}
				if ct := res.header.Get("Content-Type"); ct != "application/x-bittorrent" {
					t.Errorf("GET torrent %s: Content-Type %q", tc.hash, ct)
				}
				_, p, err := mime.ParseMediaType(res.header.Get("Content-Disposition"))
				if err != nil || p["filename"] != tc.filename {
					t.Errorf("GET torrent %s: Content-Disposition %q, want filename %q", tc.hash, res.header.Get("Content-Disposition"), tc.filename)
				}
			}

			runSwarm(t, r, sh)
			want := swarmWant(announceURL)
			r.api(t, "GET", "/api/transfers/"+singleHash, nil, "").decode(t, "show", http.StatusOK, &got)
			sameJSON(t, "show after the swarm", got, want)

			var list transfersJSON
			r.api(t, "GET", "/api/transfers", nil, "").decode(t, "list", http.StatusOK, &list)
			if len(list.Active) != 2 || list.Active[0].Hash != multiHash || list.History == nil || len(list.History) != 0 {
				t.Errorf("list: %+v, want multi then single active, empty history", list)
			} else {
				sameJSON(t, "listed single", list.Active[1], want)
			}

			var racks racksJSON
			r.api(t, "GET", "/api/racks", nil, "").decode(t, "racks", http.StatusOK, &racks)
			sameJSON(t, "racks", racks, racksJSON{Racks: []rackHostsJSON{
				{Rack: "r1", Hosts: []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"}},
				{Rack: "r2", Hosts: []string{"10.2.0.1", "10.2.0.2"}},
			}})

			// Deactivate: the answer is the final state.
			before := storagetest.Keyspace(t, r.raw, singleHash+":*")
			r.clock.Advance(time.Second)
			deregistered := rigTime(8 * time.Second)
			r.api(t, "DELETE", "/api/transfers/"+singleHash, nil, "").decode(t, "deactivate", http.StatusOK, &got)
			final := want
			final.Active, final.Deregistered = false, ptrTo(deregistered)
			sameJSON(t, "deactivate", got, final)

			// Every key of the transfer moved under <datetime>:<hash>,
			// with its value; only the index of runs stays.
			after := storagetest.Keyspace(t, r.raw, "*"+singleHash+"*")
			prefix := deregistered + ":"
			for k, v := range before {
				if got, ok := after[prefix+k]; !ok || got != v {
					t.Errorf("%s after deactivation = %q (present %v), want %s's value %q", prefix+k, got, ok, k, v)
				}
			}
			for k, v := range after {
				switch {
				case k == singleHash+":deactivations":
					if v != "set["+deregistered+"]" {
						t.Errorf("%s = %s, want set[%s]", k, v, deregistered)
					}
				case k == prefix+singleHash+":deregistered":
					if v != deregistered {
						t.Errorf("%s = %q, want %q", k, v, deregistered)
					}
				case !strings.HasPrefix(k, prefix):
					t.Errorf("key %s left behind by deactivation", k)
				default:
					if _, ok := before[strings.TrimPrefix(k, prefix)]; !ok {
						t.Errorf("key %s after deactivation was not there before", k)
					}
				}
			}
			// The keys of SPEC section 3 are among them, with their values.
			for _, tc := range []struct{ key, want string }{
				{":name", singleName},
				{":length", "100000"},
				{":registered", rigTime(0)},
				{":deregistered", deregistered},
				{":first_started", rigTime(1 * time.Second)},
				{":last_started", rigTime(5 * time.Second)},
				{":first_completed", rigTime(7 * time.Second)},
				{":last_completed", rigTime(7 * time.Second)},
				{":torrent", string(single)},
				{":peers:N", "set[10.1.0.1:6001 10.1.0.2:6002 10.1.0.3:6003 10.2.0.1:6004 10.2.0.2:6005]"},
				{":peers:R", "set[10.1.0.2:6002 10.2.0.1:6004]"},
				{":peers:S", "set[10.1.0.1:6001 10.1.0.2:6002]"},
				{":peers:L", "set[10.1.0.3:6003 10.2.0.1:6004]"},
				{":rack:r1:N", "set[10.1.0.1:6001 10.1.0.2:6002 10.1.0.3:6003]"},
				{":rack:r1:R", "set[10.1.0.2:6002]"},
				{":rack:r1:S", "set[10.1.0.1:6001 10.1.0.2:6002]"},
				{":rack:r2:N", "set[10.2.0.1:6004 10.2.0.2:6005]"},
				{":rack:r2:R", "set[10.2.0.1:6004]"},
				{":peer:10.1.0.2:seeder", "True"},
				{":peer:10.1.0.2:left", "0"},
				{":peer:10.1.0.2:uploaded", "300"},
				{":peer:10.1.0.2:rack", "r1"},
				{":peer:10.1.0.2:port", "6002"},
				{":peer:10.1.0.2:last_event", "completed"},
				{":peer:10.1.0.2:event:completed", rigTime(7 * time.Second)},
				{":peer:10.2.0.2:event:stopped", rigTime(6 * time.Second)},
				{":peer:10.2.0.2:hostname", "10.2.0.2"},
			} {
				if got := after[prefix+singleHash+tc.key]; got != tc.want {
					t.Errorf("%s%s%s = %q, want %q", prefix, singleHash, tc.key, got, tc.want)
				}
			}
			if ok, err := r.raw.SIsMember(ctx, "active_transfers", singleHash).Result(); err != nil || ok {
				t.Errorf("SISMEMBER active_transfers %s = %v, %v; want false", singleHash, ok, err)
			}
			if ok, err := r.raw.SIsMember(ctx, "transfers", singleHash).Result(); err != nil || !ok {
				t.Errorf("SISMEMBER transfers %s = %v, %v; want true", singleHash, ok, err)
			}

			// It is history now.
			r.api(t, "GET", "/api/transfers", nil, "").decode(t, "list after deactivation", http.StatusOK, &list)
			if len(list.Active) != 1 || list.Active[0].Hash != multiHash {
				t.Errorf("active after deactivation: %+v, want only %s", list.Active, multiHash)
			}
			sameJSON(t, "history", list.History, []deactivatedJSON{{
				Hash: singleHash, Name: singleName, Length: ptrTo[int64](singleLength),
				Registered: ptrTo(rigTime(0)), Deregistered: deregistered,
				PeersSeen: 5, Completions: 1, Uploaded: 4300, Downloaded: singleLength,
			}})
			for _, tc := range []struct{ method, path string }{
				{"GET", "/api/transfers/" + singleHash},
				{"DELETE", "/api/transfers/" + singleHash},
				{"GET", "/api/transfers/" + singleHash + "/torrent"},
			} {
				r.api(t, tc.method, tc.path, nil, "").errorText(t, tc.method+" "+tc.path+" after deactivation", http.StatusNotFound)
			}

			// The same hash registers afresh.
			r.api(t, "POST", "/api/transfers", single, "").decode(t, "register after deactivation", http.StatusCreated, &got)
			sameJSON(t, "register after deactivation", got, transferJSON{
				Hash: singleHash, Name: singleName, Length: ptrTo[int64](singleLength), Active: true,
				AnnounceURL: announceURL, Registered: ptrTo(deregistered), Racks: []rackJSON{},
			})
			r.api(t, "GET", "/api/transfers", nil, "").decode(t, "list after registering again", http.StatusOK, &list)
			if len(list.Active) != 2 || len(list.History) != 1 {
				t.Errorf("after registering again: %d active, %d in history; want 2 and 1", len(list.Active), len(list.History))
			}
		})
	}
}

// TestAdminErrors: every refusal is a JSON error with the right status,
// and writes nothing.
func TestAdminErrors(t *testing.T) {
	// A well-formed .torrent whose pieces do not cover its length.
	short, err := bencode.Marshal(map[string]any{
		"announce": "http://127.0.0.1:6969/announce",
		"info":     map[string]any{"name": "x", "piece length": 32768, "length": 100000, "pieces": strings.Repeat("p", 20)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tooLarge := make([]byte, maxTorrentSize+1)
	formNoField, formNoFieldType := multipartBody(t, "file", torrentFile(t, "single.torrent"))
	formTooLarge, formTooLargeType := multipartBody(t, "torrent", tooLarge)
	unknown := strings.Repeat("0", 40)

	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil)
			ctx := context.Background()
			keys := r.raw.DBSize(ctx).Val()
			for _, tc := range []struct {
				name, method, path string
				body               []byte
				contentType        string
				status             int
				want               string // in the error text
			}{
				{"corrupt torrent", "POST", "/api/transfers", torrentFile(t, "corrupt.torrent"), "application/x-bittorrent", 400, "not a valid .torrent: bencode"},
				{"empty body", "POST", "/api/transfers", nil, "", 400, "empty upload"},
				{"not bencoded", "POST", "/api/transfers", []byte("hello"), "", 400, "not a valid .torrent"},
				{"no info", "POST", "/api/transfers", []byte("d8:announce3:urle"), "", 400, "no info dictionary"},
				{"pieces short", "POST", "/api/transfers", short, "", 400, "1 piece hashes for 100000 bytes"},
				{"form without the field", "POST", "/api/transfers", formNoField, formNoFieldType, 400, `no field "torrent"`},
				{"too large", "POST", "/api/transfers", tooLarge, "application/x-bittorrent", 413, "upload larger than 16 MiB"},
				{"form too large", "POST", "/api/transfers", formTooLarge, formTooLargeType, 413, "larger than"},
				{"bad hash", "GET", "/api/transfers/xyz", nil, "", 400, `bad info hash "xyz"`},
				{"short hash", "DELETE", "/api/transfers/ABCD", nil, "", 400, "40 hex digits"},
				{"bad hash torrent", "GET", "/api/transfers/" + strings.Repeat("g", 40) + "/torrent", nil, "", 400, "bad info hash"},
				{"unknown", "GET", "/api/transfers/" + unknown, nil, "", 404, "not active"},
				{"delete unknown", "DELETE", "/api/transfers/" + unknown, nil, "", 404, "not active"},
				{"torrent unknown", "GET", "/api/transfers/" + unknown + "/torrent", nil, "", 404, "no .torrent"},
				{"wrong method", "PUT", "/api/transfers", nil, "", 405, "PUT not allowed"},
				{"wrong method on racks", "POST", "/api/racks", nil, "", 405, "not allowed"},
				{"no such endpoint", "GET", "/api/nope", nil, "", 404, "no such endpoint"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					res := r.api(t, tc.method, tc.path, tc.body, tc.contentType)
					if e := res.errorText(t, tc.name, tc.status); !strings.Contains(e, tc.want) {
						t.Errorf("%s %s: error %q, want it to contain %q", tc.method, tc.path, e, tc.want)
					}
				})
			}
			res := r.api(t, "PUT", "/api/transfers", nil, "")
			if allow := res.header.Get("Allow"); allow != "GET, HEAD, POST" {
				t.Errorf("PUT /api/transfers: Allow %q, want %q", allow, "GET, HEAD, POST")
			}
			if n := r.raw.DBSize(ctx).Val(); n != keys {
				t.Errorf("refused requests changed the store: %d keys, %d before", n, keys)
			}
		})
	}
}

// TestAdminToken: with admin.token set, /api needs it, and the dashboard
// does not.
func TestAdminToken(t *testing.T) {
	const token = "s3cret-token"
	r := newAPIRig(t, storage.BackendEmbedded, func(c *Config) { c.Admin.Token = token })
	for _, tc := range []struct {
		name, path, auth string
		status           int
		challenge        string // in WWW-Authenticate
	}{
		{"no header", "/api/transfers", "", 401, `Bearer realm=`},
		{"wrong token", "/api/transfers", "Bearer s3cret-tokeN", 401, `error="invalid_token"`},
		{"prefix of the token", "/api/transfers", "Bearer s3cret", 401, `error="invalid_token"`},
		{"empty token", "/api/transfers", "Bearer ", 401, `Bearer realm=`},
		{"basic scheme", "/api/transfers", "Basic " + token, 401, `Bearer realm=`},
		{"right token", "/api/transfers", "Bearer " + token, 200, ""},
		{"scheme in lower case", "/api/racks", "bearer " + token, 200, ""},
		{"unknown path without token", "/api/nope", "", 401, `Bearer realm=`},
		{"unknown path with token", "/api/nope", "Bearer " + token, 404, ""},
		{"dashboard without token", "/", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", r.http.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Fatalf("GET %s with %q: status %d, want %d; body %s", tc.path, tc.auth, res.StatusCode, tc.status, body)
			}
			if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) || (tc.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if tc.status == 401 && bytes.Contains(body, []byte(token)) {
				t.Errorf("401 body %s shows the token", body)
			}
		})
	}
}

// TestAdminSeparateListener: with admin.listen set, the public handler has
// no /api, and AdminHandler serves it.
func TestAdminSeparateListener(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, func(c *Config) { c.Admin.Listen = "127.0.0.1:6970" })
	admin := httptest.NewServer(r.srv.AdminHandler())
	t.Cleanup(admin.Close)
	single := torrentFile(t, "single.torrent")

	for _, path := range []string{"/api/transfers", "/api/racks", "/api/transfers/" + singleHash} {
		if res := r.api(t, "GET", path, nil, ""); res.status != http.StatusNotFound {
			t.Errorf("public GET %s: status %d, want 404", path, res.status)
		}
	}
	if res := r.api(t, "POST", "/api/transfers", single, ""); res.status != http.StatusNotFound {
		t.Errorf("public POST /api/transfers: status %d, want 404", res.status)
	}
	if res := r.api(t, "GET", "/", nil, ""); res.status != http.StatusOK {
		t.Errorf("public GET /: status %d, want 200 (the dashboard stays public)", res.status)
	}

	var got transferJSON
	apiCall(t, "POST", admin.URL+"/api/transfers", single, "", "").decode(t, "register on the admin listener", http.StatusCreated, &got)
	// Clients announce to listen (DefaultConfig: 127.0.0.1:6969), not to
	// the admin address the caller reached.
	if got.AnnounceURL != "http://127.0.0.1:6969/announce" {
		t.Errorf("announce_url %q, want http://127.0.0.1:6969/announce", got.AnnounceURL)
	}
	var list transfersJSON
	apiCall(t, "GET", admin.URL+"/api/transfers", nil, "", "").decode(t, "list on the admin listener", http.StatusOK, &list)
	if len(list.Active) != 1 || list.Active[0].Hash != singleHash {
		t.Errorf("admin list: %+v, want %s", list.Active, singleHash)
	}
}

func TestAnnounceURL(t *testing.T) {
	for _, tc := range []struct {
		listen, admin, host, want string
	}{
		{"127.0.0.1:6969", "", "tracker.dc:6969", "http://tracker.dc:6969/announce"},
		{"0.0.0.0:6969", "", "10.0.0.5:6969", "http://10.0.0.5:6969/announce"},
		{"10.0.0.5:6969", "127.0.0.1:7000", "127.0.0.1:7000", "http://10.0.0.5:6969/announce"},
		{"tracker.internal:6969", "127.0.0.1:7000", "localhost:7000", "http://tracker.internal:6969/announce"},
		{"0.0.0.0:6969", "0.0.0.0:7000", "tracker.dc:7000", "http://tracker.dc:6969/announce"},
		{":6969", ":7000", "tracker.dc", "http://tracker.dc:6969/announce"},
		{"[::]:6969", "[::1]:7000", "[fd00::1]:7000", "http://[fd00::1]:6969/announce"},
	} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.Admin.Listen = tc.listen, tc.admin
		s := New(cfg, DefaultRackPolicy(), nil, apiRacks(t), Options{})
		req := httptest.NewRequest("GET", "/api/transfers", nil)
		req.Host = tc.host
		if got := s.announceURL(req); got != tc.want {
			t.Errorf("listen %q, admin.listen %q, Host %q: announceURL = %q, want %q", tc.listen, tc.admin, tc.host, got, tc.want)
		}
	}
}

// breakStore makes the rig's storage fail: the redis-server stops, or the
// embedded store closes.
func breakStore(t *testing.T, r *rig) {
	t.Helper()
	if r.redis != nil {
		r.redis.Stop()
		return
	}
	if err := r.store.Close(context.Background()); err != nil {
		t.Fatalf("closing the embedded store: %v", err)
	}
}

// TestAdminStorageOutage: every endpoint answers 503 with a JSON error
// while the store is away.
func TestAdminStorageOutage(t *testing.T) {
	for _, backend := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(backend, func(t *testing.T) {
			r := newAPIRig(t, backend, nil)
			single := torrentFile(t, "single.torrent")
			r.api(t, "POST", "/api/transfers", single, "").decode(t, "register", http.StatusCreated, &transferJSON{})
			breakStore(t, r)
			for _, tc := range []struct {
				method, path string
				body         []byte
			}{
				{"GET", "/api/transfers", nil},
				{"GET", "/api/transfers/" + singleHash, nil},
				{"GET", "/api/transfers/" + singleHash + "/torrent", nil},
				{"DELETE", "/api/transfers/" + singleHash, nil},
				{"POST", "/api/transfers", torrentFile(t, "multi.torrent")},
				{"GET", "/api/racks", nil},
			} {
				what := tc.method + " " + tc.path
				if e := r.api(t, tc.method, tc.path, tc.body, "").errorText(t, what, http.StatusServiceUnavailable); e != failureStorage {
					t.Errorf("%s: error %q, want %q", what, e, failureStorage)
				}
			}
		})
	}
}

// logRecorder keeps the records logged through it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// TestAdminLogging: one debug line per request, and info only for a
// change of state.
func TestAdminLogging(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, nil)
	rec := &logRecorder{}
	srv := New(DefaultConfig(), DefaultRackPolicy(), r.store, apiRacks(t), Options{Now: r.clock.Now, Logger: slog.New(rec)})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	apiCall(t, "POST", ts.URL+"/api/transfers", torrentFile(t, "single.torrent"), "", "")
	apiCall(t, "GET", ts.URL+"/api/transfers", nil, "", "")
	apiCall(t, "GET", ts.URL+"/api/transfers/xyz", nil, "", "")
	apiCall(t, "GET", ts.URL+"/", nil, "", "")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var requests []string
	for _, r := range rec.records {
		switch {
		case r.Level == slog.LevelDebug && r.Message == "request":
			var method, path string
			var status int64
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "method":
					method = a.Value.String()
				case "path":
					path = a.Value.String()
				case "status":
					status = a.Value.Int64()
				}
				return true
			})
			requests = append(requests, fmt.Sprintf("%s %s %d", method, path, status))
		case r.Level == slog.LevelInfo && r.Message == "registered transfer":
		case r.Level >= slog.LevelInfo:
			t.Errorf("logged %s %q for a request", r.Level, r.Message)
		}
	}
	want := []string{"POST /api/transfers 201", "GET /api/transfers 200", "GET /api/transfers/xyz 400", "GET / 200"}
	if !slices.Equal(requests, want) {
		t.Errorf("debug request lines %q, want %q", requests, want)
	}
}
