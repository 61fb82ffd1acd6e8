package storage

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"racktracker/field"
)

// Config mirrors the storage section of tracker.yaml.
type Config struct {
	Backend  string         `yaml:"backend"`
	Redis    RedisConfig    `yaml:"redis"`
	Embedded EmbeddedConfig `yaml:"embedded"`
}

// RedisConfig is the external Redis the redis backend dials.
type RedisConfig struct {
	Addr     string `yaml:"addr"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
}

// EmbeddedConfig controls the in-process store: where and how often it
// snapshots, and the optional loopback address it is served on.
type EmbeddedConfig struct {
	SnapshotPath     string        `yaml:"snapshot_path"`
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	Listen           string        `yaml:"listen"`
}

// Backend names accepted in storage.backend.
const (
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// DefaultConfig returns the defaults documented in SPEC section 7.
func DefaultConfig() Config {
	return Config{
		Backend: BackendEmbedded,
		Redis:   RedisConfig{Addr: "127.0.0.1:6379"},
		Embedded: EmbeddedConfig{
			SnapshotPath:     "data/tracker.snapshot",
			SnapshotInterval: 30 * time.Second,
		},
	}
}

// Validate reports every problem at once, as field.Errors with paths
// relative to the storage section.
func (c Config) Validate() error {
	var errs field.Errors
	bad := errs.Add
	switch c.Backend {
	case BackendEmbedded, BackendRedis:
	default:
		bad("backend", "unknown backend %q (want %q or %q)", c.Backend, BackendEmbedded, BackendRedis)
	}
	if c.Backend == BackendRedis {
		if _, _, err := splitAddr(c.Redis.Addr); err != nil {
			bad("redis.addr", "%v", err)
		}
	}
	if c.Redis.DB < 0 {
		bad("redis.db", "must not be negative, got %d", c.Redis.DB)
	}
	if c.Backend == BackendEmbedded && c.Embedded.SnapshotPath == "" {
		bad("embedded.snapshot_path", "must not be empty")
	}
	if c.Embedded.SnapshotInterval <= 0 {
		bad("embedded.snapshot_interval", "must be positive, got %s", c.Embedded.SnapshotInterval)
	}
	if c.Embedded.Listen != "" {
		host, _, err := splitAddr(c.Embedded.Listen)
		ip, perr := netip.ParseAddr(host)
		switch {
		case err != nil:
			bad("embedded.listen", "%v", err)
		case host != "localhost" && (perr != nil || !ip.IsLoopback()):
			// The embedded store has no password: serving it beyond this
			// machine would hand every key to the network.
			bad("embedded.listen", "%q is not a loopback address (127.0.0.0/8, ::1 or localhost)", host)
		}
	}
	return errs.Err()
}

// splitAddr splits host:port and insists on a port.
func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", "", fmt.Errorf("want host:port, got %q", addr)
	}
	return host, port, nil
}
