package rackmap

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// writeHosts writes a hosts file into a fresh directory and returns its path.
func writeHosts(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts.csv")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustNew(t testing.TB, cfg Config) *Map {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// testConfig has a rule of every kind, with overlaps so that each
// precedence pair of SPEC section 4 can be tested.
func testConfig(t testing.TB) Config {
	return Config{
		Default:         "dflt",
		HostnamePattern: `^(?P<rack>[a-z0-9]*)-node`,
		HostsFile: writeHosts(t, `
10.1.2.200, web1.example, hostrack
,           named.example, namerack
fd00:1::99, ,             hostrack6
`),
		Map: []Rack{
			{Name: "wide", CIDRs: []string{"10.0.0.0/8"}},
			{Name: "r1", CIDRs: []string{"10.1.0.0/16", "fd00:1::/64"}},
			{Name: "r2", CIDRs: []string{"10.1.2.0/24", "fd00:1:0:0:2::/80"}},
			{Name: "r3", CIDRs: []string{"10.1.2.128/25"}},
		},
	}
}

func TestLookup(t *testing.T) {
	m := mustNew(t, testConfig(t))
	tests := []struct {
		name     string
		addr     string // "" for the zero Addr
		hostname string
		want     string
	}{
		// Hosts file by IP.
		{"host ip beats cidr", "10.1.2.200", "", "hostrack"},
		{"host ip beats host hostname", "10.1.2.200", "named.example", "hostrack"},
		{"host ip beats pattern", "10.1.2.200", "r7-node", "hostrack"},
		{"host ip v6", "fd00:1::99", "", "hostrack6"},
		{"host ip ipv4-mapped", "::ffff:10.1.2.200", "", "hostrack"},

		// Hosts file by hostname.
		{"host hostname beats cidr", "10.1.2.5", "named.example", "namerack"},
		{"host hostname beats pattern", "192.168.0.1", "named.example", "namerack"},
		{"host hostname of an ip entry", "192.168.0.1", "web1.example", "hostrack"},
		{"host hostname any case, trailing dot", "192.168.0.1", "NAMED.Example.", "namerack"},
		{"host hostname without addr", "", "named.example", "namerack"},

		// CIDRs, longest first.
		{"longest cidr /25", "10.1.2.130", "", "r3"},
		{"longer cidr /24 beats /16", "10.1.2.5", "", "r2"},
		{"longer cidr /16 beats /8", "10.1.3.1", "", "r1"},
		{"shortest cidr /8", "10.200.0.1", "", "wide"},
		{"cidr beats pattern", "10.1.3.1", "r7-node", "r1"},
		{"cidr ipv4-mapped", "::ffff:10.1.2.130", "", "r3"},
		{"cidr v6 /64", "fd00:1::5", "", "r1"},
		{"cidr v6 /80 beats /64", "fd00:1::2:0:0:1", "", "r2"},
		{"cidr v6 with zone", "fd00:1::5%eth0", "", "r1"},
		{"cidr v6 outside", "fd00:2::1", "", "dflt"},
		{"v4 outside", "192.168.0.1", "", "dflt"},

		// Pattern, then default.
		{"pattern beats default", "192.168.0.1", "r7-node3.example", "r7"},
		{"pattern on lower case", "192.168.0.1", "R7-Node3.example.", "r7"},
		{"pattern empty group", "192.168.0.1", "-node3", "dflt"},
		{"pattern no match", "192.168.0.1", "web9.example", "dflt"},
		{"no hostname", "192.168.0.1", "", "dflt"},
		{"nothing at all", "", "", "dflt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr netip.Addr
			if tt.addr != "" {
				addr = netip.MustParseAddr(tt.addr)
			}
			if got := m.Lookup(addr, tt.hostname); got != tt.want {
				t.Errorf("Lookup(%v, %q) = %q, want %q", addr, tt.hostname, got, tt.want)
			}
		})
	}
}

func TestLookupPatternCaptures(t *testing.T) {
	tests := []struct {
		pattern  string
		hostname string
		want     string
	}{
		{`^(?P<rack>[^.]+)\.`, "rack9.example", "rack9"},
		// A group that does not take part in the match does not count.
		{`^(?P<rack>r\d+)?node`, "node1", "dflt"},
		// Nor does one that would not be a valid rack name: hostnames can
		// come from anyone's PTR records.
		{`^(?P<rack>[^.]+)\.`, "a:b.example", "dflt"},
		{`^(?P<rack>[^.]+)\.`, "a b.example", "dflt"},
		// Unanchored patterns match anywhere.
		{`-(?P<rack>r\d+)-`, "host-r4-3", "r4"},
	}
	for _, tt := range tests {
		m := mustNew(t, Config{Default: "dflt", HostnamePattern: tt.pattern})
		addr := netip.MustParseAddr("192.0.2.1")
		if got := m.Lookup(addr, tt.hostname); got != tt.want {
			t.Errorf("pattern %q: Lookup(%v, %q) = %q, want %q", tt.pattern, addr, tt.hostname, got, tt.want)
		}
	}
}

func TestLookupFamiliesDoNotMix(t *testing.T) {
	m := mustNew(t, Config{Default: "dflt", Map: []Rack{
		{Name: "v6all", CIDRs: []string{"::/0"}},
		{Name: "v4all", CIDRs: []string{"0.0.0.0/0"}},
	}})
	for _, tt := range []struct{ addr, want string }{
		{"10.0.0.1", "v4all"},
		{"::ffff:10.0.0.1", "v4all"},
		{"2001:db8::1", "v6all"},
		{"::", "v6all"},
	} {
		addr := netip.MustParseAddr(tt.addr)
		if got := m.Lookup(addr, ""); got != tt.want {
			t.Errorf("Lookup(%v, %q) = %q, want %q", addr, "", got, tt.want)
		}
	}
}

func TestHost(t *testing.T) {
	m := mustNew(t, testConfig(t))
	tests := []struct {
		addr   string
		want   string
		wantOK bool
	}{
		{"10.1.2.200", "web1.example", true},
		{"::ffff:10.1.2.200", "web1.example", true},
		{"fd00:1::99", "", false}, // entry without hostname
		{"10.1.2.5", "", false},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		got, ok := m.Host(addr)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Host(%v) = %q, %v, want %q, %v", addr, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRacks(t *testing.T) {
	m := mustNew(t, testConfig(t))
	want := []string{"dflt", "hostrack", "hostrack6", "namerack", "r1", "r2", "r3", "wide"}
	got := m.Racks()
	if !slices.Equal(got, want) {
		t.Errorf("Racks() = %q, want %q", got, want)
	}
	// The Map must stay immutable whatever callers do with the result.
	got[0] = "changed"
	if got := m.Racks(); !slices.Equal(got, want) {
		t.Errorf("Racks() after changing an earlier result = %q, want %q", got, want)
	}
}

func TestDiff(t *testing.T) {
	base := Config{
		Default: "dflt",
		Map: []Rack{
			{Name: "r1", CIDRs: []string{"10.1.0.0/24", "10.1.1.0/24"}},
			{Name: "r2", CIDRs: []string{"10.2.0.0/24"}},
		},
	}
	old := mustNew(t, base)
	tests := []struct {
		name string
		cfg  func(c *Config)
		want string
	}{
		{"same", func(c *Config) {}, "no change"},
		{"rack added", func(c *Config) {
			c.Map = append(c.Map, Rack{Name: "r3", CIDRs: []string{"10.3.0.0/24"}})
		}, "racks +r3, cidrs 3 -> 4 (+1)"},
		{"rack removed, cidr moved", func(c *Config) {
			c.Map = []Rack{{Name: "r1", CIDRs: []string{"10.1.0.0/24", "10.1.1.0/24", "10.2.0.0/24"}}}
		}, "racks -r2, cidrs 3 -> 3 (~1)"},
		{"cidr replaced", func(c *Config) {
			c.Map = []Rack{{Name: "r1", CIDRs: []string{"10.1.0.0/24", "10.1.2.0/24"}}, c.Map[1]}
		}, "cidrs 3 -> 3 (+1 -1)"},
		{"default and pattern", func(c *Config) {
			c.Default = "other"
			c.HostnamePattern = `(?P<rack>r\d+)`
		}, `racks +other -dflt, default "dflt" -> "other", hostname_pattern "" -> "(?P<rack>r\\d+)"`},
		{"hosts", func(c *Config) {
			c.HostsFile = writeHosts(t, "10.9.0.1,,r9\n,a.example,r1\n")
		}, "racks +r9, hosts 0 -> 2 (+2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Map = slices.Clone(base.Map)
			tt.cfg(&cfg)
			m := mustNew(t, cfg)
			if got := m.Diff(old); got != tt.want {
				t.Errorf("Diff() = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("hosts moved", func(t *testing.T) {
		a := base
		a.HostsFile = writeHosts(t, "10.9.0.1,,r1\n10.9.0.2,,r1\n")
		b := base
		b.HostsFile = writeHosts(t, "10.9.0.1,,r2\n10.9.0.3,,r1\n")
		got := mustNew(t, b).Diff(mustNew(t, a))
		if want := "hosts 2 -> 2 (+1 -1 ~1)"; got != want {
			t.Errorf("Diff() = %q, want %q", got, want)
		}
	})
	t.Run("from nil", func(t *testing.T) {
		got := old.Diff(nil)
		if want := "racks +dflt +r1 +r2, default \"\" -> \"dflt\", cidrs 0 -> 3 (+3)"; got != want {
			t.Errorf("Diff(nil) = %q, want %q", got, want)
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none for a valid config
	}{
		{"defaults", DefaultConfig(), nil},
		{"full", Config{Default: "d", HostnamePattern: `(?P<rack>r\d+)`, Map: []Rack{
			{Name: "r1", CIDRs: []string{"10.0.0.0/8", "fd00::/8", "10.1.2.3/32"}},
		}}, nil},
		{"empty default", Config{}, []string{"default: rack name must not be empty"}},
		{"default with colon", Config{Default: "a:b"}, []string{`default: rack name "a:b" must not contain ':'`}},
		{"default with space", Config{Default: "a b"}, []string{`default: rack name "a b"`}},
		{"default with non-breaking space", Config{Default: "a\u00a0b"}, []string{"default: rack name"}},
		{"default not utf-8", Config{Default: "a\xffb"}, []string{"default: rack name", "not valid UTF-8"}},
		{"bad pattern", Config{Default: "d", HostnamePattern: "("}, []string{"hostname_pattern: error parsing regexp"}},
		{"pattern without group", Config{Default: "d", HostnamePattern: `r\d+`}, []string{"hostname_pattern: needs a named group (?P<rack>...)"}},
		{"bad rack name", Config{Default: "d", Map: []Rack{{Name: "r:1", CIDRs: []string{"10.0.0.0/8"}}}}, []string{"map[0].name: rack name"}},
		{"rack twice", Config{Default: "d", Map: []Rack{
			{Name: "r1", CIDRs: []string{"10.0.0.0/8"}},
			{Name: "r1", CIDRs: []string{"11.0.0.0/8"}},
		}}, []string{`map[1].name: rack "r1" is listed twice`}},
		{"no cidr", Config{Default: "d", Map: []Rack{{Name: "r1"}}}, []string{`map[0].cidrs: rack "r1" has no CIDR`}},
		{"bad cidr", Config{Default: "d", Map: []Rack{{Name: "r1", CIDRs: []string{"10.0.0.0"}}}}, []string{`map[0].cidrs[0]: bad CIDR "10.0.0.0"`}},
		{"host bits", Config{Default: "d", Map: []Rack{{Name: "r1", CIDRs: []string{"10.1.2.3/24"}}}}, []string{`map[0].cidrs[0]: CIDR "10.1.2.3/24" has host bits set: did you mean 10.1.2.0/24?`}},
		{"ipv4-mapped cidr", Config{Default: "d", Map: []Rack{{Name: "r1", CIDRs: []string{"::ffff:10.0.0.0/104"}}}}, []string{`map[0].cidrs[0]: CIDR "::ffff:10.0.0.0/104" is IPv4-mapped`}},
		{"cidr in two racks", Config{Default: "d", Map: []Rack{
			{Name: "r1", CIDRs: []string{"10.0.0.0/8"}},
			{Name: "r2", CIDRs: []string{"fd00::/8", "10.0.0.0/8"}},
		}}, []string{"map[1].cidrs[1]: CIDR 10.0.0.0/8 is already listed at map[0].cidrs[0]"}},
		{"every problem at once", Config{HostnamePattern: "x", Map: []Rack{{Name: ""}}}, []string{
			"default: ", "hostname_pattern: ", "map[0].name: ", "map[0].cidrs: ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			// New must refuse what Validate refuses, with the same words.
			if _, nerr := New(tt.cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New() error = %v, want %v", nerr, err)
			}
		})
	}
}

func TestNewHostsFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.csv")
	_, err := New(Config{Default: "d", HostsFile: missing})
	if err == nil || !strings.HasPrefix(err.Error(), "hosts_file: ") || !strings.Contains(err.Error(), missing) {
		t.Errorf("New(missing hosts file) = %v, want an error starting with hosts_file: and naming %s", err, missing)
	}

	path := writeHosts(t, "# header\n10.0.0.1,a,r1\nx,b,r1\n")
	_, err = New(Config{Default: "d", HostsFile: path})
	if want := fmt.Sprintf(`hosts_file: %s:3: bad IP "x"`, path); err == nil || err.Error() != want {
		t.Errorf("New(bad hosts file) = %v, want %s", err, want)
	}
}

// TestExampleHostsFile keeps the shipped example file loadable and means
// what its comments say.
func TestExampleHostsFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HostsFile = filepath.Join("..", "testdata", "rackmap", "hosts.csv")
	cfg.Map = []Rack{{Name: "r1", CIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}}}
	m := mustNew(t, cfg)
	tests := []struct {
		addr, hostname, want string
	}{
		{"10.1.0.7", "", "r2"},                        // exception inside r1's CIDR
		{"10.1.0.9", "build-07.dc1.example", "r2"},    // by hostname
		{"fd00:1::42", "", "r3"},                      // IPv6 entry
		{"fd00:1::43", "", "r1"},                      // its neighbour follows the CIDR
		{"10.9.9.9", "", "r4"},                        // IP-only entry
		{"192.0.2.1", "laptop-ops.dc1.example", "r4"}, // hostname-only entry
		{"10.2.0.20", "", "r1"},                       // second interface
		{"192.0.2.1", "", "default"},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		if got := m.Lookup(addr, tt.hostname); got != tt.want {
			t.Errorf("Lookup(%v, %q) = %q, want %q", addr, tt.hostname, got, tt.want)
		}
	}
	if got, ok := m.Host(netip.MustParseAddr("10.2.0.20")); got != "storage-20.dc1.example" || !ok {
		t.Errorf("Host(10.2.0.20) = %q, %v, want %q, true", got, ok, "storage-20.dc1.example")
	}
	want := []string{"default", "r1", "r2", "r3", "r4"}
	if got := m.Racks(); !slices.Equal(got, want) {
		t.Errorf("Racks() = %q, want %q", got, want)
	}
}

func TestLookupAllocs(t *testing.T) {
	m := mustNew(t, testConfig(t))
	for _, tt := range []struct{ addr, hostname string }{
		{"10.1.2.200", ""},
		{"10.1.2.5", "named.example"},
		{"10.1.2.130", "some-host.example"},
		{"fd00:1::2:0:0:1", ""},
		{"::ffff:10.1.2.130", ""},
		{"192.168.0.1", ""},
	} {
		addr := netip.MustParseAddr(tt.addr)
		if n := testing.AllocsPerRun(100, func() { m.Lookup(addr, tt.hostname) }); n != 0 {
			t.Errorf("Lookup(%v, %q) allocates %v times, want 0", addr, tt.hostname, n)
		}
	}
}

// TestLookupConcurrent lets the race detector check that lookups share the
// Map without writing to it.
func TestLookupConcurrent(t *testing.T) {
	m := mustNew(t, testConfig(t))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			addr := netip.AddrFrom4([4]byte{10, 1, 2, byte(i * 30)})
			for range 1000 {
				m.Lookup(addr, "R7-node.example")
				m.Host(addr)
				m.Racks()
			}
		})
	}
	wg.Wait()
}
