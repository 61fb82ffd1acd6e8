package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"racktracker/storage/storagetest"
)

// The lab's network is a small data center built from network namespaces
// on this machine (SPEC section 8):
//
//	tracker ns ── core ns ──┬── uplink ── rack 0 ToR ns (bridge) ── origin seeder ns
//	                        ├── uplink ── rack 1 ToR ns (bridge) ── host ns × H
//	                        └── ...
//
// Every host is a namespace with one veth (its NIC) into its rack's
// top-of-rack namespace, where a bridge joins the rack's hosts; the ToR
// routes everything else over its uplink, a veth to the core namespace,
// which routes between the racks and to the tracker's namespace. NICs and
// uplinks are shaped with tbf in both directions: on a NIC, egress of the
// host's end is its upload and egress of the bridge's end its download; on an
// uplink, egress of the ToR's end leaves the rack and egress of the core's end
// enters it, so the core end's byte counter is what entered the rack.
//
// Addresses come only from 198.18.0.0/15 (the benchmark block): rack r's
// hosts are 198.18.r.(10+h)/24 behind gateway 198.18.r.1; the uplink of rack
// r is 198.19.(r+1).0/30; the tracker is 198.19.0.2. No namespace has a link
// to the machine's own network, so nothing is routed out. Every link is
// created inside the lab's namespaces, so deleting them deletes every link.
//
// Names are labPrefix, the test process's pid and a role ("rtl1234-r2h3"),
// so that a later run can tell leftovers of a run that died (its pid gone)
// from those of a lab running alongside, and remove only the former.

const labPrefix = "rtl"

// labMTU is jumbo frames, as data centers run them: fewer packets for the
// machine to move per byte, so that the links, not the CPU, are the
// bottleneck.
const labMTU = 9000

var labNSName = regexp.MustCompile(`^` + labPrefix + `(\d+)-`)

// labNet is one built network.
type labNet struct {
	t       testing.TB
	prefix  string
	racks   int // leecher racks 1..racks; rack 0 holds the origin seeder alone
	hosts   int // hosts per leecher rack
	nicBits int64
	upBits  int64

	mu   sync.Mutex
	nses []string
	proc map[int]*exec.Cmd // by pid: every process started in the lab
}

// labTools are the commands the lab needs besides the clients.
var labTools = []string{"ip", "tc"}

// labGate skips the test unless it runs as root with the tools, or fails it
// when RACKTRACKER_REQUIRE_LAB is set.
func labGate(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range append(append([]string{}, labTools...), tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("RACKTRACKER_REQUIRE_LAB") != "" {
		t.Fatalf("the lab needs %s (RACKTRACKER_REQUIRE_LAB is set)", strings.Join(missing, ", "))
	}
	t.Skipf("the lab needs %s", strings.Join(missing, ", "))
}

// sh runs a command and returns its output, or an error that carries it.
func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// removeLabLeftovers deletes the namespaces (and kills the processes in
// them) of lab runs whose process is gone: a run killed before its cleanup.
// Namespaces of a live run are left alone.
func removeLabLeftovers(t testing.TB) {
	out, err := sh("ip", "netns", "list")
	if err != nil {
		t.Fatalf("list namespaces: %v", err)
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := labNSName.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // ours, or a lab still running
		}
		killNSProcesses(f[0])
		if _, err := sh("ip", "netns", "del", f[0]); err != nil {
			t.Logf("leftover namespace %s: %v", f[0], err)
		} else {
			t.Logf("removed leftover namespace %s of a lab run that died (pid %d)", f[0], pid)
		}
	}
}

// killNSProcesses kills, by pid, every process inside namespace ns.
func killNSProcesses(ns string) {
	out, _ := sh("ip", "netns", "pids", ns)
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// The namespace names of the lab.
func (n *labNet) core() string         { return n.prefix + "core" }
func (n *labNet) trackerNS() string    { return n.prefix + "trk" }
func (n *labNet) tor(r int) string     { return fmt.Sprintf("%sr%d", n.prefix, r) }
func (n *labNet) host(r, h int) string { return fmt.Sprintf("%sr%dh%d", n.prefix, r, h) }

// hostAddr is host h of rack r; the origin seeder is host 1 of rack 0.
func hostAddr(r, h int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(r), byte(10 + h)}) }

// labTrackerAddr is where the tracker listens.
var labTrackerAddr = netip.MustParseAddr("198.19.0.2")

// newLabNet builds the network: racks leecher racks of hosts hosts, every
// NIC nicBits and every rack uplink upBits per second and direction. It is
// torn down when the test ends, whatever happens.
func newLabNet(t testing.TB, racks, hosts int, nicBits, upBits int64) *labNet {
	t.Helper()
	removeLabLeftovers(t)
	n := &labNet{t: t, prefix: fmt.Sprintf("%s%d-", labPrefix, os.Getpid()), racks: racks, hosts: hosts,
		nicBits: nicBits, upBits: upBits, proc: map[int]*exec.Cmd{}}
	t.Cleanup(n.close)
	if err := n.build(); err != nil {
		t.Fatalf("build the lab network: %v", err)
	}
	return n
}

func (n *labNet) addNS(name string) error {
	if _, err := sh("ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.nses = append(n.nses, name)
	n.mu.Unlock()
	if _, err := sh("ip", "-n", name, "link", "set", "dev", "lo", "up"); err != nil {
		return err
	}
	return nil
}

// veth creates a pair with end a in namespace nsA and end b in nsB.
func veth(nsA, a, nsB, b string) error {
	mtu := strconv.Itoa(labMTU)
	_, err := sh("ip", "-n", nsA, "link", "add", a, "mtu", mtu, "type", "veth", "peer", "name", b, "mtu", mtu, "netns", nsB)
	return err
}

// shape limits what leaves dev in ns to bits per second. The burst holds a
// few jumbo frames (tbf needs at least one), the queue 50 ms of traffic.
func shape(ns, dev string, bits int64) error {
	burst := max(64<<10, bits/8/200) // 5 ms at the rate, at least 64 KiB
	_, err := sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bits, 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "50ms")
	return err
}

func forwarding(ns string) error {
	_, err := sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return err
}

func (n *labNet) build() error {
	core, trk := n.core(), n.trackerNS()
	steps := [][]string{}
	do := func(args ...string) { steps = append(steps, args) }
	for _, ns := range []string{core, trk} {
		if err := n.addNS(ns); err != nil {
			return err
		}
	}
	if err := forwarding(core); err != nil {
		return err
	}
	if err := veth(core, "trk", trk, "eth0"); err != nil {
		return err
	}
	do("ip", "-n", core, "addr", "add", "198.19.0.1/30", "dev", "trk")
	do("ip", "-n", core, "link", "set", "dev", "trk", "up")
	do("ip", "-n", trk, "addr", "add", labTrackerAddr.String()+"/30", "dev", "eth0")
	do("ip", "-n", trk, "link", "set", "dev", "eth0", "up")
	do("ip", "-n", trk, "route", "add", "default", "via", "198.19.0.1")
	for r := 0; r <= n.racks; r++ {
		tor := n.tor(r)
		if err := n.addNS(tor); err != nil {
			return err
		}
		if err := forwarding(tor); err != nil {
			return err
		}
		up := fmt.Sprintf("r%d", r)
		if err := veth(core, up, tor, "uplink"); err != nil {
			return err
		}
		coreIP, torIP := fmt.Sprintf("198.19.%d.1", r+1), fmt.Sprintf("198.19.%d.2", r+1)
		do("ip", "-n", core, "addr", "add", coreIP+"/30", "dev", up)
		do("ip", "-n", core, "link", "set", "dev", up, "up")
		do("ip", "-n", tor, "addr", "add", torIP+"/30", "dev", "uplink")
		do("ip", "-n", tor, "link", "set", "dev", "uplink", "up")
		do("ip", "-n", tor, "link", "add", "name", "rackbr", "type", "bridge")
		do("ip", "-n", tor, "link", "set", "dev", "rackbr", "mtu", strconv.Itoa(labMTU))
		do("ip", "-n", tor, "addr", "add", fmt.Sprintf("198.18.%d.1/24", r), "dev", "rackbr")
		do("ip", "-n", tor, "link", "set", "dev", "rackbr", "up")
		do("ip", "-n", tor, "route", "add", "default", "via", coreIP)
		do("ip", "-n", core, "route", "add", fmt.Sprintf("198.18.%d.0/24", r), "via", torIP)
		steps = append(steps, []string{"shape", core, up, strconv.FormatInt(n.upBits, 10)}, []string{"shape", tor, "uplink", strconv.FormatInt(n.upBits, 10)})
		hosts := n.hosts
		if r == 0 {
			hosts = 1
		}
		for h := 1; h <= hosts; h++ {
			hn := n.host(r, h)
			if err := n.addNS(hn); err != nil {
				return err
			}
			port := fmt.Sprintf("h%d", h)
			if err := veth(hn, "eth0", tor, port); err != nil {
				return err
			}
			do("ip", "-n", tor, "link", "set", "dev", port, "master", "rackbr")
			do("ip", "-n", tor, "link", "set", "dev", port, "up")
			do("ip", "-n", hn, "addr", "add", hostAddr(r, h).String()+"/24", "dev", "eth0")
			do("ip", "-n", hn, "link", "set", "dev", "eth0", "up")
			do("ip", "-n", hn, "route", "add", "default", "via", fmt.Sprintf("198.18.%d.1", r))
			steps = append(steps, []string{"shape", hn, "eth0", strconv.FormatInt(n.nicBits, 10)}, []string{"shape", tor, port, strconv.FormatInt(n.nicBits, 10)})
		}
	}
	for _, s := range steps {
		if s[0] == "shape" {
			bits, _ := strconv.ParseInt(s[3], 10, 64)
			if err := shape(s[1], s[2], bits); err != nil {
				return err
			}
			continue
		}
		if _, err := sh(s...); err != nil {
			return err
		}
	}
	return nil
}

// start runs argv in namespace ns. The process is killed, by its pid, when
// the lab closes, unless stop already ended it.
func (n *labNet) start(ns string, argv []string, stdout, stderr *storagetest.Buffer) (*exec.Cmd, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.proc[cmd.Process.Pid] = cmd
	n.mu.Unlock()
	return cmd, nil
}

// stop ends a process the lab started: the signal, then SIGKILL after
// grace, and waits for it.
func (n *labNet) stop(cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	_, ok := n.proc[cmd.Process.Pid]
	delete(n.proc, cmd.Process.Pid)
	n.mu.Unlock()
	if !ok {
		return
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// close kills every process the lab started and deletes its namespaces
// (which deletes every link in them).
func (n *labNet) close() {
	n.mu.Lock()
	procs := make([]*exec.Cmd, 0, len(n.proc))
	for _, c := range n.proc {
		procs = append(procs, c)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range procs {
		wg.Go(func() { n.stop(c, syscall.SIGKILL, 5*time.Second) })
	}
	wg.Wait()
	n.mu.Lock()
	nses := n.nses
	n.nses = nil
	n.mu.Unlock()
	for i := len(nses) - 1; i >= 0; i-- {
		killNSProcesses(nses[i]) // anything a client left behind
		if _, err := sh("ip", "netns", "del", nses[i]); err != nil {
			n.t.Errorf("remove lab namespace: %v", err)
		}
	}
}

// rackBytes reads the tbf byte counters of rack r's uplink: what entered the
// rack (egress of the core's end) and what left it (egress of the ToR's end).
func (n *labNet) rackBytes(r int) (in, out int64, err error) {
	if in, err = sentBytes(n.core(), fmt.Sprintf("r%d", r)); err != nil {
		return 0, 0, err
	}
	if out, err = sentBytes(n.tor(r), "uplink"); err != nil {
		return 0, 0, err
	}
	return in, out, nil
}

var sentRE = regexp.MustCompile(`Sent (\d+) bytes`)

func sentBytes(ns, dev string) (int64, error) {
	out, err := sh("tc", "-n", ns, "-s", "qdisc", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	m := sentRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no byte counter in tc's answer for %s in %s: %q", dev, ns, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// dialIn connects from inside namespace ns: the socket is made on a thread
// moved into ns and stays there. A thread that cannot be moved back is
// never unlocked, so the runtime retires it.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			return nil, err
		}
		defer target.Close()
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("enter namespace %s: %w", ns, err)
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			return c, errors.Join(err, fmt.Errorf("leave namespace %s: %w", ns, rerr))
		}
		runtime.UnlockOSThread()
		return c, err
	}
}
