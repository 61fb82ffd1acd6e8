package rackmap

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"unicode"
	"unicode/utf8"

	"racktracker/field"
)

// Config mirrors the rack-mapping keys of the racks section of tracker.yaml.
// The racks section also holds the handout policy, which the tracker owns.
type Config struct {
	// Default is the rack of a host that no other rule places.
	Default string `yaml:"default"`
	// HostnamePattern is a regular expression with a named group
	// (?P<rack>...). It is matched, unanchored, against the hostname in lower
	// case without a trailing dot, because DNS names are case-insensitive and
	// the same host must not land in two racks depending on how a resolver
	// spelled its name.
	HostnamePattern string `yaml:"hostname_pattern"`
	// ResolveHostnames asks the tracker to find hostnames by reverse DNS
	// (see Resolver); the Map itself never resolves anything.
	ResolveHostnames bool `yaml:"resolve_hostnames"`
	// HostsFile is an optional file of CSV lines ip,hostname,rack (see
	// ParseHosts), read by New.
	HostsFile string `yaml:"hosts_file"`
	// Map lists each rack and its CIDRs; the longest matching prefix wins.
	Map []Rack `yaml:"map"`
}

// Rack is one entry of racks.map: a rack name and the CIDRs its hosts are in.
type Rack struct {
	Name  string   `yaml:"name"`
	CIDRs []string `yaml:"cidrs"`
}

// DefaultConfig returns the defaults documented in SPEC section 7.
func DefaultConfig() Config {
	return Config{Default: "default"}
}

// Validate reports every problem at once, as field.Errors with paths
// relative to the racks section. It does not read
// the hosts file: New does, and names the file and line of a bad entry.
func (c Config) Validate() error {
	_, err := c.prefixes()
	return err
}

// prefixes validates c and returns its CIDRs with their racks, so that New
// reads the config through the same checks as Validate.
func (c Config) prefixes() (map[netip.Prefix]string, error) {
	var errs field.Errors
	bad := errs.Add
	if err := checkRackName(c.Default); err != nil {
		bad("default", "%v", err)
	}
	if c.HostnamePattern != "" {
		re, err := regexp.Compile(c.HostnamePattern)
		switch {
		case err != nil:
			bad("hostname_pattern", "%v", err)
		case re.SubexpIndex("rack") < 0:
			bad("hostname_pattern", "needs a named group (?P<rack>...)")
		}
	}
	seen := map[string]bool{}
	prefixes := map[netip.Prefix]string{}
	where := map[netip.Prefix]string{}
	for i, r := range c.Map {
		if err := checkRackName(r.Name); err != nil {
			bad(fmt.Sprintf("map[%d].name", i), "%v", err)
		} else if seen[r.Name] {
			bad(fmt.Sprintf("map[%d].name", i), "rack %q is listed twice", r.Name)
		}
		seen[r.Name] = true
		if len(r.CIDRs) == 0 {
			bad(fmt.Sprintf("map[%d].cidrs", i), "rack %q has no CIDR", r.Name)
		}
		for j, s := range r.CIDRs {
			path := fmt.Sprintf("map[%d].cidrs[%d]", i, j)
			p, err := netip.ParsePrefix(s)
			switch {
			case err != nil:
				bad(path, "bad CIDR %q", s)
			// Lookup unmaps IPv4-mapped addresses, so such a prefix could
			// never match: say so rather than accept a dead rule.
			case p.Addr().Is4In6():
				bad(path, "CIDR %q is IPv4-mapped IPv6, which never matches: write the IPv4 form", s)
			// 10.1.0.5/24 is most likely a typo for a host or for the /24;
			// guessing which would silently change the rack of many hosts.
			case p != p.Masked():
				bad(path, "CIDR %q has host bits set: did you mean %s?", s, p.Masked())
			case where[p] != "":
				bad(path, "CIDR %s is already listed at %s", p, where[p])
			default:
				where[p] = path
				prefixes[p] = r.Name
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return prefixes, nil
}

// checkRackName rejects names that would break the Redis key layout, where a
// rack name stands between colons, or that logs, JSON and the dashboard
// could not show faithfully.
func checkRackName(name string) error {
	if name == "" {
		return errors.New("rack name must not be empty")
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("rack name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("rack name %q must not contain ':', spaces or control characters", name)
		}
	}
	return nil
}
