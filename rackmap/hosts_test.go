package rackmap

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseHosts(t *testing.T) {
	in := "\uFEFF# comment on the first line, after a BOM\r\n" +
		"\r\n" +
		"   # indented comment\n" +
		"10.0.0.1,a.example,r1\r\n" +
		"  fd00::1 ,  B.Example. , r2  \n" +
		",c.example,r3\n" +
		"10.0.0.2,,r3\n" +
		"10.0.0.3,a.example,r1\n" + // same hostname, same rack: a second interface
		"\t\n"
	want := []Host{
		{Addr: netip.MustParseAddr("10.0.0.1"), Hostname: "a.example", Rack: "r1"},
		{Addr: netip.MustParseAddr("fd00::1"), Hostname: "b.example", Rack: "r2"},
		{Hostname: "c.example", Rack: "r3"},
		{Addr: netip.MustParseAddr("10.0.0.2"), Rack: "r3"},
		{Addr: netip.MustParseAddr("10.0.0.3"), Hostname: "a.example", Rack: "r1"},
	}
	got, err := ParseHosts(strings.NewReader(in), "h.csv")
	if err != nil {
		t.Fatalf("ParseHosts() error = %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseHosts() = %v, want %v", got, want)
	}
}

func TestParseHostsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole error
	}{
		{"too few fields", "# c\n10.0.0.1,r1\n", "h.csv:2: want 3 fields ip,hostname,rack, got 2"},
		{"too many fields", "10.0.0.1,a,r1,\n", "h.csv:1: want 3 fields ip,hostname,rack, got 4"},
		{"inline comment", "10.0.0.1,a,r1 # note\n", `h.csv:1: rack name "r1 # note" must not contain ':', spaces or control characters`},
		{"ip and hostname empty", "\n , ,r1\n", "h.csv:2: ip and hostname are both empty"},
		{"bad ip", "a,b,c\nx,b,r1\n", `h.csv:1: bad IP "a"` + "\n" + `h.csv:2: bad IP "x"`},
		{"cidr for ip", "10.0.0.0/8,,r1\n", `h.csv:1: bad IP "10.0.0.0/8"`},
		{"zone", "fe80::1%eth0,,r1\n", `h.csv:1: IP "fe80::1%eth0" has a zone, which never matches`},
		{"ipv4-mapped", "::ffff:10.0.0.1,,r1\n", `h.csv:1: IP "::ffff:10.0.0.1" is IPv4-mapped IPv6, which never matches: write 10.0.0.1`},
		{"bad hostname", "10.0.0.1,a/b,r1\n", `h.csv:1: bad hostname "a/b": only letters, digits, '-', '_' and '.' are allowed`},
		{"hostname only a dot", "10.0.0.1,.,r1\n", `h.csv:1: bad hostname ".": empty label`},
		{"hostname two dots", "10.0.0.1,..,r1\n", `h.csv:1: bad hostname "..": empty label`},
		{"hostname empty label", "10.0.0.1,a..b,r1\n", `h.csv:1: bad hostname "a..b": empty label`},
		{"hostname two trailing dots", "10.0.0.1,a..,r1\n", `h.csv:1: bad hostname "a..": empty label`},
		{"hostname leading dot", "10.0.0.1,.a,r1\n", `h.csv:1: bad hostname ".a": empty label`},
		{"long hostname", "10.0.0.1," + strings.Repeat("a", 254) + ",r1\n", `h.csv:1: hostname "aaaaaaaaaaaaaaaaaaaa"... is longer than 253 characters`},
		{"empty rack", "10.0.0.1,a,\n", "h.csv:1: rack name must not be empty"},
		{"rack with colon", "10.0.0.1,a,r:1\n", `h.csv:1: rack name "r:1" must not contain ':', spaces or control characters`},
		{"duplicate ip", "10.0.0.1,a,r1\n\n10.0.0.1,b,r1\n", "h.csv:3: IP 10.0.0.1 is already listed on line 1"},
		{"duplicate ip v6 spelled differently", "fd00::1,,r1\nfd00:0::0:1,,r1\n", "h.csv:2: IP fd00::1 is already listed on line 1"},
		{"hostname in two racks", "10.0.0.1,a.example,r1\n,A.example.,r2\n", `h.csv:2: hostname "a.example" is already in rack "r1" on line 1`},
		{"line too long", "10.0.0.1,a,r1\n" + strings.Repeat("x", 70_000) + "\n", "h.csv:2: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts, err := ParseHosts(strings.NewReader(tt.in), "h.csv")
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseHosts(%.40q) = %v, %v, want error %q", tt.in, hosts, err, tt.want)
			}
		})
	}
}

func TestParseHostsErrorCap(t *testing.T) {
	var b strings.Builder
	for i := range maxHostErrors + 5 {
		fmt.Fprintf(&b, "bad%d,,r1\n", i)
	}
	_, err := ParseHosts(strings.NewReader(b.String()), "h.csv")
	if err == nil {
		t.Fatal("ParseHosts() = nil error, want one")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxHostErrors+1 {
		t.Errorf("ParseHosts() error has %d lines, want %d", len(lines), maxHostErrors+1)
	}
	if got, want := lines[len(lines)-1], "h.csv: 5 more bad lines"; got != want {
		t.Errorf("last line of ParseHosts() error = %q, want %q", got, want)
	}
}
