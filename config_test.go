package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"racktracker/app"
	"racktracker/rackmap"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata/config")

func TestLoadConfigShipped(t *testing.T) {
	const path = "tracker.yaml"
	got, err := loadConfig(path, true)
	if err != nil {
		t.Fatalf("loadConfig(%q) error = %v", path, err)
	}
	want := app.DefaultConfig()
	want.Racks.Map = []rackmap.Rack{
		{Name: "r1", CIDRs: []string{"127.0.1.0/24", "10.1.0.0/24", "fd00:1::/64"}},
		{Name: "r2", CIDRs: []string{"127.0.2.0/24"}},
		{Name: "r3", CIDRs: []string{"127.0.3.0/24"}},
	}
	// The file spells out "trusted_proxies: []" and "addrs: []": empty, where the
	// defaults are nil.
	want.Announce.TrustedProxies = []string{}
	want.Storage.Redis.Sentinel.Addrs = []string{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loadConfig(%q) = %+v, want %+v", path, got, want)
	}
}

func TestLoadConfig(t *testing.T) {
	partial := app.DefaultConfig()
	partial.Announce.Interval = time.Minute
	partial.Announce.PeerTimeout = 3 * time.Minute
	partial.Storage.Backend = "redis"

	tests := []struct {
		name      string
		content   string // written to the file unless missing
		missing   bool
		mustExist bool
		want      app.Config
	}{
		{name: "missing file", missing: true, want: app.DefaultConfig()},
		{name: "empty file", content: "", want: app.DefaultConfig()},
		{name: "comment only", content: "# nothing set\n\n# here either\n", want: app.DefaultConfig()},
		{name: "document marker only", content: "---\n", want: app.DefaultConfig()},
		{name: "null document", content: "~\n", want: app.DefaultConfig()},
		{name: "null section", content: "announce:\n", want: app.DefaultConfig()},
		{name: "null sections and keys", content: "announce: ~\nracks: null\nlisten:\nstorage:\n  redis:\n", want: app.DefaultConfig()},
		{name: "empty section", content: "announce: {}\n", want: app.DefaultConfig()},
		{name: "explicit -config that exists", content: "", mustExist: true, want: app.DefaultConfig()},
		{
			name:    "partial section keeps other defaults",
			content: "announce:\n  interval: 1m\n  peer_timeout: 3m\nstorage:\n  backend: redis\n",
			want:    partial,
		},
		{
			name:    "aliases",
			content: "announce:\n  trusted_proxies: &p [\"10.0.0.0/8\"]\nracks:\n  map:\n    - name: a\n      cidrs: *p\n",
			want: func() app.Config {
				c := app.DefaultConfig()
				c.Announce.TrustedProxies = []string{"10.0.0.0/8"}
				c.Racks.Map = []rackmap.Rack{{Name: "a", CIDRs: []string{"10.0.0.0/8"}}}
				return c
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tracker.yaml")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := loadConfig(path, tt.mustExist)
			if err != nil {
				t.Fatalf("loadConfig(%q) error = %v", path, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loadConfig(%q) = %+v, want %+v", path, got, tt.want)
			}
		})
	}
}

func TestLoadConfigMissingMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := loadConfig(path, true)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadConfig(%q, true) error = %v, want one naming the path and wrapping fs.ErrNotExist", path, err)
	}
}

// TestConfigErrors checks one bad config per class of mistake against the
// message in its sibling .err file. The lines are listed here as well, so
// that -update cannot bless a message pointing at the wrong line.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		file  string
		lines []int // of each problem, in order
	}{
		{"unknown_key.yaml", []int{3}},
		{"unknown_nested_key.yaml", []int{3}},
		{"wrong_type_int.yaml", []int{3, 6}},
		{"bad_duration.yaml", []int{2, 4}},
		{"negative_duration.yaml", []int{3, 6}},
		{"bad_cidr_map.yaml", []int{4, 8}},
		{"bad_cidr_proxies.yaml", []int{4}},
		{"negative_count.yaml", []int{2, 4, 5}},
		{"unknown_backend.yaml", []int{2}},
		{"unknown_handout.yaml", []int{2}},
		{"embedded_listen_public.yaml", []int{3}},
		{"listen_no_port.yaml", []int{1}},
		{"bad_regexp.yaml", []int{2}},
		{"pattern_without_rack.yaml", []int{2}},
		{"duplicate_key.yaml", []int{4, 7}},
		{"sequence_for_mapping.yaml", []int{2, 6}},
		{"not_mapping.yaml", []int{1}},
		{"syntax_error.yaml", []int{4}},
		{"bad_indentation.yaml", []int{5}},
		{"two_documents.yaml", []int{2}},
		{"merge_key.yaml", []int{1, 4}},
		{"relative_default.yaml", []int{3}},
		{"sentinel_and_addr.yaml", []int{4, 7}},
		{"sentinel_incomplete.yaml", []int{4}},
		{"several_problems.yaml", []int{7, 9, 12, 21, 22, 23, 30, 33}},
		{"bad_cadences.yaml", []int{2, 3}},
	}
	dir := filepath.Join("testdata", "config")
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.file] = true
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			// Joined with "/" so that the golden text is the same on every OS.
			path := "testdata/config/" + tt.file
			_, err := loadConfig(path, true)
			if err == nil {
				t.Fatalf("loadConfig(%q) error = nil, want %d problems", path, len(tt.lines))
			}
			ce, ok := errors.AsType[*configError](err)
			if !ok {
				t.Fatalf("loadConfig(%q) error = %v (%T), want a *configError", path, err, err)
			}
			var lines []int
			for _, p := range ce.problems {
				lines = append(lines, p.line)
			}
			if !slices.Equal(lines, tt.lines) {
				t.Errorf("loadConfig(%q) error = %v, want lines %v", path, err, tt.lines)
			}

			got := err.Error() + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestConfigErrors -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("loadConfig(%q) error =\n%s\nwant (from %s)\n%s", path, got, golden, want)
			}
		})
	}

	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s has no entry in TestConfigErrors", f)
		}
	}
}

func TestConfigErrorFormat(t *testing.T) {
	tests := []struct {
		content string
		want    string
	}{
		{
			"announce:\n  intervall: 30s\n",
			"config x.yaml: 1 problem:\nx.yaml:2: announce.intervall: unknown key (did you mean \"interval\"?)",
		},
		{
			// Far from every known key: no guess.
			"announce:\n  zzz: 1\n",
			"config x.yaml: 1 problem:\nx.yaml:2: announce.zzz: unknown key",
		},
		{
			"announce:\n  \"a b\": 1\n",
			"config x.yaml: 1 problem:\nx.yaml:2: announce.\"a b\": unknown key",
		},
		{
			// yaml.v3 would store 2.5 as 2.
			"announce: {numwant_max: 2.5}\n",
			"config x.yaml: 1 problem:\nx.yaml:1: announce.numwant_max: want an integer, got \"2.5\"",
		},
		{
			"announce: {interval: 30}\n",
			"config x.yaml: 1 problem:\nx.yaml:1: announce.interval: bad duration \"30\"",
		},
		{
			"announce: {trusted_proxies: [~, 10.0.0.0/8, [a]]}\n",
			"config x.yaml: 2 problems:\nx.yaml:1: announce.trusted_proxies[0]: want a string, got nothing\nx.yaml:1: announce.trusted_proxies[2]: want a string, got a sequence",
		},
		{
			// A rejected value keeps its default; findings about that
			// default (min_interval 10s is longer than interval 30s) would
			// mislead, so they are left out.
			"announce:\n  interval: soon\n  min_interval: 45s\n",
			"config x.yaml: 1 problem:\nx.yaml:2: announce.interval: bad duration \"soon\"",
		},
		{
			"racks:\n  map:\n    -\n    - name: r2\n      cidrs: [10.2.0.0/16]\n",
			"config x.yaml: 1 problem:\nx.yaml:3: racks.map[0]: want a mapping, got nothing",
		},
	}
	for _, tt := range tests {
		_, err := parseConfig("x.yaml", []byte(tt.content))
		if err == nil || err.Error() != tt.want {
			t.Errorf("parseConfig(%q) error =\n%v\nwant\n%s", tt.content, err, tt.want)
		}
	}
}

// TestConfigAliasBudget checks that aliases cannot make the walk, which
// expands them, unboundedly long: here 3000 racks of 3000 CIDRs each, from
// about 40 KB of YAML.
func TestConfigAliasBudget(t *testing.T) {
	var b strings.Builder
	b.WriteString("announce:\n  trusted_proxies: &c [")
	for i := range 3000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "10.0.%d.%d/32", i/256, i%256)
	}
	b.WriteString("]\nracks:\n  map:\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "    - {name: r%d, cidrs: *c}\n", i)
	}
	_, err := parseConfig("x.yaml", []byte(b.String()))
	ce, ok := errors.AsType[*configError](err)
	if !ok || len(ce.problems) != 1 || !strings.Contains(ce.problems[0].msg, "too many values") {
		t.Errorf("parseConfig(alias expansion) error = %.300v, want one problem about too many values", err)
	}
}

func TestConfigErrorShowsFirstProblems(t *testing.T) {
	e := &configError{file: "x.yaml"}
	for i := range maxShownProblems + 5 {
		e.problems = append(e.problems, problem{line: i + 1, path: "listen", msg: "bad"})
	}
	lines := strings.Split(e.Error(), "\n")
	if len(lines) != maxShownProblems+2 {
		t.Fatalf("configError with %d problems has %d lines, want %d", len(e.problems), len(lines), maxShownProblems+2)
	}
	if want := "config x.yaml: 105 problems:"; lines[0] != want {
		t.Errorf("first line = %q, want %q", lines[0], want)
	}
	if want := "x.yaml: ... and 5 more problems"; lines[len(lines)-1] != want {
		t.Errorf("last line = %q, want %q", lines[len(lines)-1], want)
	}
}

func FuzzLoadConfig(f *testing.F) {
	// The shipped config, the reference every change starts from.
	if data, err := os.ReadFile("tracker.yaml"); err == nil {
		f.Add(data)
	}
	// The bad configs, one per class of mistake.
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	// Empty and null documents mean defaults.
	f.Add([]byte(""))
	f.Add([]byte("~"))
	// A null section keeps its defaults.
	f.Add([]byte("announce:\nracks: ~\n"))
	// Aliases, including one that contains itself.
	f.Add([]byte("racks:\n  map:\n    - &r {name: a, cidrs: &c [10.0.0.0/8]}\n    - {name: b, cidrs: *c}\n"))
	f.Add([]byte("racks: {map: &m [*m]}\n"))
	// Tags and scalar forms yaml.v3 resolves specially.
	f.Add([]byte("admin: {token: !!binary aGVsbG8=}\nannounce: {numwant_max: 0x10, trust_ip_param: yes, interval: !!str 1m}\n"))
	f.Add([]byte("announce: {numwant_max: .inf, numwant_default: -.nan}\nstorage: {redis: {db: 99999999999999999999}}\n"))
	// Keys that are not plain names.
	f.Add([]byte("? [a]\n: 1\n<<: {listen: x}\n\"\": 2\n"))
	// A second document.
	f.Add([]byte("listen: a:1\n---\nlisten: b:2\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig("fuzz.yaml", data)
		if err != nil {
			ce, ok := errors.AsType[*configError](err)
			if !ok {
				t.Fatalf("parseConfig error = %v (%T), want a *configError", err, err)
			}
			if len(ce.problems) == 0 {
				t.Fatalf("parseConfig error = %v, with no problems", err)
			}
			lines := yamlLines(data)
			for _, p := range ce.problems {
				if p.line < 0 || p.line > lines+1 || p.msg == "" {
					t.Errorf("parseConfig problem %+v, want a message and a line within the %d of the input", p, lines)
				}
			}
			return
		}
		for name, err := range map[string]error{
			"tracker.Config":     cfg.Config.Validate(),
			"tracker.RackPolicy": cfg.Racks.RackPolicy.Validate(),
			"rackmap.Config":     cfg.Racks.Config.Validate(),
			"storage.Config":     cfg.Storage.Validate(),
		} {
			if err != nil {
				t.Errorf("parseConfig(%q) accepted a config whose %s.Validate() = %v", data, name, err)
			}
		}
	})
}

// yamlLines bounds the number of lines YAML sees in data: it reads UTF-16
// after a byte order mark, and breaks lines at CR, LF, CRLF, NEL, LS and PS.
// Counting CR and LF apart overcounts CRLF, which is fine for a bound.
func yamlLines(data []byte) int {
	text := string(data)
	if len(data) >= 2 && (data[0] == 0xfe && data[1] == 0xff || data[0] == 0xff && data[1] == 0xfe) {
		units := make([]uint16, (len(data)-2)/2)
		for i := range units {
			hi, lo := data[2+2*i], data[3+2*i]
			if data[0] == 0xff {
				hi, lo = lo, hi
			}
			units[i] = uint16(hi)<<8 | uint16(lo)
		}
		text = string(utf16.Decode(units))
	}
	n := 1
	for _, sep := range []string{"\r", "\n", "\u0085", "\u2028", "\u2029"} {
		n += strings.Count(text, sep)
	}
	return n
}
