package rackmap

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func FuzzParseHosts(f *testing.F) {
	// The example file shipped with the repository.
	f.Add("10.1.0.7,   build-07.dc1.example,  r2\n,Laptop-Ops.dc1.example., r4\n# c\n")
	// Every field form: both, IP only, hostname only, IPv6.
	f.Add("10.0.0.1,a.example,r1\n10.0.0.2,,r1\n,b.example,r2\nfd00::1,c,r3\n")
	// BOM, CRLF line ends, blank and indented comment lines.
	f.Add("\uFEFF# x\r\n\r\n  # y\r\n10.0.0.1 , a , r1\r\n")
	// Duplicates: an IP twice (error), a hostname in two racks (error), a
	// hostname twice in one rack (fine).
	f.Add("10.0.0.1,a,r1\n10.0.0.1,b,r1\n")
	f.Add("10.0.0.1,a,r1\n10.0.0.2,A.,r2\n")
	f.Add("10.0.0.1,a,r1\n10.0.0.2,a,r1\n")
	// Addresses that Lookup could never match.
	f.Add("::ffff:10.0.0.1,,r1\nfe80::1%eth0,,r1\n")
	// Wrong field counts, empty fields, bad rack names.
	f.Add("10.0.0.1\n,,\n10.0.0.1,a,\n10.0.0.1,a,r:1\n10.0.0.1,a,r 1,x\n")
	// Not UTF-8, and a non-breaking space inside a rack name.
	f.Add("10.0.0.1,a,r\xff\n10.0.0.2,b,r\u00a0x\n")
	// No final newline.
	f.Add("10.0.0.1,a,r1")

	f.Fuzz(func(t *testing.T, in string) {
		hosts, err := ParseHosts(strings.NewReader(in), "f.csv")
		if err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.csv:") {
					t.Fatalf("ParseHosts() error line %q does not name the file", line)
				}
			}
			return
		}
		addrs := map[netip.Addr]bool{}
		racks := map[string]string{}
		for _, h := range hosts {
			if err := checkRackName(h.Rack); err != nil {
				t.Errorf("ParseHosts() returned %+v: %v", h, err)
			}
			if !h.Addr.IsValid() && h.Hostname == "" {
				t.Errorf("ParseHosts() returned %+v, which matches nothing", h)
			}
			if h.Addr.Zone() != "" || h.Addr.Is4In6() {
				t.Errorf("ParseHosts() returned %+v, which Lookup cannot match", h)
			}
			if h.Addr.IsValid() {
				if addrs[h.Addr] {
					t.Errorf("ParseHosts() returned IP %v twice", h.Addr)
				}
				addrs[h.Addr] = true
			}
			if h.Hostname != "" {
				if h.Hostname != normalizeHostname(h.Hostname) || checkHostname(h.Hostname) != nil {
					t.Errorf("ParseHosts() returned hostname %q, not normalized or invalid", h.Hostname)
				}
				if r, ok := racks[h.Hostname]; ok && r != h.Rack {
					t.Errorf("ParseHosts() returned hostname %q in racks %q and %q", h.Hostname, r, h.Rack)
				}
				racks[h.Hostname] = h.Rack
			}
		}
		// What ParseHosts returns, written back out, reads the same.
		var b strings.Builder
		for _, h := range hosts {
			ip := ""
			if h.Addr.IsValid() {
				ip = h.Addr.String()
			}
			fmt.Fprintf(&b, "%s,%s,%s\n", ip, h.Hostname, h.Rack)
		}
		again, err := ParseHosts(strings.NewReader(b.String()), "again.csv")
		if err != nil || !slices.Equal(again, hosts) {
			t.Errorf("ParseHosts(%q) = %v, %v, want %v", b.String(), again, err, hosts)
		}
	})
}

// rule is one CIDR of a fuzzed config, for the reference lookup.
type rule struct {
	prefix netip.Prefix
	rack   string
}

// rulesFromBytes turns fuzz input into up to 16 distinct CIDRs: a family
// byte, a length byte and the address bytes, repeated.
func rulesFromBytes(data []byte) []rule {
	var rules []rule
	seen := map[netip.Prefix]bool{}
	for len(data) >= 2 && len(rules) < 16 {
		v6, bits := data[0]&1 == 1, int(data[1])
		data = data[2:]
		var a netip.Addr
		if v6 {
			var b [16]byte
			data = data[copy(b[:], data):]
			a = netip.AddrFrom16(b)
			if a.Is4In6() {
				continue // Validate refuses these
			}
			bits %= 129
		} else {
			var b [4]byte
			data = data[copy(b[:], data):]
			a = netip.AddrFrom4(b)
			bits %= 33
		}
		p := netip.PrefixFrom(a, bits).Masked()
		if !seen[p] {
			seen[p] = true
			rules = append(rules, rule{p, fmt.Sprintf("r%d", len(rules))})
		}
	}
	return rules
}

// linearLookup is the obvious longest-prefix match, as a reference for
// Map's and as the baseline of BenchmarkLookup.
func linearLookup(rules []rule, addr netip.Addr) (string, bool) {
	addr = addr.Unmap().WithZone("")
	best, rack := -1, ""
	for _, r := range rules {
		if r.prefix.Bits() > best && r.prefix.Contains(addr) {
			best, rack = r.prefix.Bits(), r.rack
		}
	}
	return rack, best >= 0
}

func FuzzLookup(f *testing.F) {
	// An IPv4 address inside nested /8, /16 and /24 prefixes.
	f.Add([]byte{10, 1, 2, 3}, "", []byte{0, 8, 10, 0, 0, 0, 0, 16, 10, 1, 0, 0, 0, 24, 10, 1, 2, 0})
	// The same address IPv4-mapped, and a /0 of each family.
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}, "", []byte{0, 0, 1, 0})
	// An IPv6 address in a /64 and a /128.
	f.Add([]byte{0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "",
		[]byte{1, 64, 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 128, 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	// No address, only a hostname for the pattern.
	f.Add([]byte{}, "Rack7-node1.example.", []byte{})
	// A hostname whose capture is not a valid rack name.
	f.Add([]byte{192, 0, 2, 1}, "a:b-node", []byte{})

	pattern := regexp.MustCompile(`^(?P<rack>[^-]*)-`)
	f.Fuzz(func(t *testing.T, addrBytes []byte, hostname string, ruleBytes []byte) {
		rules := rulesFromBytes(ruleBytes)
		cfg := Config{Default: "dflt", HostnamePattern: pattern.String()}
		for _, r := range rules {
			cfg.Map = append(cfg.Map, Rack{Name: r.rack, CIDRs: []string{r.prefix.String()}})
		}
		m, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		addr, _ := netip.AddrFromSlice(addrBytes)
		got := m.Lookup(addr, hostname)
		if want, ok := linearLookup(rules, addr); ok {
			if got != want {
				t.Errorf("Lookup(%v, %q) = %q, want %q (CIDRs %v)", addr, hostname, got, want, rules)
			}
			return
		}
		if err := checkRackName(got); err != nil {
			t.Errorf("Lookup(%v, %q) = %q: %v", addr, hostname, got, err)
		}
		if got != "dflt" && !strings.HasPrefix(normalizeHostname(hostname), got+"-") {
			t.Errorf("Lookup(%v, %q) = %q, want %q or the pattern's rack", addr, hostname, got, "dflt")
		}
	})
}
