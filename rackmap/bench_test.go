package rackmap

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkLookup measures each rule of Lookup on a map the size of a large
// data center: 1000 CIDRs and 1000 host entries. The linear-scan case is the
// baseline for the CIDR cases.
func BenchmarkLookup(b *testing.B) {
	cfg := Config{Default: "dflt", HostnamePattern: `^(?P<rack>r\d+)-`}
	var rules []rule
	add := func(rack string, p netip.Prefix) {
		rules = append(rules, rule{p, rack})
	}
	// 800 /24s under 100 /16s, and 100 IPv6 /64s, in 50 racks.
	for i := range 800 {
		add(fmt.Sprintf("r%d", i%50), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 8), byte(i % 8), 0}), 24))
	}
	for i := range 100 {
		add(fmt.Sprintf("r%d", i%50), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
		add(fmt.Sprintf("r%d", i%50), netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, byte(i)}), 64))
	}
	cidrs := map[string][]string{}
	for _, r := range rules {
		cidrs[r.rack] = append(cidrs[r.rack], r.prefix.String())
	}
	for i := range 50 {
		name := fmt.Sprintf("r%d", i)
		cfg.Map = append(cfg.Map, Rack{Name: name, CIDRs: cidrs[name]})
	}
	var hosts strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&hosts, "172.16.%d.%d,h%d.example,r%d\n", i/256, i%256, i, i%50)
	}
	cfg.HostsFile = writeHosts(b, hosts.String())
	m := mustNew(b, cfg)

	// Many different addresses per case, so that the maps are not always
	// asked the same key.
	v4 := func(f func(i int) [4]byte) []netip.Addr {
		var as []netip.Addr
		for i := range 256 {
			as = append(as, netip.AddrFrom4(f(i)))
		}
		return as
	}
	cases := []struct {
		name     string
		addrs    []netip.Addr
		hostname func(i int) string
		linear   bool
	}{
		{name: "host-ip", addrs: v4(func(i int) [4]byte { return [4]byte{172, 16, byte(i % 3), byte(i)} })},
		{name: "host-name", addrs: v4(func(i int) [4]byte { return [4]byte{192, 168, 0, byte(i)} }),
			hostname: func(i int) string { return fmt.Sprintf("h%d.example", i) }},
		{name: "cidr-v4-24", addrs: v4(func(i int) [4]byte { return [4]byte{10, byte(i % 100), byte(i % 8), byte(i)} })},
		{name: "cidr-v4-16", addrs: v4(func(i int) [4]byte { return [4]byte{10, byte(i % 100), 200, byte(i)} })},
		{name: "cidr-v4-24-linear-scan", addrs: v4(func(i int) [4]byte { return [4]byte{10, byte(i % 100), byte(i % 8), byte(i)} }), linear: true},
		{name: "cidr-v4-mapped", addrs: func() []netip.Addr {
			var as []netip.Addr
			for i := range 256 {
				as = append(as, netip.AddrFrom16(netip.AddrFrom4([4]byte{10, byte(i % 100), byte(i % 8), byte(i)}).As16()))
			}
			return as
		}()},
		{name: "cidr-v6", addrs: func() []netip.Addr {
			var as []netip.Addr
			for i := range 256 {
				as = append(as, netip.AddrFrom16([16]byte{0xfd, 0, 0, byte(i % 100), 15: byte(i)}))
			}
			return as
		}()},
		{name: "pattern", addrs: v4(func(i int) [4]byte { return [4]byte{192, 168, 1, byte(i)} }),
			hostname: func(i int) string { return fmt.Sprintf("r%d-node%d.example", i%50, i) }},
		{name: "default", addrs: v4(func(i int) [4]byte { return [4]byte{192, 168, 2, byte(i)} }),
			hostname: func(i int) string { return fmt.Sprintf("node%d.example", i) }},
	}
	for _, c := range cases {
		names := make([]string, len(c.addrs))
		if c.hostname != nil {
			for i := range names {
				names[i] = c.hostname(i)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				j := i % len(c.addrs)
				if c.linear {
					linearLookup(rules, c.addrs[j])
				} else {
					m.Lookup(c.addrs[j], names[j])
				}
				i++
			}
		})
	}
}
