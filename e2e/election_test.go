package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/redis/go-redis/v9"

	"racktracker/storage/storagetest"
)

// Sizes of TestElectionTwoProcesses: electionRacks racks of electionHosts
// hosts, two representatives per rack.
const (
	electionRacks = 4
	electionHosts = 50
	electionReps  = 2
)

// TestElectionTwoProcesses is issue 4 across processes: two racktracker
// processes share one redis-server, 200 hosts announce to both at once, and
// no rack ever holds more than its two representatives, whichever process
// elects them. A representative that stops, and one that goes silent until
// it expires, are replaced by the rack's leecher of most progress.
func TestElectionTwoProcesses(t *testing.T) {
	rs := storagetest.RedisServer(t)
	bin := buildRacktracker(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tracker.yaml")
	if err := os.WriteFile(cfgPath, []byte(electionConfig(rs.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	trackers := []string{startProcess(t, bin, cfgPath, dir), startProcess(t, bin, cfgPath, dir)}

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })

	var ih [20]byte
	rand.Read(ih[:])
	hash := strings.ToUpper(hex.EncodeToString(ih[:]))
	var hosts []*host
	for r := 1; r <= electionRacks; r++ {
		for h := 1; h <= electionHosts; h++ {
			hosts = append(hosts, newHost(t, r, h))
		}
	}
	sw := &electionSwarm{t: t, rdb: rdb, hash: hash, ih: ih, trackers: trackers, hosts: hosts, gone: map[string]bool{}, banned: map[string]bool{}}

	// Rounds of everyone at once, left shrinking each time. The first one
	// elects; the later ones must keep the representatives where they are.
	var reps map[int][]string
	for round := range 5 {
		event := ""
		if round == 0 {
			event = "started"
		}
		sw.round(round, event, reps)
		reps = sw.checkReps()
		if round == 0 {
			t.Logf("elected by two processes at once: %v", reps)
		}
	}
	before := sw.checkReps()

	// A representative of rack 3 stops: its slot goes at once to the rack's
	// leecher of most progress.
	const rack = 3
	stopped, silent := before[rack][0], before[rack][1]
	sw.announceOne(sw.hostOf(stopped), 0, "stopped", 5)
	sw.gone[stopped] = true
	sw.banned[stopped] = true
	want1 := sw.bestCandidate(rack, before[rack])
	after := sw.checkReps()
	if got, want := after[rack], sorted(silent, want1); !slices.Equal(got, want) {
		t.Fatalf("after %s stopped, rack %s representatives = %v, want %v (the leecher of most progress takes the slot)", stopped, rackName(rack), got, want)
	}
	t.Logf("%s stopped; %s took its slot", stopped, want1)

	// The other one goes silent: everyone else keeps announcing (at a pace
	// well inside peer_timeout) until the tracker expires it.
	sw.gone[silent] = true
	want2 := sw.bestCandidate(rack, []string{stopped, silent, want1})
	start := time.Now()
	round := 6
	pace := time.NewTicker(500 * time.Millisecond)
	defer pace.Stop()
	storagetest.WaitFor(t, 20*time.Second, "silent representative "+silent+" expires", func() (bool, string) {
		<-pace.C
		sw.round(round, "", nil)
		round++
		cur := sw.checkReps()
		return !slices.Contains(cur[rack], silent), fmt.Sprintf("rack %s representatives %v", rackName(rack), cur[rack])
	})
	t.Logf("%s went silent; expired and replaced after %s", silent, time.Since(start).Round(100*time.Millisecond))
	sw.banned[silent] = true
	if got, want := sw.checkReps()[rack], sorted(want1, want2); !slices.Equal(got, want) {
		t.Fatalf("after %s expired, rack %s representatives = %v, want %v", silent, rackName(rack), got, want)
	}
	// And they stay so, with neither of the gone ones coming back.
	for range 2 {
		sw.round(round, "", nil)
		round++
		if got, want := sw.checkReps()[rack], sorted(want1, want2); !slices.Equal(got, want) {
			t.Fatalf("rack %s representatives = %v, want %v", rackName(rack), got, want)
		}
	}
	for r := 1; r <= electionRacks; r++ {
		if r != rack && !slices.Equal(sw.checkReps()[r], before[r]) {
			t.Errorf("rack %s representatives changed from %v to %v while only rack %s lost any", rackName(r), before[r], sw.checkReps()[r], rackName(rack))
		}
	}
}

// electionConfig is the tracker.yaml both processes run: a short peer
// timeout so that a silent peer expires within the test.
func electionConfig(redisAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `listen: "127.0.0.1:0"
announce:
  interval: 1s
  min_interval: 1s
  peer_timeout: 3s
racks:
  handout: local
  representatives_per_rack: %d
  map:
`, electionReps)
	for r := 1; r <= electionRacks; r++ {
		fmt.Fprintf(&b, "    - name: %s\n      cidrs: [\"127.0.%d.0/24\"]\n", rackName(r), r)
	}
	fmt.Fprintf(&b, `storage:
  backend: redis
  redis:
    addr: %q
`, redisAddr)
	return b.String()
}

// buildRacktracker builds the command from the module root into a temp dir.
func buildRacktracker(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build racktracker: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "racktracker")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build racktracker: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs racktracker with the config at path and returns its
// base URL, which it prints on stdout. The process is stopped with SIGTERM
// when the test ends, and must exit cleanly.
func startProcess(t *testing.T, bin, path, dir string) string {
	t.Helper()
	cmd := exec.Command(bin, "-config", path)
	cmd.Dir = dir
	stderr := &storagetest.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start racktracker: %v", err)
	}
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "racktracker listen "); ok {
				select {
				case listening <- addr:
				default:
				}
			}
		}
		done <- cmd.Wait() // after the last read from the pipe, as exec requires
	}()
	exited := false
	t.Cleanup(func() {
		if exited {
			return
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("racktracker (pid %d) did not exit cleanly on SIGTERM: %v; stderr:\n%s", cmd.Process.Pid, err, stderr)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("racktracker (pid %d) still running 15s after SIGTERM: killed; stderr:\n%s", cmd.Process.Pid, stderr)
		}
	})
	select {
	case addr := <-listening:
		return addr
	case err := <-done:
		exited = true
		t.Fatalf("racktracker exited before listening: %v; stderr:\n%s", err, stderr)
	case <-time.After(15 * time.Second):
		t.Fatalf("racktracker printed no listen address within 15s; stderr:\n%s", stderr)
	}
	return ""
}

// host is one announcing host: plain HTTP from its own loopback address.
type host struct {
	ip     netip.Addr
	rack   int
	num    int
	peerID string
	hc     *http.Client
}

// announcePort is every host's BitTorrent port; hosts differ by address.
const announcePort = 6881

func newHost(t *testing.T, rack, num int) *host {
	ip := hostIP(rack, num)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &host{
		ip:     ip,
		rack:   rack,
		num:    num,
		peerID: fmt.Sprintf("-E20001-%012d", rack*1000+num),
		hc:     &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}
}

// peer is the host's member in the tracker's peer sets.
func (h *host) peer() string { return netip.AddrPortFrom(h.ip, announcePort).String() }

// Payload accounting: left shrinks by a little each round, and a host of
// higher number is always further along, by more than any round changes,
// so that "the leecher of most progress" is the one of highest number.
const (
	electionLength = 1 << 30
	hostLead       = 1 << 20
	roundProgress  = 1 << 10
)

func (h *host) left(round int) int64 {
	return electionLength - int64(h.num)*hostLead - int64(round)*roundProgress
}

// announce sends one announce to base and returns the peers handed out.
func (h *host) announce(ctx context.Context, base string, ih [20]byte, event string, left int64) ([]netip.AddrPort, error) {
	q := "info_hash=" + url.QueryEscape(string(ih[:])) +
		"&peer_id=" + url.QueryEscape(h.peerID) +
		"&port=" + strconv.Itoa(announcePort) +
		"&uploaded=0&downloaded=" + strconv.FormatInt(electionLength-left, 10) +
		"&left=" + strconv.FormatInt(left, 10) + "&compact=1"
	if event != "" {
		q += "&event=" + event
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/announce?"+q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %q", resp.Status, body.Bytes())
	}
	var r struct {
		Failure  string `bencode:"failure reason"`
		Interval int    `bencode:"interval"`
		Peers    string `bencode:"peers"`
	}
	if err := bencode.Unmarshal(body.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("decode %q: %w", body.Bytes(), err)
	}
	if r.Failure != "" {
		return nil, fmt.Errorf("failure reason %q", r.Failure)
	}
	if len(r.Peers)%6 != 0 {
		return nil, fmt.Errorf("compact peers of %d bytes", len(r.Peers))
	}
	var peers []netip.AddrPort
	for p := []byte(r.Peers); len(p) > 0; p = p[6:] {
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[:4])), binary.BigEndian.Uint16(p[4:6])))
	}
	return peers, nil
}

// electionSwarm drives the hosts and reads Redis.
type electionSwarm struct {
	t        *testing.T
	rdb      *redis.Client
	hash     string // key form of the info hash
	ih       [20]byte
	trackers []string
	hosts    []*host
	gone     map[string]bool // peers that no longer announce: stopped or silent
	banned   map[string]bool // peers that must not be representatives any more
}

func (sw *electionSwarm) repsKey(rack int) string {
	return sw.hash + ":rack:" + rackName(rack) + ":R"
}

// round has every host that is not gone announce at once, split between
// the tracker processes (alternating each round, so that both handle every
// host). While it runs, Redis is watched: no rack may ever show more than
// electionReps representatives. With reps from before the round, it also
// checks each handout: a leecher that is not a representative is handed
// peers of its own rack only, and a representative some of other racks.
func (sw *electionSwarm) round(round int, event string, reps map[int][]string) {
	t := sw.t
	t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var watch sync.WaitGroup
	var watchErr error
	watch.Go(func() { watchErr = sw.watchReps(stop) })

	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i, h := range sw.hosts {
		if sw.gone[h.peer()] {
			continue
		}
		base := sw.trackers[(i+round)%len(sw.trackers)]
		wg.Go(func() {
			peers, err := h.announce(ctx, base, sw.ih, event, h.left(round))
			if err == nil && reps != nil {
				err = checkHandout(h, peers, slices.Contains(reps[h.rack], h.peer()))
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("round %d: %s to %s: %w", round, h.ip, base, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if err := errors.Join(append(errs, watchErr)...); err != nil {
		t.Fatal(err)
	}
}

// checkHandout checks one host's handout against SPEC section 4.
func checkHandout(h *host, peers []netip.AddrPort, isRep bool) error {
	if len(peers) == 0 {
		return errors.New("no peers handed out")
	}
	other := 0
	for _, p := range peers {
		if p.Addr() == h.ip {
			return fmt.Errorf("handed itself out: %v", peers)
		}
		if rackOf(p.Addr()) != h.rack {
			other++
		}
	}
	switch {
	case !isRep && other > 0:
		return fmt.Errorf("leecher handed %d peers of other racks (its rack has representatives, so no escape): %v", other, peers)
	case isRep && other == 0:
		return fmt.Errorf("representative handed no peer of another rack: %v", peers)
	}
	return nil
}

// watchReps reads every rack's representative count until stop closes, and
// reports any count above electionReps.
func (sw *electionSwarm) watchReps(stop <-chan struct{}) error {
	ctx := context.Background()
	for {
		p := sw.rdb.Pipeline()
		cards := make([]*redis.IntCmd, electionRacks+1)
		for r := 1; r <= electionRacks; r++ {
			cards[r] = p.SCard(ctx, sw.repsKey(r))
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("watch representatives: %w", err)
		}
		for r := 1; r <= electionRacks; r++ {
			if n := cards[r].Val(); n > electionReps {
				return fmt.Errorf("SCARD %s = %d during a round, want at most %d", sw.repsKey(r), n, electionReps)
			}
		}
		select {
		case <-stop:
			return nil
		default:
		}
	}
}

// checkReps reads every rack's representatives, checks there are exactly
// electionReps, all of that rack, none banned, and returns them sorted.
func (sw *electionSwarm) checkReps() map[int][]string {
	t := sw.t
	t.Helper()
	ctx := context.Background()
	out := map[int][]string{}
	all := 0
	for r := 1; r <= electionRacks; r++ {
		members, err := sw.rdb.SMembers(ctx, sw.repsKey(r)).Result()
		if err != nil {
			t.Fatalf("SMEMBERS %s: %v", sw.repsKey(r), err)
		}
		slices.Sort(members)
		if len(members) != electionReps {
			t.Fatalf("SCARD %s = %d (%v), want %d", sw.repsKey(r), len(members), members, electionReps)
		}
		for _, m := range members {
			ap, err := netip.ParseAddrPort(m)
			if err != nil || rackOf(ap.Addr()) != r {
				t.Fatalf("%s holds %q, not a peer of rack %s", sw.repsKey(r), m, rackName(r))
			}
			if sw.banned[m] {
				t.Fatalf("%s holds %s, which stopped or expired", sw.repsKey(r), m)
			}
		}
		out[r] = members
		all += len(members)
	}
	n, err := sw.rdb.SCard(ctx, sw.hash+":peers:R").Result()
	if err != nil {
		t.Fatalf("SCARD %s:peers:R: %v", sw.hash, err)
	}
	if n != int64(all) {
		t.Fatalf("SCARD %s:peers:R = %d, want %d, the sum over racks", sw.hash, n, all)
	}
	return out
}

// announceOne has the host of peer announce alone.
func (sw *electionSwarm) announceOne(h *host, tracker int, event string, round int) {
	sw.t.Helper()
	if _, err := h.announce(context.Background(), sw.trackers[tracker], sw.ih, event, h.left(round)); err != nil {
		sw.t.Fatalf("%s announces %q: %v", h.ip, event, err)
	}
}

// hostOf finds the host of a peer string.
func (sw *electionSwarm) hostOf(peer string) *host {
	for _, h := range sw.hosts {
		if h.peer() == peer {
			return h
		}
	}
	sw.t.Fatalf("no host is peer %s", peer)
	return nil
}

// bestCandidate is the rack's current leecher of most progress that is
// none of exclude and not gone: with the left of host.left, the highest
// host number.
func (sw *electionSwarm) bestCandidate(rack int, exclude []string) string {
	for num := electionHosts; num >= 1; num-- {
		p := netip.AddrPortFrom(hostIP(rack, num), announcePort).String()
		if !slices.Contains(exclude, p) && !sw.gone[p] {
			return p
		}
	}
	sw.t.Fatalf("rack %s has no candidate left", rackName(rack))
	return ""
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
