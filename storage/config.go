package storage

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"racktracker/field"
)

// Config mirrors the storage section of tracker.yaml.
type Config struct {
	Backend  string         `yaml:"backend"`
	Redis    RedisConfig    `yaml:"redis"`
	Embedded EmbeddedConfig `yaml:"embedded"`
}

// RedisConfig is the external Redis the redis backend dials: the
// standalone server at Addr, or the master that Sentinel names.
type RedisConfig struct {
	Addr     string         `yaml:"addr"`
	Username string         `yaml:"username"`
	Password string         `yaml:"password"`
	DB       int            `yaml:"db"`
	Sentinel SentinelConfig `yaml:"sentinel"`

	// addrBesideSentinel records that the file wrote addr as well as
	// sentinel: addr's default does not conflict with sentinel, a written
	// addr does. Set only on that conflict, so that a valid config compares
	// equal to one built in code.
	addrBesideSentinel bool
}

// SentinelConfig finds the master through Redis Sentinel and follows its
// failovers. Username and Password are the Sentinels' own credentials; the
// master's and replicas' are RedisConfig's.
type SentinelConfig struct {
	Master   string   `yaml:"master"`
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	// ReplicaReads sends the reads that may lag (scrape, the dashboard's
	// and GET /api/transfers' lists, the metrics' totals, the racks list)
	// to a replica Sentinel names. Announces, admin writes and the reads
	// they depend on always go to the master.
	ReplicaReads bool `yaml:"replica_reads"`
}

// Enabled reports whether the master is found through Sentinel.
func (c SentinelConfig) Enabled() bool { return c.Master != "" || len(c.Addrs) > 0 }

// UnmarshalYAML decodes the redis section as usual and notes whether addr
// was written beside sentinel, so that Validate can refuse a written addr
// without refusing addr's default.
func (c *RedisConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain RedisConfig // without this method
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	c.addrBesideSentinel = false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "addr" && n.Content[i+1].ShortTag() != "!!null" && c.Sentinel.Enabled() {
			c.addrBesideSentinel = true
		}
	}
	return nil
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
	sen := c.Redis.Sentinel
	if c.Backend == BackendRedis && !sen.Enabled() {
		if strings.Contains(c.Redis.Addr, "://") || strings.Contains(c.Redis.Addr, "@") {
			// Never echo it: a URL may carry the password.
			bad("redis.addr", "want host:port, got a URL (%s); put the host:port here and any user and password in storage.redis.username and storage.redis.password", RedactAddr(c.Redis.Addr))
		} else if _, _, err := splitAddr(c.Redis.Addr); err != nil {
			bad("redis.addr", "%v", err)
		}
	}
	if sen.Enabled() {
		if c.Redis.addrBesideSentinel {
			bad("redis.addr", "set together with sentinel; write either addr (a standalone Redis) or sentinel.master and sentinel.addrs (a master found through Sentinel), not both")
		}
		if sen.Master == "" {
			bad("redis.sentinel.master", "must name the master Sentinel monitors when sentinel.addrs is set")
		}
		if len(sen.Addrs) == 0 {
			bad("redis.sentinel.addrs", "must list at least one Sentinel host:port when sentinel.master is set")
		}
		for i, a := range sen.Addrs {
			if _, _, err := splitAddr(a); err != nil {
				bad(fmt.Sprintf("redis.sentinel.addrs[%d]", i), "%v", err)
			}
		}
	} else if sen.ReplicaReads {
		bad("redis.sentinel.replica_reads", "needs sentinel.master and sentinel.addrs: replicas are found through Sentinel")
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

// RedactAddr is addr fit for a message: whatever precedes an "@" (a URL's
// user and password) is replaced, so that no secret is printed.
func RedactAddr(addr string) string {
	i := strings.LastIndex(addr, "@")
	if i < 0 {
		return addr
	}
	scheme := ""
	if j := strings.Index(addr, "://"); j >= 0 && j < i {
		scheme = addr[:j+3]
	}
	return scheme + "xxxxx@" + addr[i+1:]
}

// splitAddr splits host:port and insists on a port.
func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", "", fmt.Errorf("want host:port, got %q", addr)
	}
	return host, port, nil
}
