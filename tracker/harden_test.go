package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"racktracker/storage"
)

// nested is a body of depth nested lists: what once crashed the process
// with a stack overflow in the decoder.
func nested(depth int) []byte {
	return append(append([]byte("d4:infol"), bytes.Repeat([]byte("l"), depth)...), bytes.Repeat([]byte("e"), depth+2)...)
}

// TestUploadHostile: bodies built to exhaust the decoder are refused
// before decoding, with a 400 or 413 naming the problem, and the tracker
// serves on.
func TestUploadHostile(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, nil)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"4 MB of nested lists", nested(4 << 20), http.StatusBadRequest, "nested deeper than 32"},
		{"a million empty lists", append(append([]byte("d8:announcel"), bytes.Repeat([]byte("le"), 1<<20+1)...), "ee"...), http.StatusBadRequest, "more than 1048576 bencoded values"},
		{"oversize", bytes.Repeat([]byte("x"), maxTorrentSize+1), http.StatusRequestEntityTooLarge, "larger than 16 MiB"},
		{"trailing data", append(torrentFile(t, "single.torrent"), "junk"...), http.StatusBadRequest, "bytes after the dictionary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.api(t, "POST", "/api/transfers", tc.body, "").errorText(t, tc.name, tc.status)
			if !strings.Contains(got, tc.want) {
				t.Errorf("error %q, want it to mention %q", got, tc.want)
			}
		})
	}
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register after", http.StatusCreated, &transferJSON{})
}

// TestScanTorrent: the pre-decoding scan accepts what the decoder takes
// and refuses the rest, up to the depth limit exactly.
func TestScanTorrent(t *testing.T) {
	deep := func(n int) string { // a dictionary holding n-1 nested lists
		return "d1:a" + strings.Repeat("l", n-1) + strings.Repeat("e", n-1) + "e"
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"de", true},
		{"d1:ai-5ee\n", true},
		{"d1:ad1:bl1:cee1:ci0ee", true},
		{deep(maxBencodeDepth), true},
		{deep(maxBencodeDepth + 1), false},
		{"", false},
		{"le", false},
		{"d", false},
		{"di1ei2ee", false},   // integer key
		{"d1:ae", false},      // key without value
		{"d1:a5:abce", false}, // string past the end
		{"d1:aiee", false},
		{"d1:ai--1ee", false},
		{"d1:a99999999999:xe", false},
		{"dee", false},
		{"dex", false},
	} {
		err := scanTorrent([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("scanTorrent(%.40q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

// TestUploadBudget: uploads wait while the budget is spent, give up when
// their context ends, and go on when another upload releases.
func TestUploadBudget(t *testing.T) {
	b := newByteBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.acquire(short, 60); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire over the budget = %v, want a timeout", err)
	}
	done := make(chan error)
	go func() { done <- b.acquire(ctx, 60) }()
	select {
	case err := <-done:
		t.Fatalf("acquire over the budget returned %v before a release", err)
	case <-time.After(20 * time.Millisecond):
	}
	b.release(60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(short, 1000); err == nil {
		t.Errorf("an upload larger than the budget got in beside another")
	}
	b.release(60)
	if err := b.acquire(ctx, 1000); err != nil {
		t.Errorf("an upload larger than the budget, alone: %v", err)
	}
}

// TestUploadBudgetHTTP: while the budget is spent, an upload is answered
// 503 with Retry-After after the wait, not read into memory.
func TestUploadBudgetHTTP(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, nil)
	r.srv.uploads = newByteBudget(uploadCost(1000))
	if err := r.srv.uploads.acquire(context.Background(), uploadCost(1000)); err != nil {
		t.Fatal(err)
	}
	r.srv.uploadWait = 50 * time.Millisecond
	res := r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "")
	res.errorText(t, "upload while the budget is spent", http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	r.srv.uploads.release(uploadCost(1000))
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register", http.StatusCreated, &transferJSON{})
}

// FuzzUpload feeds the upload path (scan, then decode and check) with
// arbitrary bytes: it must never panic nor accept a body the scan refused.
// Seeds: testdata/fuzz/FuzzUpload (real torrents, deep and wide nesting,
// truncations).
func FuzzUpload(f *testing.F) {
	f.Add([]byte("d4:infod6:lengthi1e4:name1:a12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"))
	f.Add(nested(100))
	f.Fuzz(func(t *testing.T, b []byte) {
		scanErr := scanTorrent(b)
		m, err := parseTorrent(b)
		if scanErr != nil && err == nil {
			t.Fatalf("parseTorrent accepted what scanTorrent refused: %v", scanErr)
		}
		if err == nil && (m.name == "" || m.length < 0) {
			t.Fatalf("parseTorrent = %+v, want a name and a length", m)
		}
	})
}

// TestDeactivatedAnnounce: after DELETE, announces get "transfer
// deactivated" (with intervals) and write nothing, until the .torrent is
// registered again.
func TestDeactivatedAnnounce(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, r *rig) {
		r.srv.SetRacks(apiRacks(t))
		h := mustHash(t, singleHash)
		local := newHost(t, "127.0.0.1")
		r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register", http.StatusCreated, &transferJSON{})
		if resp := r.announce(t, local, params{hash: h, port: 1, left: 5, event: "started"}); resp.Failure != "" {
			t.Fatal(resp.Failure)
		}
		r.api(t, "DELETE", "/api/transfers/"+singleHash, nil, "").decode(t, "deactivate", http.StatusOK, &transferJSON{})
		before := len(r.raw.Keys(context.Background(), "*").Val())
		resp := r.announce(t, local, params{hash: h, port: 1, left: 5})
		if resp.Failure != "transfer deactivated" || resp.Interval < 27 || resp.MinInterval != 10 {
			t.Errorf("announce after DELETE = %+v, want failure \"transfer deactivated\" with interval ~30 and min interval 10", resp)
		}
		if after := len(r.raw.Keys(context.Background(), "*").Val()); after != before {
			t.Errorf("refused announce: %d keys, was %d", after, before)
		}
		r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register again", http.StatusCreated, &transferJSON{})
		if resp := r.announce(t, local, params{hash: h, port: 1, left: 5}); resp.Failure != "" || resp.Incomplete != 1 {
			t.Errorf("announce after registering again = %+v", resp)
		}
	})
}

// TestRegisterAttaches: a .torrent posted for a transfer announces alone
// activated attaches its name, length and file; deploy scripts can fetch
// it.
func TestRegisterAttaches(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, nil)
	h := mustHash(t, singleHash)
	local := newHost(t, "127.0.0.1")
	if resp := r.announce(t, local, params{hash: h, port: 1, left: 5, event: "started", extra: "ip=10.1.0.1"}); resp.Failure != "" {
		t.Fatal(resp.Failure)
	}
	var got transferJSON
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "attach", http.StatusCreated, &got)
	if got.Name != singleName || got.Length == nil || *got.Length != singleLength || got.Leechers != 1 {
		t.Errorf("attach = %+v, want the name, length and the leecher", got)
	}
	res := r.api(t, "GET", "/api/transfers/"+singleHash+"/torrent", nil, "")
	if res.status != http.StatusOK || !bytes.Equal(res.body, torrentFile(t, "single.torrent")) {
		t.Errorf("GET torrent after attach: status %d, %d bytes", res.status, len(res.body))
	}
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").errorText(t, "again", http.StatusConflict)
}

// TestMaxUnregisteredAnnounce: past transfers.max_unregistered an unknown
// hash gets a failure reason; registered transfers still announce.
func TestMaxUnregisteredAnnounce(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, func(c *Config, _ *RackPolicy) { c.Transfers.MaxUnregistered = 2 })
	local := newHost(t, "127.0.1.1")
	for _, b := range []byte{1, 2} {
		if resp := r.announce(t, local, params{hash: ih(b), port: 1, left: 5}); resp.Failure != "" {
			t.Fatal(resp.Failure)
		}
	}
	resp := r.announce(t, local, params{hash: ih(3), port: 1, left: 5})
	if !strings.Contains(resp.Failure, "too many unregistered transfers") || resp.Interval == 0 {
		t.Errorf("third unknown hash: %+v, want a failure naming the cap, with an interval", resp)
	}
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register", http.StatusCreated, &transferJSON{})
	if resp := r.announce(t, local, params{hash: mustHash(t, singleHash), port: 1, left: 5}); resp.Failure != "" {
		t.Errorf("registered transfer past the cap: %s", resp.Failure)
	}
}

// TestHistoryPagesAndRetention: the history comes in pages with a cursor,
// and the maintenance pass deletes runs past the retention.
func TestHistoryPagesAndRetention(t *testing.T) {
	eachBackend(t, func(c *Config, _ *RackPolicy) { c.Transfers.HistoryRetention = time.Hour }, func(t *testing.T, r *rig) {
		local := newHost(t, "127.0.1.1")
		ctx := context.Background()
		for b := byte(1); b <= 5; b++ {
			if resp := r.announce(t, local, params{hash: ih(b), port: 1, left: 5}); resp.Failure != "" {
				t.Fatal(resp.Failure)
			}
			if _, err := r.store.Deactivate(ctx, ih(b)); err != nil {
				t.Fatal(err)
			}
			r.clock.Advance(20 * time.Minute)
		}
		var seen []string
		after := ""
		for {
			var page transfersJSON
			r.api(t, "GET", "/api/transfers?limit=2&after="+after, nil, "").decode(t, "page", http.StatusOK, &page)
			if len(page.History) > 2 {
				t.Fatalf("page of %d, want at most 2", len(page.History))
			}
			for _, d := range page.History {
				seen = append(seen, d.Hash)
			}
			if page.HistoryNext == nil {
				break
			}
			after = *page.HistoryNext
		}
		want := []string{ih(5).String(), ih(4).String(), ih(3).String(), ih(2).String(), ih(1).String()}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("history over pages = %v, want %v", seen, want)
		}
		r.api(t, "GET", "/api/transfers?limit=0", nil, "").errorText(t, "limit 0", http.StatusBadRequest)
		r.api(t, "GET", "/api/transfers?after=nonsense", nil, "").errorText(t, "bad after", http.StatusBadRequest)

		// Now 100 minutes after the first run: runs 1 to 3 are past an hour.
		r.srv.maintain(ctx)
		var list transfersJSON
		r.api(t, "GET", "/api/transfers", nil, "").decode(t, "after pruning", http.StatusOK, &list)
		if got := len(list.History); got != 2 {
			t.Errorf("history after pruning: %d runs, want 2", got)
		}
		if keys := r.raw.Keys(ctx, "*"+ih(1).String()+"*").Val(); len(keys) != 0 {
			t.Errorf("keys of a pruned run remain: %q", keys)
		}
	})
}

// TestAdminNeedsTokenOffLoopback: a config that would serve /api beyond
// loopback without a token is refused, naming the fix.
func TestAdminNeedsTokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen, admin, token string
		ok                   bool
	}{
		{"127.0.0.1:6969", "", "", true},
		{"[::1]:6969", "", "", true},
		{"localhost:6969", "", "", true},
		{"0.0.0.0:6969", "", "", false},
		{":6969", "", "", false},
		{"10.0.0.5:6969", "", "", false},
		{"tracker.dc1:6969", "", "", false},
		{"0.0.0.0:6969", "127.0.0.1:6970", "", true},
		{"127.0.0.1:6969", "0.0.0.0:6970", "", false},
		{"0.0.0.0:6969", "", "s3cret", true},
	} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.Admin.Listen, cfg.Admin.Token = tc.listen, tc.admin, tc.token
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("listen %q admin.listen %q token %q: Validate = %v, want ok %v", tc.listen, tc.admin, tc.token, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "set admin.token") {
			t.Errorf("Validate = %v, want it to name the fix", err)
		}
	}
}

// TestPublicURL: announce_url in API answers is public_url's when set.
func TestPublicURL(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, func(c *Config) { c.PublicURL = "https://tracker.dc1:6969/bt/" })
	var got transferJSON
	r.api(t, "POST", "/api/transfers", torrentFile(t, "single.torrent"), "").decode(t, "register", http.StatusCreated, &got)
	if got.AnnounceURL != "https://tracker.dc1:6969/bt/announce" {
		t.Errorf("announce_url = %q, want https://tracker.dc1:6969/bt/announce", got.AnnounceURL)
	}
	for _, bad := range []string{"tracker.dc1:6969", "ftp://x", "http://", "http://u:p@x", "http://x/?a=1"} {
		cfg := DefaultConfig()
		cfg.PublicURL = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "public_url") {
			t.Errorf("public_url %q: Validate = %v, want an error", bad, err)
		}
	}
}

// TestHeaderLimit: a request whose header is over the limit gets HTTP 200
// with a bencoded failure reason, not net/http's bare 431, on a server set
// up as main sets it up.
func TestHeaderLimit(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, nil)
	hs := httptest.NewUnstartedServer(r.srv.Handler())
	hs.Config.MaxHeaderBytes = MaxHeaderBytes
	hs.Start()
	defer hs.Close()
	for _, path := range []string{"/announce?" + (params{hash: ih(1), port: 1}).query(), "/scrape"} {
		req := mustRequest(t, hs.URL+path)
		req.Header.Set("X-Padding", strings.Repeat("x", HeaderLimit+1))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var resp response
		if res.StatusCode != http.StatusOK || bencode.Unmarshal(body, &resp) != nil || resp.Failure != "request too large" || resp.Interval == 0 {
			t.Errorf("%s with a %d-byte header: status %d, body %q; want 200 and a bencoded failure reason", strings.Split(path, "?")[0], HeaderLimit, res.StatusCode, body)
		}
	}
	if keys := r.raw.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Errorf("an oversized request wrote %q", keys)
	}
}

// TestIdentityConflicts: a second client on one IP and one client over
// IPv4 and IPv6 are counted and logged, rate-limited.
func TestIdentityConflicts(t *testing.T) {
	r := newAPIRig(t, storage.BackendEmbedded, nil)
	rec := &logRecorder{}
	r.srv.log = slog.New(rec)
	local := newHost(t, "127.0.0.1")
	h := ih(0x42)
	for _, p := range []params{
		{hash: h, port: 1, left: 5, peerID: "-AA0001-000000000001", extra: "ip=10.1.0.1"},
		{hash: h, port: 2, left: 5, peerID: "-BB0001-000000000002", extra: "ip=10.1.0.1"}, // shared_ip
		{hash: h, port: 1, left: 5, peerID: "-AA0001-000000000001", extra: "ip=10.1.0.1"}, // shared_ip
		{hash: h, port: 3, left: 5, peerID: "-CC0001-000000000003", extra: "ip=10.2.0.1"},
		{hash: h, port: 3, left: 5, peerID: "-CC0001-000000000003", extra: "ip=fd00::1"}, // dual_stack
	} {
		if resp := r.announce(t, local, p); resp.Failure != "" {
			t.Fatal(resp.Failure)
		}
	}
	fams := scrapeMetrics(t, r)
	for kind, want := range map[string]float64{"shared_ip": 2, "dual_stack": 1} {
		if got, _ := metricValue(fams, "racktracker_identity_conflicts_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("identity conflicts %s = %v, want %v", kind, got, want)
		}
	}
	count := func(sub string) int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, r := range rec.records {
			if strings.Contains(r.Message, sub) && r.Level == slog.LevelWarn {
				n++
			}
		}
		return n
	}
	warns := count("two clients announce from one IP")
	if warns != 1 {
		t.Errorf("%d shared-IP warnings, want 1 (rate-limited)", warns)
	}
	if n := count("both IPv4 and IPv6"); n != 1 {
		t.Errorf("%d dual-stack warnings, want 1", n)
	}
}
