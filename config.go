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

	"racktracker/app"
	"racktracker/field"
)

// loadConfig reads and checks the config file at path. A missing file means
// defaults unless mustExist, which main sets when -config names the file
// explicitly: a typo in that flag must not silently run the defaults.
func loadConfig(path string, mustExist bool) (app.Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !mustExist {
		return app.DefaultConfig(), nil
	}
	if err != nil {
		return app.Config{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data)
}

// parseConfig decodes data over the defaults and validates the result. name
// is only used in messages. Every problem is reported at once, with its line
// and YAML path, so that an operator fixes a config in one edit rather than
// one restart per mistake; the error is a *configError.
//
// yaml.v3 converts every value, but one walk of the document against the
// config's type comes first, because yaml.v3 v3.0.1 alone loses problems: a
// duplicate key makes it skip the whole mapping that holds it, with every
// problem inside; a null item of a sequence is dropped without a word; 2.5
// is stored as 2 in an int; and its strict mode (KnownFields) exists only
// for a Decoder reading text, not for a document that has been checked. So
// the walk reports unknown and duplicate keys and values of the wrong kind,
// converts each scalar on its own (naming path and whole value, where
// yaml.v3's own message names a line and cuts the value at 7 bytes), drops
// what it rejected so that the value keeps its default, and records where
// each path is written so that Validate findings name a line too.
func parseConfig(name string, data []byte) (app.Config, error) {
	cfg := app.DefaultConfig()
	l := &loader{where: map[string]position{}, budget: len(data) + maxAliasNodes}
	if root := l.document(data); root != nil {
		// root is a mapping, so the walk does not reject it as a whole.
		clean := l.walk("", root, root, reflect.TypeFor[app.Config]())
		if l.budget >= 0 {
			if err := clean.Decode(&cfg); err != nil {
				// Unreachable while the walk rejects all yaml.v3 would;
				// should they ever differ, the problem is still reported.
				l.problems = append(l.problems, problem{msg: err.Error()})
			}
		}
	}
	if l.budget >= 0 {
		l.validate(cfg)
	}
	if len(l.problems) > 0 {
		slices.SortStableFunc(l.problems, func(a, b problem) int {
			// uint(0-1) is the largest: problems without a line come last.
			return cmp.Or(cmp.Compare(uint(a.line-1), uint(b.line-1)), cmp.Compare(a.column, b.column))
		})
		return app.Config{}, &configError{file: name, problems: l.problems}
	}
	return cfg, nil
}

// maxAliasNodes bounds what aliases may add to the walk, which expands them:
// a few lines of anchors could otherwise stand for billions of values
// (yaml.v3 bounds its decoding, not a walk). Every value takes at least a
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

// problem is one finding. line is 0 when no line can be named.
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
		b.WriteString("\n" + e.file)
		if p.line > 0 {
			fmt.Fprintf(&b, ":%d", p.line)
		}
		b.WriteString(": ")
		if p.path != "" {
			b.WriteString(p.path + ": ")
		}
		b.WriteString(p.msg)
	}
	return b.String()
}

// position is where a YAML path is written in the file.
type position struct{ line, column int }

// loader collects the problems of one file and remembers where each YAML
// path is written.
type loader struct {
	problems []problem
	where    map[string]position
	// rejected holds the paths whose values the walk dropped. They keep
	// their defaults, so Validate findings at, under or about them are
	// consequences, not problems of their own.
	rejected []string
	budget   int
}

func (l *loader) add(n *yaml.Node, path, format string, args ...any) {
	l.problems = append(l.problems, problem{n.Line, n.Column, path, fmt.Sprintf(format, args...)})
}

// reject records a problem with the value at path, which keeps its default.
func (l *loader) reject(n *yaml.Node, path, format string, args ...any) *yaml.Node {
	l.add(n, path, format, args...)
	l.rejected = append(l.rejected, path)
	return nil
}

// document parses data and returns its top-level mapping, or nil when there
// is nothing to decode: an empty, comment-only or null document, or one with
// a problem already recorded.
func (l *loader) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err != io.EOF {
			l.syntaxError(err, data)
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
			l.syntaxError(err, data)
			break
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			l.add(&extra, "", "a second YAML document starts here; the config must be a single document")
			break
		}
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		l.add(root, "", "want a mapping of keys at the top level, got %s", describe(root))
		return nil
	}
	return root
}

// yamlLine splits yaml.v3's "yaml: line 3: msg" into 3 and msg.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError records an error from parsing data. yaml.v3 v3.0.1 names
// the line where the problem's context starts, not the problem's (its
// parser even counts lines from 0, and blames a tab in an indentation on
// the line before), or no line at all. The line recorded is the first from
// there whose inclusion makes the file fail with the same message.
func (l *loader) syntaxError(err error, data []byte) {
	msg, from := strings.TrimPrefix(err.Error(), "yaml: "), 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		from, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	l.problems = append(l.problems, problem{line: failingLine(data, max(from, 1), msg), msg: "invalid YAML: " + msg})
}

// failingLine returns the first line from `from` on such that the file up
// to its end fails to parse with msg, searching by halves on the
// assumption that once a prefix fails every longer one does. Where that
// does not hold (a flow collection spanning lines, cut by a prefix) it
// still returns a line at which the file stops parsing, or from.
func failingLine(data []byte, from int, msg string) int {
	var ends []int // ends[k-1] is the offset just past line k
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	ends = append(ends, len(data))
	if from > len(ends) {
		return from
	}
	k := from + sort.Search(len(ends)-from+1, func(i int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[from+i-1]]))
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				return err != io.EOF && strings.HasSuffix(err.Error(), msg)
			}
		}
	})
	if k > len(ends) {
		return from
	}
	return k
}

var durationType = reflect.TypeFor[time.Duration]()

// walk checks the value n at path against the Go type t it will be decoded
// into, reports what does not fit, and returns a copy of n without aliases
// and without what it rejected, so that a rejected value keeps its default;
// a rejected item of a sequence becomes a zero value instead, so that later
// items keep the index their paths name. It returns nil when n itself is
// rejected. Problems with n as a whole are reported at key: a block value
// starts on the line after the key that the message names.
func (l *loader) walk(path string, key, n *yaml.Node, t reflect.Type) *yaml.Node {
	if l.budget--; l.budget < 0 {
		if l.budget == -1 {
			l.add(key, path, "too many values once aliases are expanded (more than %d)", maxAliasNodes)
		}
		return nil
	}
	n = resolve(n)
	kind := yaml.ScalarNode
	switch {
	case t == durationType:
	case t.Kind() == reflect.Struct:
		kind = yaml.MappingNode
	case t.Kind() == reflect.Slice:
		kind = yaml.SequenceNode
	}
	if n.Kind != kind || isNull(n) {
		return l.reject(key, path, "want %s, got %s", want(t), describe(n))
	}
	out := *n
	out.Content = nil
	switch n.Kind {
	case yaml.MappingNode:
		fields := yamlFields(t)
		firstLine := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := resolve(n.Content[i]), n.Content[i+1]
			kpath := joinKey(path, k.Value)
			ft, known := fields[k.Value]
			switch {
			case k.Kind != yaml.ScalarNode:
				l.add(k, path, "want a key name, got %s", describe(k))
			case k.ShortTag() == "!!merge":
				l.add(k, kpath, "merge keys are not supported; write the keys out")
			case !known:
				l.add(k, kpath, "unknown key%s", suggest(k.Value, fields))
			case firstLine[k.Value] > 0:
				l.add(k, kpath, "duplicate key, first set at line %d", firstLine[k.Value])
			default:
				firstLine[k.Value] = k.Line
				l.where[kpath] = position{k.Line, k.Column}
				// "key:" with no value keeps the default, as if it were absent.
				if isNull(resolve(v)) {
					continue
				}
				if cv := l.walk(kpath, k, v, ft); cv != nil {
					out.Content = append(out.Content, k, cv)
				}
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			l.where[ipath] = position{item.Line, item.Column}
			ci := l.walk(ipath, item, item, t.Elem())
			if ci == nil {
				ci = zeroNode(t.Elem())
			}
			out.Content = append(out.Content, ci)
		}
	default:
		err := n.Decode(reflect.New(t).Interface())
		switch {
		case err != nil && t == durationType:
			return l.reject(key, path, "bad duration %q", n.Value)
		// yaml.v3 would store 2.5 as 2.
		case err != nil || t != durationType && isInteger(t) && n.ShortTag() != "!!int":
			return l.reject(key, path, "want %s, got %q", want(t), n.Value)
		}
		return n
	}
	return &out
}

// validate runs the sections' checks on the decoded config and places each
// finding at the line of its path or, for a default the file does not
// write, of the nearest parent that it does.
func (l *loader) validate(cfg app.Config) {
	errs, _ := errors.AsType[field.Errors](cfg.Validate())
	for _, e := range errs {
		if !slices.ContainsFunc(append([]string{e.Path}, e.Related...), l.underRejected) {
			pos := l.locate(e.Path)
			l.problems = append(l.problems, problem{pos.line, pos.column, e.Path, e.Msg})
		}
	}
}

// underRejected reports whether path is, or is under, a value the walk
// rejected: a finding there is about the default that took its place, and
// fixing the rejected value may resolve it.
func (l *loader) underRejected(path string) bool {
	return slices.ContainsFunc(l.rejected, func(r string) bool {
		return path == r || strings.HasPrefix(path, r+".") || strings.HasPrefix(path, r+"[")
	})
}

func (l *loader) locate(path string) position {
	for ; path != ""; path = path[:max(strings.LastIndexAny(path, ".["), 0)] {
		if pos, ok := l.where[path]; ok {
			return pos
		}
	}
	return position{}
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
	switch {
	case t == durationType:
		return "a duration such as 30s"
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
	return reflect.Int <= t.Kind() && t.Kind() <= reflect.Uint64
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
		name, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case f.PkgPath != "" && !f.Anonymous || name == "-":
		case slices.Contains(strings.Split(flags, ","), "inline") && f.Type.Kind() == reflect.Struct:
			maps.Copy(fields, yamlFields(f.Type))
		case name == "":
			fields[strings.ToLower(f.Name)] = f.Type
		default:
			fields[name] = f.Type
		}
	}
	return fields
}

// plainKey is a key a YAML path shows as it is; others are quoted, so that
// the path stays readable and unambiguous.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func joinKey(path, key string) string {
	if !plainKey.MatchString(key) {
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
	best, bestDist := "", 0
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if d := editDistance(strings.ToLower(key), name); best == "" || d < bestDist {
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
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
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
