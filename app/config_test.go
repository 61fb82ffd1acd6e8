package app

import (
	"errors"
	"slices"
	"testing"

	"racktracker/field"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

// TestConfigValidateCoversSections guards against Config.Validate being the
// one promoted from tracker.Config, which would skip racks and storage.
func TestConfigValidateCoversSections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Announce.Interval = 0
	cfg.Racks.Handout = "nearest"
	cfg.Racks.Default = ""
	cfg.Storage.Backend = "mongo"
	var paths []string
	errs, _ := errors.AsType[field.Errors](cfg.Validate())
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	want := []string{"announce.interval", "racks.default", "racks.handout", "storage.backend"}
	if !slices.Equal(paths, want) {
		t.Errorf("Config.Validate() paths = %q, want %q", paths, want)
	}
}
