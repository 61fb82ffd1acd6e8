package rackmap_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"racktracker/rackmap"
)

func ExampleMap_Lookup() {
	cfg := rackmap.DefaultConfig()
	cfg.HostnamePattern = `^(?P<rack>r\d+)-`
	cfg.Map = []rackmap.Rack{
		{Name: "r1", CIDRs: []string{"10.1.0.0/16"}},
		{Name: "r2", CIDRs: []string{"10.1.2.0/24"}},
	}
	m, err := rackmap.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Lookup(netip.MustParseAddr("10.1.2.3"), ""))             // the /24 beats the /16
	fmt.Println(m.Lookup(netip.MustParseAddr("10.1.9.9"), "r2-node"))      // a CIDR beats the pattern
	fmt.Println(m.Lookup(netip.MustParseAddr("192.0.2.1"), "r7-node"))     // the pattern
	fmt.Println(m.Lookup(netip.MustParseAddr("192.0.2.1"), "web.example")) // the default
	// Output:
	// r2
	// r1
	// r7
	// default
}

func ExampleResolver() {
	// In production lookup is net.DefaultResolver.LookupAddr.
	lookup := func(ctx context.Context, addr string) ([]string, error) {
		return []string{"r3-node7.example."}, nil
	}
	r := rackmap.NewResolver(lookup, 100*time.Millisecond, 10*time.Minute, 10000)
	defer r.Close()
	m, err := rackmap.New(rackmap.Config{Default: "default", HostnamePattern: `^(?P<rack>r\d+)-`})
	if err != nil {
		fmt.Println(err)
		return
	}
	addr := netip.MustParseAddr("192.0.2.7")
	name := r.Hostname(context.Background(), addr)
	fmt.Println(name, m.Lookup(addr, name))
	// Output: r3-node7.example r3
}
