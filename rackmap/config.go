package rackmap

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
)

// Config mirrors the rack-mapping keys of the racks section of tracker.yaml.
// The racks section also holds the handout policy, which the tracker owns.
type Config struct {
	Default          string `yaml:"default"`
	HostnamePattern  string `yaml:"hostname_pattern"`
	ResolveHostnames bool   `yaml:"resolve_hostnames"`
	HostsFile        string `yaml:"hosts_file"`
	Map              []Rack `yaml:"map"`
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

// Validate reports every problem at once; each error starts with the YAML
// path of the offending key, relative to the racks section. It does not read
// the hosts file: New does, and names the file and line of a bad entry.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}
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
			if _, err := netip.ParsePrefix(s); err != nil {
				bad(fmt.Sprintf("map[%d].cidrs[%d]", i, j), "bad CIDR %q", s)
			}
		}
	}
	return errors.Join(errs...)
}

// checkRackName rejects names that would break the Redis key layout, where a
// rack name stands between colons.
func checkRackName(name string) error {
	if name == "" {
		return errors.New("rack name must not be empty")
	}
	for _, r := range name {
		if r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("rack name %q must not contain ':', spaces or control characters", name)
		}
	}
	return nil
}
