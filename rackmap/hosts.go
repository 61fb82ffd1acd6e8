package rackmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Host is one entry of a hosts file: it places a host in a rack by its IP,
// by its hostname, or by both.
type Host struct {
	// Addr is the host's IP address; the zero Addr when the entry matches
	// by hostname only.
	Addr netip.Addr
	// Hostname is in lower case without a trailing dot; empty when the
	// entry matches by IP only.
	Hostname string
	Rack     string
}

// seenName is where ParseHosts first saw a hostname.
type seenName struct {
	rack string
	line int
}

// maxHostErrors caps the errors ParseHosts reports, so that feeding it the
// wrong file gives a readable message rather than one line per line.
const maxHostErrors = 10

// ParseHosts reads hosts-file lines "ip,hostname,rack". Blank lines and lines
// whose first non-space character is '#' are ignored, and spaces around each
// field are trimmed. Either the ip or the hostname may be empty, not both.
// name is only used in errors, which read "name:line: problem"; ParseHosts
// reports every bad line (up to a few), not just the first.
//
// An IP listed twice is an error, and so is a hostname listed in two racks;
// a hostname on several lines of the same rack is fine (a host with several
// addresses). IPs with a zone and IPv4-mapped IPv6 addresses are refused,
// since Lookup could never match them, and hostnames must look like DNS
// names; both are returned in the form Lookup compares.
func ParseHosts(r io.Reader, name string) ([]Host, error) {
	var (
		hosts    []Host
		errs     []error
		nerrs    int
		addrLine = map[netip.Addr]int{}
		nameSeen = map[string]seenName{}
	)
	bad := func(line int, format string, args ...any) {
		nerrs++
		if nerrs <= maxHostErrors {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
		}
	}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			// Spreadsheet programs like to start a CSV file with a BOM.
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		text = strings.TrimSpace(text)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		if len(fields) != 3 {
			bad(line, "want 3 fields ip,hostname,rack, got %d", len(fields))
			continue
		}
		ipText := strings.TrimSpace(fields[0])
		hostname := strings.TrimSpace(fields[1])
		rack := strings.TrimSpace(fields[2])
		var h Host
		if ipText == "" && hostname == "" {
			bad(line, "ip and hostname are both empty")
			continue
		}
		if ipText != "" {
			a, err := netip.ParseAddr(ipText)
			switch {
			case err != nil:
				bad(line, "bad IP %q", ipText)
				continue
			case a.Zone() != "":
				bad(line, "IP %q has a zone, which never matches", ipText)
				continue
			case a.Is4In6():
				bad(line, "IP %q is IPv4-mapped IPv6, which never matches: write %s", ipText, a.Unmap())
				continue
			}
			h.Addr = a
		}
		if hostname != "" {
			if err := checkHostname(hostname); err != nil {
				bad(line, "%v", err)
				continue
			}
			h.Hostname = normalizeHostname(hostname)
		}
		if err := checkRackName(rack); err != nil {
			bad(line, "%v", err)
			continue
		}
		h.Rack = rack
		if h.Addr.IsValid() {
			if first, ok := addrLine[h.Addr]; ok {
				bad(line, "IP %s is already listed on line %d", h.Addr, first)
				continue
			}
		}
		if h.Hostname != "" {
			if first, ok := nameSeen[h.Hostname]; ok && first.rack != h.Rack {
				bad(line, "hostname %q is already in rack %q on line %d", h.Hostname, first.rack, first.line)
				continue
			}
		}
		hosts = append(hosts, h)
		if h.Addr.IsValid() {
			addrLine[h.Addr] = line
		}
		if _, ok := nameSeen[h.Hostname]; !ok && h.Hostname != "" {
			nameSeen[h.Hostname] = seenName{h.Rack, line}
		}
	}
	if err := sc.Err(); err != nil {
		// The scanner stops at the line it could not read.
		errs = append(errs, fmt.Errorf("%s:%d: %w", name, line+1, err))
	}
	if nerrs > maxHostErrors {
		errs = append(errs, fmt.Errorf("%s: %d more bad lines", name, nerrs-maxHostErrors))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return hosts, nil
}

// checkHostname accepts the characters of DNS names (and '_', which some
// data centers use), since the names are compared with reverse DNS answers
// and shown in logs and on the dashboard.
func checkHostname(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("hostname %.20q... is longer than 253 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return fmt.Errorf("bad hostname %q: only letters, digits, '-', '_' and '.' are allowed", s)
		}
	}
	// Only one trailing dot (the root) may be left out of a label, or two
	// spellings would normalize to different names.
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" {
			return fmt.Errorf("bad hostname %q: empty label", s)
		}
	}
	return nil
}

// normalizeHostname makes the spellings of one DNS name equal. It does not
// allocate when s is already in lower case, which keeps Lookup cheap.
func normalizeHostname(s string) string {
	s = strings.TrimSuffix(s, ".")
	return strings.ToLower(s)
}
