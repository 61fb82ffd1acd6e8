package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

// config mirrors tracker.yaml. Each section is the Config of the package that
// owns it, so that a key is named, defaulted and validated in one place and
// main only composes.
type config struct {
	tracker.Config `yaml:",inline"`
	Racks          racksConfig    `yaml:"racks"`
	Storage        storage.Config `yaml:"storage"`
}

// racksConfig is the racks section, which two packages share: rackmap maps
// hosts to racks, the tracker decides how peers are handed out across them.
type racksConfig struct {
	rackmap.Config     `yaml:",inline"`
	tracker.RackPolicy `yaml:",inline"`
}

// defaultConfig is what an empty tracker.yaml means (SPEC section 7).
func defaultConfig() config {
	return config{
		Config: tracker.DefaultConfig(),
		Racks: racksConfig{
			Config:     rackmap.DefaultConfig(),
			RackPolicy: tracker.DefaultRackPolicy(),
		},
		Storage: storage.DefaultConfig(),
	}
}

// Validate checks every section and prefixes each problem with its section's
// key, so that every message starts with the full YAML path. It shadows the
// Validate promoted from the embedded tracker.Config, which checks the
// top-level keys only.
func (c config) Validate() error {
	var errs []error
	for _, s := range []struct {
		prefix string
		err    error
	}{
		{"", c.Config.Validate()},
		{"racks.", c.Racks.Validate()},
		{"storage.", c.Storage.Validate()},
	} {
		for _, err := range splitJoined(s.err) {
			if s.prefix != "" {
				err = fmt.Errorf("%s%w", s.prefix, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate checks both halves of the racks section; without it the two
// embedded Validate methods would be ambiguous and neither would be promoted.
func (r racksConfig) Validate() error {
	return errors.Join(r.Config.Validate(), r.RackPolicy.Validate())
}

// splitJoined undoes errors.Join, however deeply nested, so that each problem
// can be located and reported on its own line.
func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var errs []error
	for _, e := range multi.Unwrap() {
		errs = append(errs, splitJoined(e)...)
	}
	return errs
}

// loadConfig reads and checks the config file at path. A missing file means
// defaults unless mustExist, which main sets when -config names the file
// explicitly: a typo in that flag must not silently run the defaults.
func loadConfig(path string, mustExist bool) (config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !mustExist {
		return defaultConfig(), nil
	}
	if err != nil {
		return config{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data)
}

// parseConfig decodes data over the defaults and validates the result. name
// is only used in messages. Every problem is reported at once, with its line
// and YAML path, so that an operator fixes a config in one edit rather than
// one restart per mistake; the error is a *configError.
//
// yaml.v3 alone cannot do this: its Decoder stops at the first unknown key
// (KnownFields), names lines but not paths, truncates values in messages,
// and silently truncates 2.5 to 2 for an int. So the document is first
// walked against the config's type (configParser.clean), which reports
// unknown keys, wrong kinds and bad scalars, and yields a copy holding only
// the good values. That copy decodes without error, so each bad value keeps
// its default and the sections' Validate methods can still run and report
// their own findings.
func parseConfig(name string, data []byte) (config, error) {
	cfg := defaultConfig()
	p := &configParser{where: map[string]position{}, budget: len(data) + maxAliasNodes}
	if root := p.document(data); root != nil {
		// root is a mapping, so clean does not reject it as a whole; a walk
		// cut short by the budget leaves nothing worth decoding.
		clean, ok := p.clean("", root, root, reflect.TypeFor[config]())
		if ok && p.budget >= 0 {
			if err := clean.Decode(&cfg); err != nil {
				// Unreachable if clean mirrors yaml.v3's rules; should they
				// ever differ, the problem is still reported, not lost.
				p.yamlError(err)
			}
		}
	}
	if p.budget >= 0 {
		p.validate(cfg)
	}
	if len(p.problems) > 0 {
		return config{}, p.err(name)
	}
	return cfg, nil
}

// maxAliasNodes bounds what aliases may add to the walk, which expands them
// (and so bypasses yaml.v3's own limit on aliasing): a few lines of anchors
// could otherwise stand for billions of values. Every value takes at least a
// byte of the file, so the length of the file bounds the rest.
const maxAliasNodes = 100_000

// maxShownProblems bounds the message: past it, a file is broken in some
// systematic way that its first problems show.
const maxShownProblems = 100

// configError lists every problem found in one config file, sorted by line,
// so that main can print it as one message that points into the file.
type configError struct {
	file     string
	problems []problem
}

// problem is one finding. line is 0 when no line can be named: yaml.v3 does
// not name one for some syntax errors, nor for problems on the first line.
type problem struct {
	line, column int
	path         string // e.g. racks.map[0].cidrs[1]; empty for the document as a whole
	msg          string
}

func (e *configError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problem", e.file, len(e.problems))
	if len(e.problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString(":")
	for i, p := range e.problems {
		if i == maxShownProblems {
			fmt.Fprintf(&b, "\n%s: ... and %d more problems", e.file, len(e.problems)-i)
			break
		}
		b.WriteString("\n")
		b.WriteString(e.file)
		if p.line > 0 {
			fmt.Fprintf(&b, ":%d", p.line)
		}
		b.WriteString(": ")
		if p.path != "" {
			b.WriteString(p.path)
			b.WriteString(": ")
		}
		b.WriteString(p.msg)
	}
	return b.String()
}

// position is where a YAML path is written in the file.
type position struct{ line, column int }

// configParser collects the problems of one file and remembers where each
// YAML path is written, so that the sections' Validate findings, which know
// only paths, can name a line too.
type configParser struct {
	problems []problem
	where    map[string]position
	// bad holds the paths whose values were rejected while decoding. They
	// kept their defaults, so Validate findings at, under or about them are
	// consequences, not problems of their own.
	bad    []string
	budget int
}

// add records a problem at node n.
func (p *configParser) add(n *yaml.Node, path, format string, args ...any) {
	p.problems = append(p.problems, problem{line: n.Line, column: n.Column, path: path, msg: fmt.Sprintf(format, args...)})
}

// reject records a problem with the value at path, which keeps its default.
func (p *configParser) reject(n *yaml.Node, path, format string, args ...any) {
	p.add(n, path, format, args...)
	p.bad = append(p.bad, path)
}

// yamlLine splits yaml.v3's "yaml: line 3: msg" into 3 and msg.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError records an error yaml.v3 returned, keeping its line if it named
// one.
func (p *configParser) yamlError(err error) {
	msgs := []string{err.Error()}
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		msgs = te.Errors
	}
	for _, msg := range msgs {
		pr := problem{msg: strings.TrimPrefix(msg, "yaml: ")}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			pr.line, _ = strconv.Atoi(m[1])
			pr.msg = m[2]
		}
		p.problems = append(p.problems, pr)
	}
}

// yamlParserProblems are the messages of yaml.v3's parser, as opposed to its
// scanner. yaml.v3 v3.0.1 numbers their lines from 0 where it numbers the
// scanner's from 1, and names the line where the enclosing block starts
// rather than the problem's; yaml.v3 is no longer developed, so the list is
// stable.
var yamlParserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxError records an error from parsing data, correcting the line that
// yaml.v3 names where that can be done reliably.
func (p *configParser) syntaxError(err error, data []byte) {
	start := len(p.problems)
	p.yamlError(err)
	for i := range p.problems[start:] {
		pr := &p.problems[start+i]
		switch {
		case pr.line == 0:
		case slices.Contains(yamlParserProblems, pr.msg):
			pr.line = problemLine(data, pr.line+1, pr.msg)
		case strings.HasPrefix(pr.msg, "found a tab character"):
			// yaml.v3 names the line of the value the tab follows;
			// the tab itself is on the first tab-indented line after.
			pr.line = tabIndentedLine(data, pr.line)
		}
		pr.msg = "invalid YAML: " + pr.msg
	}
}

// problemLine narrows a yaml.v3 parser error, reported at line where its
// enclosing block starts, to the first line from there whose inclusion makes
// the file fail with the same message. It searches by halves, assuming that
// once a prefix fails every longer one does; where that does not hold (an
// earlier flow collection spanning lines, cut by a prefix) it still returns a
// line at which the file stops parsing.
func problemLine(data []byte, line int, msg string) int {
	var ends []int // ends[k-1] is the offset just past line k
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	ends = append(ends, len(data))
	if line < 1 || line > len(ends) {
		return line
	}
	fails := func(k int) bool {
		err := parseAll(data[:ends[k-1]])
		return err != nil && strings.HasSuffix(err.Error(), ": "+msg)
	}
	if k := line + sort.Search(len(ends)-line+1, func(i int) bool { return fails(line + i) }); k <= len(ends) {
		return k
	}
	return line
}

// parseAll parses every document in data and returns the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// tabIndentedLine returns the first line from line on whose indentation holds
// a tab, or line if there is none.
func tabIndentedLine(data []byte, line int) int {
	for i, l := range strings.Split(string(data), "\n") {
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if i+1 >= line && strings.Contains(indent, "\t") {
			return i + 1
		}
	}
	return line
}

// document parses data and returns its top-level mapping, or nil when there
// is nothing to decode: an empty, comment-only or null document, or one with
// a problem already recorded.
func (p *configParser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err != io.EOF {
			p.syntaxError(err, data)
		}
		return nil
	}
	// Decode reads one document; anything after a "---" would be ignored
	// without a word, which an operator who wrote it should hear about.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if err == io.EOF {
			break
		}
		if err != nil {
			p.syntaxError(err, data)
			break
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			p.add(&extra, "", "a second YAML document starts here; the config must be a single document")
			break
		}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := resolve(doc.Content[0])
	switch {
	case isNull(root):
		return nil
	case root.Kind != yaml.MappingNode:
		p.add(root, "", "want a mapping of keys at the top level, got %s", describe(root))
		return nil
	}
	return root
}

var durationType = reflect.TypeFor[time.Duration]()

// clean checks n against the Go type t it will be decoded into and returns
// a copy of n without aliases, null values or rejected values. ok is false
// when n itself was rejected. Problems with n as a whole are reported at
// node at: the key of a mapping entry rather than its value, since a block
// value starts on the line after the key that the message names.
func (p *configParser) clean(path string, at, n *yaml.Node, t reflect.Type) (_ *yaml.Node, ok bool) {
	n = resolve(n)
	if p.budget--; p.budget < 0 {
		if p.budget == -1 {
			p.add(at, path, "too many values once aliases are expanded (more than %d)", maxAliasNodes)
		}
		return nil, false
	}
	if t == durationType {
		return p.scalar(path, at, n, t)
	}
	switch t.Kind() {
	case reflect.Struct:
		return p.mapping(path, at, n, t)
	case reflect.Slice:
		return p.sequence(path, at, n, t)
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return p.scalar(path, at, n, t)
	}
	// No such field in tracker.yaml today; yaml.v3's own checks apply.
	return n, true
}

func (p *configParser) mapping(path string, at, n *yaml.Node, t reflect.Type) (*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		p.reject(at, path, "want a mapping, got %s", describe(n))
		return nil, false
	}
	fields := yamlFields(t)
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.add(k, path, "want a key name, got %s", describe(k))
			continue
		}
		kpath := joinKey(path, k.Value)
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			p.add(k, kpath, "merge keys are not supported; write the keys out")
			continue
		}
		ft, known := fields[k.Value]
		if !known {
			p.add(k, kpath, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		if line, dup := firstLine[k.Value]; dup {
			p.add(k, kpath, "duplicate key, first set at line %d", line)
			continue
		}
		firstLine[k.Value] = k.Line
		p.where[kpath] = position{k.Line, k.Column}
		if isNull(resolve(v)) {
			// "key:" with no value keeps the default, as if it were absent.
			continue
		}
		if cv, ok := p.clean(kpath, k, v, ft); ok {
			out.Content = append(out.Content, k, cv)
		}
	}
	return out, true
}

func (p *configParser) sequence(path string, at, n *yaml.Node, t reflect.Type) (*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		p.reject(at, path, "want a sequence, got %s", describe(n))
		return nil, false
	}
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		p.where[ipath] = position{item.Line, item.Column}
		ci, ok := p.clean(ipath, item, item, t.Elem())
		if !ok {
			// A zero value keeps later items at the index their paths
			// name; Validate findings about it are suppressed.
			ci = zeroNode(t.Elem())
		}
		out.Content = append(out.Content, ci)
	}
	return out, true
}

func (p *configParser) scalar(path string, at, n *yaml.Node, t reflect.Type) (*yaml.Node, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.reject(at, path, "want %s, got %s", want(t), describe(n))
		return nil, false
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil && t != durationType && isInteger(t) && n.ShortTag() != "!!int" {
		// yaml.v3 would store 2.5 as 2.
		err = errors.New("not an integer")
	}
	if err != nil {
		if t == durationType {
			p.reject(at, path, "bad duration %q", n.Value)
		} else {
			p.reject(at, path, "want %s, got %q", want(t), n.Value)
		}
		return nil, false
	}
	return n, true
}

// validate runs the sections' checks on the decoded config and locates each
// finding by its path.
func (p *configParser) validate(cfg config) {
	for _, err := range splitJoined(cfg.Validate()) {
		path, msg, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			path, msg = "", err.Error()
		}
		if p.consequence(path, msg) {
			continue
		}
		pos := p.locate(path)
		p.problems = append(p.problems, problem{line: pos.line, column: pos.column, path: path, msg: msg})
	}
}

// consequence reports whether a Validate finding stems from a value that was
// rejected while decoding and replaced by its default: the operator did not
// write that default, and fixing the rejected value may resolve it.
func (p *configParser) consequence(path, msg string) bool {
	for _, b := range p.bad {
		if b == "" {
			continue
		}
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") || mentions(msg, b) {
			return true
		}
	}
	return false
}

// mentions reports whether msg names path, or a path under it, as a whole
// word: "announce.interval" but not "announce.interval_max".
func mentions(msg, path string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], path)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(path)
		if (start == 0 || !isPathByte(msg[start-1]) && msg[start-1] != '.') && (end == len(msg) || !isPathByte(msg[end])) {
			return true
		}
		i = start + 1
	}
}

func isPathByte(c byte) bool {
	return c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// locate returns where path, or failing that its nearest written parent, is
// in the file: a finding about a default names the section it belongs to.
func (p *configParser) locate(path string) position {
	for path != "" {
		if pos, ok := p.where[path]; ok {
			return pos
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return position{}
}

// err returns the problems as one error, sorted by line; problems without a
// line come last.
func (p *configParser) err(name string) error {
	slices.SortStableFunc(p.problems, func(a, b problem) int {
		if (a.line == 0) != (b.line == 0) {
			if a.line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.column, b.column))
	})
	return &configError{file: name, problems: p.problems}
}

// resolve follows an alias to the node it stands for.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what the file holds where something else was wanted.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a sequence"
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an unresolved alias"
}

// want names, for an operator, what a value of type t is written as.
func want(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 30s"
	}
	switch {
	case t.Kind() == reflect.Struct:
		return "a mapping"
	case t.Kind() == reflect.Slice:
		return "a sequence"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case isInteger(t):
		return "an integer"
	}
	return "a number"
}

func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// zeroNode is a YAML value that decodes to the zero value of t.
func zeroNode(t reflect.Type) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(reflect.Zero(t).Interface()); err != nil {
		// Cannot happen for the types in config; a null would only shift
		// the indices of later items in messages.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return &n
}

// yamlFields returns the keys a mapping decoded into struct type t may hold,
// by yaml.v3's rules: the tag's name or else the lowercased field name, with
// ",inline" structs contributing their own keys.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(flags, ","), "inline") && f.Type.Kind() == reflect.Struct {
			maps.Copy(fields, yamlFields(f.Type))
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// joinKey appends a mapping key to a YAML path, quoting a key that is not a
// plain name so that the path stays readable and unambiguous.
func joinKey(path, key string) string {
	if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r > 0x7f || !isPathByte(byte(r)) }) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns ` (did you mean "x"?)` for the known key closest to an
// unknown one, when it is close enough to be a typo.
func suggest(key string, fields map[string]reflect.Type) string {
	if len(key) > 64 {
		return ""
	}
	lower := strings.ToLower(key)
	best, bestDist := "", 0
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if d := editDistance(lower, name); best == "" || d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" || bestDist > max(1, len(key)/4) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
