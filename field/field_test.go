package field

import (
	"errors"
	"slices"
	"testing"
)

func TestIn(t *testing.T) {
	var es Errors
	es.Add("backend", "unknown backend %q", "mongo")
	es.Add("[1]", "bad")
	es.AddRelated("min_interval", "interval", "longer than interval")
	tests := []struct {
		section string
		err     error
		want    []string // path, then related paths, per problem
	}{
		{"", nil, nil},
		{"storage", es.Err(), []string{"storage.backend", "storage[1]", "storage.min_interval storage.interval"}},
		{"", es.Err(), []string{"backend", "[1]", "min_interval interval"}},
		{"racks", errors.New("boom"), []string{"racks"}},
	}
	for _, tt := range tests {
		var got []string
		for _, e := range In(tt.section, tt.err) {
			s := e.Path
			for _, r := range e.Related {
				s += " " + r
			}
			got = append(got, s)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("In(%q, %v) paths = %q, want %q", tt.section, tt.err, got, tt.want)
		}
	}
}

func TestErrNil(t *testing.T) {
	var es Errors
	if err := es.Err(); err != nil {
		t.Errorf("empty Errors.Err() = %v, want nil", err)
	}
	es.Add("listen", "want host:port, got %q", "x")
	es.Add("admin.listen", "bad")
	if got, want := es.Err().Error(), "listen: want host:port, got \"x\"\nadmin.listen: bad"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}
