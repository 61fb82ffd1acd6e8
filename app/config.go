package app

import (
	"slices"

	"racktracker/field"
	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

// Config mirrors tracker.yaml. Each section is the Config of the package
// that owns it, so that a key is named, defaulted and validated in one place
// and this type only composes them.
type Config struct {
	tracker.Config `yaml:",inline"`
	Racks          RacksConfig    `yaml:"racks"`
	Storage        storage.Config `yaml:"storage"`
}

// RacksConfig is the racks section, which two packages share: rackmap maps
// hosts to racks, the tracker decides how peers are handed out across them.
type RacksConfig struct {
	rackmap.Config     `yaml:",inline"`
	tracker.RackPolicy `yaml:",inline"`
}

// DefaultConfig is what an empty tracker.yaml means (SPEC section 7).
func DefaultConfig() Config {
	return Config{
		Config: tracker.DefaultConfig(),
		Racks: RacksConfig{
			Config:     rackmap.DefaultConfig(),
			RackPolicy: tracker.DefaultRackPolicy(),
		},
		Storage: storage.DefaultConfig(),
	}
}

// Validate checks every section and returns field.Errors whose paths are
// full YAML paths. It shadows the Validate promoted from the embedded
// tracker.Config, which checks the top-level keys only.
func (c Config) Validate() error {
	return slices.Concat(
		field.In("", c.Config.Validate()),
		field.In("racks", c.Racks.Config.Validate()),
		field.In("racks", c.Racks.RackPolicy.Validate()),
		field.In("storage", c.Storage.Validate()),
	).Err()
}
