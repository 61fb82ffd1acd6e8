// Package field carries what a Config.Validate method finds wrong: each
// problem with the YAML path of the value it is about, so that the config
// loader can name the line in the file without taking messages apart.
// tracker, storage and rackmap validate their sections with it.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem with one value of the config.
type Error struct {
	// Path is the value's YAML path, relative to the section the Validate
	// method checks: "interval", "map[0].cidrs[1]".
	Path string
	// Msg says what is wrong, without the path.
	Msg string
	// Related are the paths of other values the verdict depends on: that
	// min_interval exceeds interval is moot when the file's interval was
	// rejected and its default took its place.
	Related []string
}

func (e *Error) Error() string { return e.Path + ": " + e.Msg }

// Errors is every problem a Validate method found. Its zero value is
// empty and ready to use.
type Errors []*Error

// Add records a problem with the value at path.
func (es *Errors) Add(path, format string, args ...any) {
	*es = append(*es, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// AddRelated records a problem with the value at path that comes from
// comparing it with the value at related.
func (es *Errors) AddRelated(path, related, format string, args ...any) {
	*es = append(*es, &Error{Path: path, Msg: fmt.Sprintf(format, args...), Related: []string{related}})
}

// Err returns es as an error, or nil when there is no problem.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Error lists the problems one a line, as errors.Join would.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// In returns the problems of err, a section's Validate result, with their
// paths placed under section ("storage" makes "backend" "storage.backend").
// An error that is not an Errors becomes one problem at the section itself.
func In(section string, err error) Errors {
	if err == nil {
		return nil
	}
	es, ok := errors.AsType[Errors](err)
	if !ok {
		return Errors{{Path: section, Msg: err.Error()}}
	}
	out := make(Errors, len(es))
	for i, e := range es {
		out[i] = &Error{Path: join(section, e.Path), Msg: e.Msg}
		for _, r := range e.Related {
			out[i].Related = append(out[i].Related, join(section, r))
		}
	}
	return out
}

func join(section, path string) string {
	switch {
	case section == "":
		return path
	case path == "" || strings.HasPrefix(path, "["):
		return section + path
	}
	return section + "." + path
}
