package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"racktracker/storage"
	"racktracker/storage/storagetest"
)

// started is a racktracker run in the test's process.
type started struct {
	base   string // http://127.0.0.1:PORT
	cancel context.CancelFunc
	done   chan error
	stderr *storagetest.Buffer // the program's log, read while it runs
}

// start runs the program with args until the test stops it, and waits for
// its listen line on stdout.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &started{cancel: cancel, done: make(chan error, 1), stderr: &storagetest.Buffer{}}
	go func() {
		err := run(ctx, args, pw, s.stderr)
		pw.Close()
		s.done <- err
	}()
	t.Cleanup(func() { s.stop(t) })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("run ended before listening: %v", <-s.done)
		}
		_, addr, found := strings.Cut(line, "racktracker listen ")
		if !found {
			t.Fatalf("first line %q, want the listen address", line)
		}
		s.base = addr
	case <-time.After(20 * time.Second):
		t.Fatal("run did not print its listen address within 20s")
	}
	go func() {
		for range lines {
		}
	}()
	return s
}

func (s *started) stop(t *testing.T) error {
	t.Helper()
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return within 20s of cancellation")
	}
	return nil
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "tracker.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRun boots the program on port 0 over the embedded store, checks
// /healthz, announces, scrapes, shuts down and finds the snapshot holding
// what was announced.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "data", "tracker.snapshot")
	cfg := writeConfig(t, dir, "listen: 127.0.0.1:0\nstorage:\n  embedded:\n    snapshot_path: "+snap+"\n")
	s := start(t, "-config", cfg)

	if code, body := httpGet(t, s.base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %q, want 200", code, body)
	}
	hash := strings.Repeat("\x42", 20)
	q := url.Values{"info_hash": {hash}, "peer_id": {"-RT0001-000000000001"}, "port": {"6881"}, "left": {"0"}, "event": {"started"}}
	if code, body := httpGet(t, s.base+"/announce?"+q.Encode()); code != 200 || !strings.Contains(body, "8:completei1e") {
		t.Fatalf("announce = %d %q, want a response counting one seeder", code, body)
	}
	if _, body := httpGet(t, s.base+"/scrape?info_hash="+url.QueryEscape(hash)); !strings.Contains(body, "8:completei1e") {
		t.Errorf("scrape = %q, want one seeder", body)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("run returned %v after shutdown", err)
	}
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no snapshot after shutdown: %v", err)
	}

	// The snapshot holds the transfer: a store opened on it finds it.
	scfg := storage.DefaultConfig()
	scfg.Embedded.SnapshotPath = snap
	st, err := storage.Open(context.Background(), scfg, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	var h storage.InfoHash
	copy(h[:], hash)
	ts, err := st.Transfer(context.Background(), h)
	if err != nil || ts.Seeders != 1 || ts.FirstStarted == "" {
		t.Errorf("restored transfer = %+v, %v; want one seeder and first_started", ts, err)
	}
}

// TestRunRefuses: what stops the start says why, and touches nothing.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "bad.snapshot")
	garbage := []byte("this is not a snapshot")
	if err := os.WriteFile(snap, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"corrupt snapshot", "listen: 127.0.0.1:0\nstorage:\n  embedded:\n    snapshot_path: " + snap + "\n", nil,
			[]string{snap, "not a racktracker snapshot"}},
		{"bad config", "listen: 127.0.0.1:0\nannounce:\n  interval: soon\n", nil,
			[]string{"tracker.yaml:3:", "announce.interval", "soon"}},
		{"missing explicit config", "", []string{"-config", filepath.Join(dir, "nope.yaml")},
			[]string{"nope.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args == nil {
				args = []string{"-config", writeConfig(t, t.TempDir(), tc.config)}
			}
			err := run(context.Background(), args, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("run succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("run error %q does not mention %q", err, w)
				}
			}
		})
	}
	if b, _ := os.ReadFile(snap); !bytes.Equal(b, garbage) {
		t.Errorf("the unreadable snapshot was changed")
	}
}

// TestReloadRacks: SIGHUP rereads the rack map; a config that does not load
// keeps the old one.
func TestReloadRacks(t *testing.T) {
	dir := t.TempDir()
	store := storagetest.FreeAddr(t)
	base := "listen: 127.0.0.1:0\nstorage:\n  embedded:\n    snapshot_path: " + filepath.Join(dir, "s") + "\n    listen: " + store + "\n"
	cfg := writeConfig(t, dir, base)
	s := start(t, "-config", cfg)
	rdb := redis.NewClient(&redis.Options{Addr: store, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()

	hash := strings.Repeat("\x43", 20)
	key := strings.Repeat("43", 20) + ":peer:127.0.0.1:rack"
	announce := func() {
		t.Helper()
		q := url.Values{"info_hash": {hash}, "peer_id": {"-RT0001-000000000001"}, "port": {"6881"}, "left": {"5"}}
		if code, body := httpGet(t, s.base+"/announce?"+q.Encode()); code != 200 || strings.Contains(body, "failure") {
			t.Fatalf("announce = %d %q", code, body)
		}
	}
	rackNow := func() string {
		announce()
		return rdb.Get(context.Background(), key).Val()
	}
	if got := rackNow(); got != "default" {
		t.Fatalf("rack before reload = %q, want default", got)
	}

	writeConfig(t, dir, base+"racks:\n  map:\n    - name: lo\n      cidrs: [127.0.0.0/24]\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	storagetest.WaitFor(t, 10*time.Second, "rack lo after SIGHUP", func() (bool, string) {
		rack := rackNow()
		return rack == "lo", "rack " + rack
	})

	// A broken file on reload keeps the map that works.
	writeConfig(t, dir, base+"racks:\n  map:\n    - name: lo\n      cidrs: [bogus]\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	storagetest.WaitFor(t, 10*time.Second, "a log line about the broken reload", func() (bool, string) {
		log := s.stderr.String()
		return strings.Contains(log, "keeping the current rack map"), "log:\n" + log
	})
	if got := rackNow(); got != "lo" {
		t.Errorf("rack after a broken reload = %q, want lo kept", got)
	}
}
