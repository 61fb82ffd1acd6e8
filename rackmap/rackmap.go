package rackmap

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Map places hosts in racks. It is immutable once New returns, so any number
// of goroutines may call its methods at once; to reload, build a new Map.
type Map struct {
	def     string
	pattern *regexp.Regexp // nil when hostname_pattern is empty
	group   int            // index of the rack group in pattern

	// Longest-prefix match: prefixes is keyed by masked prefix, and bits4
	// and bits6 list the prefix lengths in use, longest first. A lookup
	// masks the address once per length in use (a handful in a real data
	// center) instead of scanning every CIDR.
	prefixes map[netip.Prefix]string
	bits4    []int
	bits6    []int

	byAddr map[netip.Addr]Host
	byName map[string]string // hostname -> rack
	hosts  []Host            // in file order, for Diff
	racks  []string          // sorted, for Racks
}

// New validates cfg and builds its Map, reading cfg.HostsFile when set.
// Errors about the hosts file start with "hosts_file: " and name the file
// and line, like Validate's errors name the YAML key.
func New(cfg Config) (*Map, error) {
	prefixes, err := cfg.prefixes()
	if err != nil {
		return nil, err
	}
	var hosts []Host
	if cfg.HostsFile != "" {
		hosts, err = readHosts(cfg.HostsFile)
		if err != nil {
			return nil, fmt.Errorf("hosts_file: %w", err)
		}
	}
	m := &Map{
		def:      cfg.Default,
		prefixes: prefixes,
		byAddr:   make(map[netip.Addr]Host),
		byName:   make(map[string]string),
		hosts:    hosts,
	}
	if cfg.HostnamePattern != "" {
		// Validate has compiled it already.
		m.pattern = regexp.MustCompile(cfg.HostnamePattern)
		m.group = m.pattern.SubexpIndex("rack")
	}
	var has4, has6 [129]bool
	for p := range prefixes {
		if p.Addr().Is4() {
			has4[p.Bits()] = true
		} else {
			has6[p.Bits()] = true
		}
	}
	for b := 128; b >= 0; b-- {
		if has4[b] {
			m.bits4 = append(m.bits4, b)
		}
		if has6[b] {
			m.bits6 = append(m.bits6, b)
		}
	}
	racks := map[string]bool{cfg.Default: true}
	for _, r := range cfg.Map {
		racks[r.Name] = true
	}
	for _, h := range hosts {
		racks[h.Rack] = true
		if h.Addr.IsValid() {
			m.byAddr[h.Addr] = h
		}
		if h.Hostname != "" {
			m.byName[h.Hostname] = h.Rack
		}
	}
	m.racks = slices.Sorted(maps.Keys(racks))
	return m, nil
}

func readHosts(path string) ([]Host, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseHosts(f, path)
}

// Lookup returns the rack of the host at addr named hostname; hostname is ""
// when unknown. The first rule that matches wins (SPEC section 4): a hosts
// file entry for addr; a hosts file entry for hostname; the longest CIDR of
// racks.map containing addr; hostname_pattern; racks.default.
//
// An IPv4-mapped IPv6 address is looked up as the IPv4 address, since dual
// stack listeners report IPv4 peers that way, and the zone of an address is
// ignored. Hostnames are compared in lower case without a trailing dot.
// Lookup does not allocate unless the hostname pattern is consulted or the
// hostname has upper-case letters.
func (m *Map) Lookup(addr netip.Addr, hostname string) (rack string) {
	addr = addr.Unmap().WithZone("")
	if h, ok := m.byAddr[addr]; ok {
		return h.Rack
	}
	hostname = normalizeHostname(hostname)
	if hostname != "" {
		if r, ok := m.byName[hostname]; ok {
			return r
		}
	}
	if r, ok := m.longestPrefix(addr); ok {
		return r
	}
	if m.pattern != nil && hostname != "" {
		if r, ok := m.matchPattern(hostname); ok {
			return r
		}
	}
	return m.def
}

func (m *Map) longestPrefix(addr netip.Addr) (string, bool) {
	var bits []int
	switch {
	case addr.Is4():
		bits = m.bits4
	case addr.Is6():
		bits = m.bits6
	default:
		return "", false
	}
	for _, b := range bits {
		p, err := addr.Prefix(b)
		if err != nil {
			continue
		}
		if r, ok := m.prefixes[p]; ok {
			return r, true
		}
	}
	return "", false
}

// matchPattern applies hostname_pattern. Hostnames come from reverse DNS,
// which whoever controls the PTR zone may fill with anything, so a capture
// that is not a valid rack name does not count (and neither does an empty
// one): the host falls through to the default rack.
func (m *Map) matchPattern(hostname string) (string, bool) {
	loc := m.pattern.FindStringSubmatchIndex(hostname)
	if loc == nil || loc[2*m.group] < 0 {
		return "", false
	}
	r := hostname[loc[2*m.group]:loc[2*m.group+1]]
	if checkRackName(r) != nil {
		return "", false
	}
	return r, true
}

// Host returns the hostname that the hosts file gives addr, if any.
// It looks addr up the same way as Lookup.
func (m *Map) Host(addr netip.Addr) (hostname string, ok bool) {
	h, ok := m.byAddr[addr.Unmap().WithZone("")]
	if !ok || h.Hostname == "" {
		return "", false
	}
	return h.Hostname, true
}

// Racks returns the sorted names of the racks that the config names: those
// of racks.map, of the hosts file and the default. Racks that only
// hostname_pattern produces are not known in advance, so they are missing.
func (m *Map) Racks() []string {
	return slices.Clone(m.racks)
}

// Diff summarises, in one line for the log, what changed from old to m:
// racks added and removed, and the number of CIDRs and host entries with
// how many were added (+), removed (-) and moved to another rack (~). old
// may be nil, as before the first load. It returns "no change" when the
// two maps hold the same rules.
func (m *Map) Diff(old *Map) string {
	if old == nil {
		old = &Map{}
	}
	var parts []string
	added, removed := setDiff(old.racks, m.racks)
	if len(added)+len(removed) > 0 {
		var b strings.Builder
		b.WriteString("racks")
		for _, r := range added {
			b.WriteString(" +" + r)
		}
		for _, r := range removed {
			b.WriteString(" -" + r)
		}
		parts = append(parts, b.String())
	}
	if old.def != m.def {
		parts = append(parts, fmt.Sprintf("default %q -> %q", old.def, m.def))
	}
	if s := countDiff("cidrs", old.prefixes, m.prefixes); s != "" {
		parts = append(parts, s)
	}
	if s := countDiff("hosts", hostIndex(old.hosts), hostIndex(m.hosts)); s != "" {
		parts = append(parts, s)
	}
	if patternString(old.pattern) != patternString(m.pattern) {
		parts = append(parts, fmt.Sprintf("hostname_pattern %q -> %q", patternString(old.pattern), patternString(m.pattern)))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

func setDiff(old, cur []string) (added, removed []string) {
	for _, r := range cur {
		if !slices.Contains(old, r) {
			added = append(added, r)
		}
	}
	for _, r := range old {
		if !slices.Contains(cur, r) {
			removed = append(removed, r)
		}
	}
	return added, removed
}

// countDiff reports "name N -> M (+a -r ~c)" for two rule sets mapping a
// key to a rack, or "" when they are equal.
func countDiff[K comparable](name string, old, cur map[K]string) string {
	var add, del, moved int
	for k, r := range cur {
		o, ok := old[k]
		switch {
		case !ok:
			add++
		case o != r:
			moved++
		}
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			del++
		}
	}
	if add+del+moved == 0 {
		return ""
	}
	var counts []string
	for _, c := range []struct {
		sign string
		n    int
	}{{"+", add}, {"-", del}, {"~", moved}} {
		if c.n > 0 {
			counts = append(counts, fmt.Sprintf("%s%d", c.sign, c.n))
		}
	}
	return fmt.Sprintf("%s %d -> %d (%s)", name, len(old), len(cur), strings.Join(counts, " "))
}

// hostIndex keys host entries by what they match, so that Diff can tell an
// entry that moved rack from one that was replaced.
func hostIndex(hosts []Host) map[string]string {
	idx := make(map[string]string, len(hosts))
	for _, h := range hosts {
		key := h.Addr.String()
		if !h.Addr.IsValid() {
			key = "name " + h.Hostname
		} else if h.Hostname != "" {
			key += " " + h.Hostname
		}
		idx[key] = h.Rack
	}
	return idx
}

func patternString(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}
