package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"racktracker/storage/storagetest"
)

// helperEnv makes TestHelperTracker run the program: the fault-injection
// test starts its trackers as processes of their own (this test binary run
// again) so that it can SIGKILL one, as a machine dying would.
const helperEnv = "RACKTRACKER_HELPER_TRACKER"

// TestHelperTracker is not a test: it is the tracker process of
// TestFailover, started with helperEnv set to the program's arguments.
func TestHelperTracker(t *testing.T) {
	args := os.Getenv(helperEnv)
	if args == "" {
		t.Skip("the tracker process of TestFailover")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Fields(args), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "racktracker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// trackerProc is one tracker process.
type trackerProc struct {
	base string
	cmd  *exec.Cmd
	done chan struct{}
	log  *storagetest.Buffer
}

func startTrackerProc(t *testing.T, config string) *trackerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTracker$")
	cmd.Env = append(os.Environ(), helperEnv+"=-log-level "+cmp.Or(os.Getenv("RACKTRACKER_HELPER_LOG"), "info")+" -config "+config)
	p := &trackerProc{cmd: cmd, done: make(chan struct{}), log: &storagetest.Buffer{}}
	cmd.Stderr = p.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			// Without the per-request lines of -log-level debug.
			var keep []string
			for line := range strings.SplitSeq(p.log.String(), "\n") {
				if !strings.Contains(line, "msg=request ") {
					keep = append(keep, line)
				}
			}
			t.Logf("log of tracker %s:\n%s", p.base, strings.Join(keep, "\n"))
		}
	})
	lines := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-lines:
		_, addr, ok := strings.Cut(line, "racktracker listen ")
		if !ok {
			t.Fatalf("tracker's first line %q, want its listen address; its log:\n%s", line, p.log)
		}
		p.base = addr
	case <-p.done:
		p.kill()
		t.Fatalf("tracker ended before listening; its log:\n%s", p.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("tracker did not listen within 30s; its log:\n%s", p.log)
	}
	return p
}

// kill SIGKILLs the process and waits for it; a second call does nothing.
func (p *trackerProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd.Wait()
}

// attempt is one announce the test sent, and what became of it.
type attempt struct {
	seq     int64 // the announce's "uploaded", which the store keeps per peer
	left    int64
	tracker int
	start   time.Time
	took    time.Duration
	ok      bool   // acknowledged: an answer without a failure reason
	failure string // the failure reason, or the transport error
	noReply bool   // no HTTP answer at all (a dead tracker process)
}

// host is one client machine on a loopback address announcing the test's
// transfers. Its announcer goroutine writes it under mu; the test reads it.
type host struct {
	ip      string
	hc      *http.Client
	silent  bool // stops announcing when the master dies
	tracker int  // the tracker it uses while both run

	mu   sync.Mutex
	seq  int64
	left [failoverHashes]int64
	log  [failoverHashes][]attempt
}

const failoverHashes = 2

// failoverHash is the raw info_hash of transfer i, and failoverKey its
// <hash> in the key layout (SPEC section 3).
func failoverHash(i int) string { return strings.Repeat(string([]byte{byte(0xa0 + i)}), 20) }
func failoverKey(i int) string  { return strings.Repeat(fmt.Sprintf("%02X", 0xa0+i), 20) }

// trackers says where announces go: the tracker a host uses, until the
// first is gone.
type phase struct {
	mu          sync.Mutex
	masterDead  bool
	trackerDead bool
}

func (p *phase) get() (masterDead, trackerDead bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.masterDead, p.trackerDead
}

func (hs *host) announce(ph *phase, trackers []*trackerProc, i int) {
	masterDead, trackerDead := ph.get()
	if masterDead && hs.silent {
		return
	}
	hs.mu.Lock()
	hs.seq++
	a := attempt{seq: hs.seq, tracker: hs.tracker}
	if trackerDead {
		a.tracker = 1
	}
	event := ""
	if len(hs.log[i]) == 0 || !slices.ContainsFunc(hs.log[i], func(a attempt) bool { return a.ok }) {
		event = "started"
	}
	if hs.left[i] > 0 {
		hs.left[i] = max(0, hs.left[i]-1-hs.seq%3)
		if hs.left[i] == 0 {
			event = "completed"
		}
	}
	a.left = hs.left[i]
	hs.mu.Unlock()

	port := 6881 + i
	q := url.Values{
		"info_hash": {failoverHash(i)}, "peer_id": {fmt.Sprintf("-RT0001-%012d", port)}, "port": {strconv.Itoa(port)},
		"uploaded": {strconv.FormatInt(a.seq, 10)}, "downloaded": {"0"}, "left": {strconv.FormatInt(a.left, 10)},
		"compact": {"1"}, "numwant": {"10"}, "event": {event},
	}
	a.start = time.Now()
	res, err := hs.hc.Get(trackers[a.tracker].base + "/announce?" + q.Encode())
	var body []byte
	if err == nil {
		body, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	a.took = time.Since(a.start)
	switch {
	case err != nil:
		a.failure, a.noReply = err.Error(), true
	case strings.Contains(string(body), "14:failure reason"):
		a.failure = string(body)
	case strings.Contains(string(body), "8:intervali"):
		a.ok = true
	default:
		a.failure = "unexpected answer " + strconv.Quote(string(body))
	}
	hs.mu.Lock()
	hs.log[i] = append(hs.log[i], a)
	hs.mu.Unlock()
}

// attempts returns every attempt of every host, by transfer.
func attempts(hosts []*host) []attempt {
	var out []attempt
	for _, hs := range hosts {
		hs.mu.Lock()
		for i := range failoverHashes {
			out = append(out, hs.log[i]...)
		}
		hs.mu.Unlock()
	}
	return out
}

// TestFailover runs two tracker processes on a master with two replicas
// watched by three Sentinels, announces from 36 loopback hosts in three
// racks, SIGKILLs the master, then stops the Sentinel the trackers listen to
// and SIGKILLs a tracker. It checks that announces fail fast (a failure
// reason, never a hang) while no master is known; that both trackers
// announce on the new master within the failover time plus a second; that
// the survivor goes on without a failure; that every invariant of the
// stored swarms holds; and that announces acknowledged before the kill are
// stored unless replication lost them, logging how many were.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eight processes and waits for a failover")
	}
	g := storagetest.StartReplicated(t, 2, 3)
	ctx := context.Background()

	dir := t.TempDir()
	var sentinels []string
	for _, a := range g.SentinelAddrs() {
		sentinels = append(sentinels, strconv.Quote(a))
	}
	config := func(name string, replicaReads bool) string {
		path := filepath.Join(dir, name)
		body := fmt.Sprintf(`listen: 127.0.0.1:0
announce:
  peer_timeout: 10m
racks:
  representatives_per_rack: 2
  map:
    - {name: r1, cidrs: ["127.0.1.0/24"]}
    - {name: r2, cidrs: ["127.0.2.0/24"]}
    - {name: r3, cidrs: ["127.0.3.0/24"]}
storage:
  backend: redis
  redis:
    sentinel:
      master: %s
      addrs: [%s]
      replica_reads: %t
`, g.Name, strings.Join(sentinels, ", "), replicaReads)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The second tracker, the one that survives, reads from replicas.
	trackers := []*trackerProc{
		startTrackerProc(t, config("a.yaml", false)),
		startTrackerProc(t, config("b.yaml", true)),
	}

	var hosts []*host
	for r := 1; r <= 3; r++ {
		for h := 1; h <= 12; h++ {
			ip := fmt.Sprintf("127.0.%d.%d", r, h)
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
			tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}
			hs := &host{ip: ip, silent: h%2 == 0, tracker: (h - 1) / 2 % 2, hc: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
			t.Cleanup(tr.CloseIdleConnections)
			for i := range failoverHashes {
				hs.left[i] = int64(200 + (r*13+h*7+i*5)%40)
				if h%5 == 0 {
					hs.left[i] = 0 // a seeder from the start
				}
			}
			hosts = append(hosts, hs)
		}
	}

	// Six announcers, each owning a sixth of the hosts and paced to one
	// announce per 10ms: about 600 announces a second in all.
	var ph phase
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 6
	for w := range workers {
		mine := hosts[w*len(hosts)/workers : (w+1)*len(hosts)/workers]
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				mine[n%len(mine)].announce(&ph, trackers, (n/len(mine))%failoverHashes)
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	waitFor := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		storagetest.WaitFor(t, d, what, func() (bool, string) { return cond(), "not yet" })
	}
	// Warm up until every host was acknowledged three times for every
	// transfer.
	waitFor(60*time.Second, "every host acknowledged for every transfer", func() bool {
		for _, hs := range hosts {
			hs.mu.Lock()
			few := slices.ContainsFunc(hs.log[:], func(log []attempt) bool { return len(log) < 3 })
			hs.mu.Unlock()
			if few {
				return false
			}
		}
		return true
	})
	for _, a := range attempts(hosts) {
		if !a.ok {
			t.Fatalf("announce to tracker %d failed before any fault: %s; its log:\n%s", a.tracker, a.failure, trackers[a.tracker].log)
		}
	}

	// SIGKILL the master and time the failover as the Sentinels see it.
	oldMaster := g.Master.Addr
	ph.mu.Lock()
	ph.masterDead = true
	killed := time.Now()
	g.Master.Stop()
	ph.mu.Unlock()
	// The failover is over when every Sentinel names the new master: the
	// trackers may be asking any of them.
	var switched time.Time
	var newMaster string
	waitFor(30*time.Second, "every Sentinel to name a new master", func() bool {
		for _, sen := range g.Sentinels {
			a, err := g.MasterAddr(ctx, sen)
			if err != nil || a == oldMaster || newMaster != "" && a != newMaster {
				return false
			}
			newMaster = a
		}
		switched = time.Now()
		return true
	})
	failover := switched.Sub(killed)

	// Both trackers announce on the new master within a second of the
	// switch: the wait runs longer, so that a miss is measured.
	resumed := func() (at [2]time.Time) {
		for _, a := range attempts(hosts) {
			if a.ok && a.start.After(killed) && (at[a.tracker].IsZero() || a.start.Before(at[a.tracker])) {
				at[a.tracker] = a.start
			}
		}
		return at
	}
	waitFor(failover+15*time.Second, "both trackers to acknowledge an announce after the kill", func() bool {
		at := resumed()
		return !at[0].IsZero() && !at[1].IsZero()
	})
	// Each call that finds no live connection asks a Sentinel for the
	// master and dials it (storage's dialer keeps go-redis' pool from
	// pausing its dials after a run of failures), so a tracker resumes at
	// the first announce after its Sentinel names the new master.
	at := resumed()
	for i, r := range at {
		t.Logf("tracker %d: first acknowledged announce sent %s after the kill (every Sentinel named the new master after %s)",
			i, r.Sub(killed).Round(time.Millisecond), failover.Round(time.Millisecond))
		if r.Sub(killed) > failover+time.Second {
			t.Errorf("tracker %d resumed %s after the kill, want within the failover time %s plus 1s",
				i, r.Sub(killed).Round(time.Millisecond), failover.Round(time.Millisecond))
		}
	}

	// Stop the Sentinel the trackers subscribed to (the one go-redis holds)
	// and SIGKILL the first tracker; the second must go on without a miss.
	waitFor(30*time.Second, "100 announces on each tracker after the switch", func() bool {
		var n [2]int
		for _, a := range attempts(hosts) {
			if a.ok && a.start.After(switched) {
				n[a.tracker]++
			}
		}
		return n[0] >= 100 && n[1] >= 100
	})
	held := busiestSentinel(t, g)
	ph.mu.Lock()
	ph.trackerDead = true
	faults := time.Now()
	g.Sentinels[held].Stop()
	trackers[0].kill()
	ph.mu.Unlock()
	waitFor(30*time.Second, "300 announces on the surviving tracker", func() bool {
		n := 0
		for _, a := range attempts(hosts) {
			if a.ok && a.start.After(faults) {
				n++
			}
		}
		return n >= 300
	})
	stopLoad()

	// Every announce got an answer in time: a failure reason, never a hang.
	all := attempts(hosts)
	var failed, slowest int
	var window [2]time.Time
	for j, a := range all {
		if a.took > all[slowest].took && !a.noReply {
			slowest = j
		}
		if a.ok || a.noReply {
			continue
		}
		failed++
		if !strings.Contains(a.failure, "storage unavailable") {
			t.Errorf("announce failed with %q, want the storage failure reason", a.failure)
		}
		if !strings.Contains(a.failure, "8:intervali") {
			t.Errorf("failure %q has no interval", a.failure)
		}
		if a.start.Add(a.took).Before(killed) || a.start.After(faults) {
			t.Errorf("announce to tracker %d at %s failed outside the failover: %q", a.tracker, a.start.Sub(killed), a.failure)
		}
		if window[0].IsZero() || a.start.Before(window[0]) {
			window[0] = a.start
		}
		if end := a.start.Add(a.took); end.After(window[1]) {
			window[1] = end
		}
	}
	if took := all[slowest].took; took > 3*time.Second {
		t.Errorf("slowest announce took %s, want at most the storage call timeout (2s) and some", took)
	}
	t.Logf("%d announces, %d failed with a failure reason between %s and %s after the kill; slowest answer %s",
		len(all), failed, window[0].Sub(killed).Round(time.Millisecond), window[1].Sub(killed).Round(time.Millisecond),
		all[slowest].took.Round(time.Millisecond))

	master := g.Client(t, g.Node(newMaster))
	checkFailoverInvariants(t, master, hosts)
	checkLost(t, master, hosts, killed)

	// The announce script was loaded on the promoted replica by the first
	// announce there (EVALSHA answered NOSCRIPT, EVAL ran it).
	if evals := storagetest.CommandCalls(t, master, "eval"); evals == 0 {
		t.Errorf("new master ran EVAL %d times, want the script loaded by EVAL after NOSCRIPT", evals)
	}

	// The surviving tracker reads scrapes from the remaining replica, which
	// catches up with the master.
	var replica *storagetest.Server
	for _, r := range g.Replicas {
		if r.Addr != newMaster {
			replica = r
		}
	}
	rc := g.Client(t, replica)
	before := storagetest.CommandCalls(t, rc, "mget")
	var counts [3]int
	for j, k := range []string{":complete", ":completions", ":incomplete"} {
		counts[j], _ = master.Get(ctx, failoverKey(0)+k).Int()
	}
	want := fmt.Sprintf("8:completei%de10:downloadedi%de10:incompletei%de", counts[0], counts[1], counts[2])
	waitFor(10*time.Second, "the replica to serve the master's counts", func() bool {
		q := url.Values{"info_hash": {failoverHash(0)}}
		res, err := http.Get(trackers[1].base + "/scrape?" + q.Encode())
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Contains(string(b), want)
	})
	if after := storagetest.CommandCalls(t, rc, "mget"); after <= before {
		t.Errorf("replica ran MGET %d times before the scrapes and %d after, want the scrapes read from it", before, after)
	}
}

// busiestSentinel returns the index of the running Sentinel with the most
// subscribed clients: the one the trackers' failover clients listen to.
func busiestSentinel(t *testing.T, g *storagetest.Replicated) int {
	t.Helper()
	best, most := 0, -1
	for i, s := range g.Sentinels {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		list, err := c.ClientList(context.Background()).Result()
		c.Close()
		if err != nil {
			continue
		}
		n := 0
		for line := range strings.SplitSeq(list, "\n") {
			if strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 ") {
				n++
			}
		}
		if n > most {
			best, most = i, n
		}
	}
	return best
}

// checkFailoverInvariants checks, on the new master, what every announce
// must leave true, whatever failed around it (SPEC sections 3 and 4).
func checkFailoverInvariants(t *testing.T, c *redis.Client, hosts []*host) {
	t.Helper()
	ctx := context.Background()
	for i := range failoverHashes {
		k := failoverKey(i)
		S := c.SMembers(ctx, k+":peers:S").Val()
		L := c.SMembers(ctx, k+":peers:L").Val()
		R := c.SMembers(ctx, k+":peers:R").Val()
		if len(S)+len(L) == 0 {
			t.Errorf("transfer %d: no current peer on the new master", i)
		}
		for _, p := range S {
			if slices.Contains(L, p) {
				t.Errorf("transfer %d: %s in S and L", i, p)
			}
		}
		for _, p := range R {
			if !slices.Contains(S, p) && !slices.Contains(L, p) {
				t.Errorf("transfer %d: representative %s in neither S nor L", i, p)
			}
		}
		if n, _ := c.Get(ctx, k+":complete").Int(); n != len(S) {
			t.Errorf("transfer %d: complete counter %d, S has %d", i, n, len(S))
		}
		if n, _ := c.Get(ctx, k+":incomplete").Int(); n != len(L) {
			t.Errorf("transfer %d: incomplete counter %d, L has %d", i, n, len(L))
		}
		var rackR []string
		for _, r := range []string{"r1", "r2", "r3"} {
			rr := c.SMembers(ctx, k+":rack:"+r+":R").Val()
			if len(rr) > 2 {
				t.Errorf("transfer %d: rack %s has %d representatives %q, limit 2", i, r, len(rr), rr)
			}
			rackR = append(rackR, rr...)
			for _, p := range c.SMembers(ctx, k+":rack:"+r+":S").Val() {
				if !slices.Contains(S, p) {
					t.Errorf("transfer %d: %s in rack %s's S but not in S", i, p, r)
				}
			}
		}
		slices.Sort(rackR)
		slices.Sort(R)
		if !slices.Equal(rackR, R) {
			t.Errorf("transfer %d: racks' representatives %q, peers:R %q", i, rackR, R)
		}
		// A host whose last announce was acknowledged is where it said.
		for _, hs := range hosts {
			log := hs.log[i]
			if len(log) == 0 || !log[len(log)-1].ok || hs.silent {
				continue
			}
			last, peer := log[len(log)-1], fmt.Sprintf("%s:%d", hs.ip, 6881+i)
			if inS := slices.Contains(S, peer); inS != (last.left == 0) || !inS && !slices.Contains(L, peer) {
				t.Errorf("transfer %d: %s last announced left=%d, but in S %t, in L %t", i, peer, last.left, inS, slices.Contains(L, peer))
			}
		}
	}
}

// checkLost compares what the silent hosts, which stopped at the kill, had
// acknowledged with what the new master holds. Replication is asynchronous:
// the last announces before the kill may be lost, and are counted; an
// announce acknowledged a second before the kill must be there.
func checkLost(t *testing.T, c *redis.Client, hosts []*host, killed time.Time) {
	t.Helper()
	ctx := context.Background()
	var acked, lost int
	var newest time.Duration
	for _, hs := range hosts {
		if !hs.silent {
			continue
		}
		for i := range failoverHashes {
			stored, _ := c.Get(ctx, failoverKey(i)+":peer:"+hs.ip+":uploaded").Int64()
			peer := fmt.Sprintf("%s:%d", hs.ip, 6881+i)
			present := c.SIsMember(ctx, failoverKey(i)+":peers:N", peer).Val()
			for _, a := range hs.log[i] {
				if !a.ok {
					continue
				}
				acked++
				if a.seq <= stored && present {
					continue
				}
				lost++
				age := killed.Sub(a.start.Add(a.took))
				newest = max(newest, age)
				if age > time.Second {
					t.Errorf("%s transfer %d: announce %d acknowledged %s before the kill is not on the new master (stored %d)", peer, i, a.seq, age, stored)
				}
			}
		}
	}
	t.Logf("announces acknowledged to the hosts that stopped at the kill: %d; lost by replication: %d (the oldest acknowledged %s before the kill)",
		acked, lost, newest.Round(time.Millisecond))
}
