package tracker

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"racktracker/field"
	"racktracker/storage"
)

// Config mirrors the top level of tracker.yaml that the tracker owns: the
// listeners, the announce protocol and the transfer lifecycle. The racks
// section's handout policy is RackPolicy.
type Config struct {
	Listen string `yaml:"listen"`
	// PublicURL is the base of the announce URL that API answers give,
	// e.g. http://tracker.dc1:6969; empty: the address the caller reached.
	PublicURL string          `yaml:"public_url"`
	Admin     AdminConfig     `yaml:"admin"`
	Announce  AnnounceConfig  `yaml:"announce"`
	Transfers TransfersConfig `yaml:"transfers"`
}

// AdminConfig protects and places the /api endpoints.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"`
}

// AnnounceConfig is what the tracker tells clients and whom it believes.
type AnnounceConfig struct {
	Interval    time.Duration `yaml:"interval"`
	MinInterval time.Duration `yaml:"min_interval"`
	// PeerTimeout is the least time a peer stays current after an
	// announce; one that announces less often than that stays current for
	// PeerTimeoutCadences of its own cadence, learned from its announces,
	// FirstCadence assumed until it announced twice (storage.Timers).
	PeerTimeout         time.Duration `yaml:"peer_timeout"`
	PeerTimeoutCadences float64       `yaml:"peer_timeout_cadences"`
	FirstCadence        time.Duration `yaml:"first_cadence"`
	NumwantDefault      int           `yaml:"numwant_default"`
	NumwantMax          int           `yaml:"numwant_max"`
	TrustIPParam        bool          `yaml:"trust_ip_param"`
	TrustedProxies      []string      `yaml:"trusted_proxies"`
}

// TransfersConfig is the transfer lifecycle.
type TransfersConfig struct {
	AllowUnregistered bool `yaml:"allow_unregistered"`
	// MaxUnregistered caps the active transfers that announces alone
	// activated; past it, an announce for an unknown hash is refused.
	MaxUnregistered int           `yaml:"max_unregistered"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	// HistoryRetention is how long deactivated runs are kept; 0 keeps them.
	HistoryRetention time.Duration `yaml:"history_retention"`
	// TimelineInterval is the sampling period of the rollout timeline and
	// of stuck-rack detection; TimelineSamples caps the samples kept per
	// transfer (beyond it every other one is dropped).
	TimelineInterval time.Duration `yaml:"timeline_interval"`
	TimelineSamples  int           `yaml:"timeline_samples"`
	// StuckAfter is how long a rack with leechers may go without progress
	// while other racks progress before it is marked stuck. It must exceed
	// the longest announce interval of the clients in use (rtorrent: 600 s).
	StuckAfter time.Duration `yaml:"stuck_after"`
}

// RackPolicy is the handout half of the racks section of tracker.yaml.
type RackPolicy struct {
	Handout                string `yaml:"handout"`
	RepresentativesPerRack int    `yaml:"representatives_per_rack"`
	// RepresentativeStall is a time, counted in announce.interval: a
	// representative whose left has not shrunk for that long while its rack
	// has no seeder loses the role, whatever its own cadence (see
	// Config.Timers).
	RepresentativeStall int `yaml:"representative_stall"`
	EscapePeers         int `yaml:"escape_peers"`
}

// Handout modes accepted in racks.handout.
const (
	HandoutLocal  = "local"
	HandoutRandom = "random"
)

// DefaultConfig returns the defaults documented in SPEC section 7.
func DefaultConfig() Config {
	return Config{
		Listen: "127.0.0.1:6969",
		Announce: AnnounceConfig{
			Interval:            30 * time.Second,
			MinInterval:         10 * time.Second,
			PeerTimeout:         storage.DefaultPeerTimeout,
			PeerTimeoutCadences: storage.DefaultCadences,
			FirstCadence:        storage.DefaultFirstCadence,
			NumwantDefault:      50,
			NumwantMax:          200,
		},
		Transfers: TransfersConfig{
			AllowUnregistered: true, MaxUnregistered: 1000,
			IdleTimeout: 24 * time.Hour, HistoryRetention: 720 * time.Hour,
			TimelineInterval: 30 * time.Second, TimelineSamples: 512, StuckAfter: 15 * time.Minute,
		},
	}
}

// DefaultRackPolicy returns the defaults documented in SPEC section 7, but
// for representatives_per_rack: 1, chosen by measurement (README, "The
// handout policy").
func DefaultRackPolicy() RackPolicy {
	return RackPolicy{Handout: HandoutLocal, RepresentativesPerRack: 1, RepresentativeStall: 3, EscapePeers: 2}
}

// Validate reports every problem at once, as field.Errors.
func (c Config) Validate() error {
	var errs field.Errors
	bad := errs.Add
	addr := func(path, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			bad(path, "want host:port, got %q", v)
		}
	}
	addr("listen", c.Listen, false)
	addr("admin.listen", c.Admin.Listen, true)
	positive := func(path string, d time.Duration) {
		if d <= 0 {
			bad(path, "must be positive, got %s", d)
		}
	}
	a := c.Announce
	positive("announce.interval", a.Interval)
	positive("announce.min_interval", a.MinInterval)
	positive("announce.peer_timeout", a.PeerTimeout)
	if a.MinInterval > a.Interval && a.Interval > 0 {
		errs.AddRelated("announce.min_interval", "announce.interval", "%s is longer than announce.interval %s", a.MinInterval, a.Interval)
	}
	if a.PeerTimeoutCadences < storage.OverdueCadences {
		bad("announce.peer_timeout_cadences", "must be at least %g (a representative is replaced when overdue by %g of its cadences, before it expires), got %g", storage.OverdueCadences, storage.OverdueCadences, a.PeerTimeoutCadences)
	}
	if a.FirstCadence < time.Second {
		bad("announce.first_cadence", "must be at least 1s, got %s", a.FirstCadence)
	}
	if a.PeerTimeout > 0 && a.PeerTimeout <= a.Interval {
		errs.AddRelated("announce.peer_timeout", "announce.interval", "%s must be longer than announce.interval %s, or every peer expires between announces", a.PeerTimeout, a.Interval)
	}
	if a.NumwantDefault < 0 {
		bad("announce.numwant_default", "must not be negative, got %d", a.NumwantDefault)
	}
	if a.NumwantMax < 1 {
		bad("announce.numwant_max", "must be at least 1, got %d", a.NumwantMax)
	}
	if a.NumwantDefault > a.NumwantMax && a.NumwantMax >= 1 {
		errs.AddRelated("announce.numwant_default", "announce.numwant_max", "%d is above announce.numwant_max %d", a.NumwantDefault, a.NumwantMax)
	}
	for i, s := range a.TrustedProxies {
		if _, err := netip.ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("announce.trusted_proxies[%d]", i), "bad CIDR %q", s)
		}
	}
	positive("transfers.idle_timeout", c.Transfers.IdleTimeout)
	tr := c.Transfers
	if tr.TimelineInterval < time.Second {
		bad("transfers.timeline_interval", "must be at least 1s, got %s", tr.TimelineInterval)
	}
	if tr.TimelineSamples < 16 {
		bad("transfers.timeline_samples", "must be at least 16, got %d", tr.TimelineSamples)
	}
	if tr.StuckAfter < 2*tr.TimelineInterval && tr.TimelineInterval >= time.Second {
		errs.AddRelated("transfers.stuck_after", "transfers.timeline_interval", "%s must be at least twice transfers.timeline_interval %s, or no sample is old enough to compare with", tr.StuckAfter, tr.TimelineInterval)
	}
	if c.Transfers.MaxUnregistered < 1 {
		bad("transfers.max_unregistered", "must be at least 1, got %d (to refuse unknown transfers, set transfers.allow_unregistered: false)", c.Transfers.MaxUnregistered)
	}
	if c.Transfers.HistoryRetention < 0 {
		bad("transfers.history_retention", "must not be negative, got %s (0 keeps the history)", c.Transfers.HistoryRetention)
	}
	if c.PublicURL != "" {
		if err := checkPublicURL(c.PublicURL); err != nil {
			bad("public_url", "%v", err)
		}
	}
	if c.Admin.Token == "" {
		path, where := "admin.listen", c.Admin.Listen
		if where == "" {
			path, where = "listen", c.Listen
		}
		if host, _, err := net.SplitHostPort(where); err == nil && !isLoopback(host) {
			errs.AddRelated("admin.token", path, "empty, and the admin API (/api) would be served on %s (%s), which is not a loopback address: anyone who reaches it could register and deactivate transfers; set admin.token, or bind admin.listen to a loopback address such as 127.0.0.1:6970", where, path)
		}
	}
	return errs.Err()
}

// isLoopback reports whether host (of a listen address) only accepts
// connections from this machine. An empty host or a wildcard listens on
// every interface; a host name other than localhost may resolve anywhere.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkPublicURL accepts an absolute http or https URL with a host and
// nothing after its path: the announce URL is built by appending to it.
func checkPublicURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %q", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http:// or https:// URL, got %q", raw)
	case u.Host == "":
		return fmt.Errorf("no host in %q", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("want scheme://host[:port][/path] without user, query or fragment, got %q", u.Redacted())
	}
	return nil
}

// Validate reports every problem at once, as field.Errors with paths
// relative to the racks section.
func (p RackPolicy) Validate() error {
	var errs field.Errors
	bad := errs.Add
	switch p.Handout {
	case HandoutLocal, HandoutRandom:
	default:
		bad("handout", "unknown handout %q (want %q or %q)", p.Handout, HandoutLocal, HandoutRandom)
	}
	if p.RepresentativesPerRack < 1 {
		bad("representatives_per_rack", "must be at least 1, got %d", p.RepresentativesPerRack)
	}
	if p.RepresentativeStall < 1 {
		bad("representative_stall", "must be at least 1, got %d", p.RepresentativeStall)
	}
	if p.EscapePeers < 0 {
		bad("escape_peers", "must not be negative, got %d", p.EscapePeers)
	}
	return errs.Err()
}

// Timers are the store's liveness and stall clocks from the announce
// section and the stall of the racks section (representative_stall
// intervals of announce.interval).
func (c Config) Timers(p RackPolicy) storage.Timers {
	return storage.Timers{
		PeerTimeout:  c.Announce.PeerTimeout,
		Cadences:     c.Announce.PeerTimeoutCadences,
		FirstCadence: c.Announce.FirstCadence,
		Stall:        time.Duration(p.RepresentativeStall) * c.Announce.Interval,
		OverdueFloor: 2 * c.Announce.MinInterval,
	}
}
