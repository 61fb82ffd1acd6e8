package storage

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Announce is one announce as the store records it: the client's report,
// where the host stands, and the election and sampling parameters of the
// tracker's policy.
type Announce struct {
	InfoHash   InfoHash
	Addr       netip.AddrPort
	PeerID     string
	Key        string
	Event      string // one of the Event constants
	Uploaded   int64
	Downloaded int64
	Left       int64
	Compact    bool
	Rack       string
	Hostname   string

	// AllowUnregistered activates an unknown transfer on its first announce;
	// otherwise such an announce gets ErrNotRegistered and writes nothing.
	AllowUnregistered bool
	// Representatives is the most representatives a rack may hold, Stall the
	// announces without progress after which one loses the role.
	Representatives int
	Stall           int
	// Sample is how many candidates to draw per pool (0: none); Random draws
	// the rack-unaware pools instead of the rack ones; PeerIDs returns each
	// candidate's peer id too (the dictionary response form needs them).
	Sample  int
	Random  bool
	PeerIDs bool
}

// Role is what the announcing peer is after its announce.
type Role byte

// Roles.
const (
	RoleLeecher        Role = 'L'
	RoleRepresentative Role = 'R' // a representative that is still leeching
	RoleSeeder         Role = 'S'
	RoleStopped        Role = 'X'
)

// Pool names a class of candidate peers an announce samples.
type Pool int

// Pools, as SPEC section 4 names the classes. A rack-aware announce fills the
// Own and Other pools a handout of the asker's role may use; a random one
// fills AllSeeders and AllLeechers.
const (
	OwnSeeders Pool = iota
	OwnReps
	OwnLeechers
	OtherSeeders
	OtherReps
	AllSeeders
	AllLeechers
	numPools
)

// Peer is a candidate of a handout.
type Peer struct {
	Addr   netip.AddrPort
	PeerID string // set when Announce.PeerIDs asked for it
}

// Swarm is what an announce leaves: the counts the response carries, the
// asker's role, whether its rack is starving (no seeder and no
// representative, or no progress), what the election did, and the
// candidate pools.
type Swarm struct {
	Complete   int
	Incomplete int
	Role       Role
	Escape     bool
	Elected    int
	Demoted    int
	Pools      [numPools][]Peer
}

// Announce records a in one atomic script run (one round trip) and returns
// the swarm it leaves. An announce of "stopped" for an inactive transfer
// writes nothing and returns an empty swarm.
func (s *Store) Announce(ctx context.Context, a Announce) (Swarm, error) {
	args := []any{
		a.InfoHash.String(),
		ipText(a.Addr.Addr()),
		strconv.Itoa(int(a.Addr.Port())),
		peerString(a.Addr),
		a.PeerID,
		a.Key,
		a.Event,
		a.Uploaded,
		a.Downloaded,
		a.Left,
		boolText(a.Compact),
		a.Rack,
		a.Hostname,
		s.clockArg(),
		flag(a.AllowUnregistered),
		max(a.Representatives, 0),
		max(a.Stall, 1),
		max(a.Sample, 0),
		map[bool]string{true: "random", false: "local"}[a.Random],
		flag(a.PeerIDs),
	}
	var res []any
	err := s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		v, err := scriptAnnounce.Run(ctx, c, nil, args...).Slice()
		res = v
		return err
	})
	if err != nil {
		return Swarm{}, err
	}
	status, _ := res[0].(string)
	switch status {
	case "ok":
	case "unregistered":
		return Swarm{}, ErrNotRegistered
	case "unknown":
		return Swarm{Role: RoleStopped}, nil
	default:
		return Swarm{}, fmt.Errorf("%w: announce script answered %v", ErrUnavailable, res)
	}
	s.dirty.Store(true)
	sw := Swarm{
		Complete:   int(asInt(res[1])),
		Incomplete: int(asInt(res[2])),
		Elected:    int(asInt(res[5])),
		Demoted:    int(asInt(res[6])),
		Escape:     asInt(res[4]) == 1,
	}
	if r, _ := res[3].(string); len(r) == 1 {
		sw.Role = Role(r[0])
	}
	for i := range numPools {
		if 7+int(i) >= len(res) {
			break
		}
		sw.Pools[i] = parsePool(res[7+int(i)], a.PeerIDs)
	}
	return sw, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func asInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// parsePool reads a pool the script returned. A member that does not parse
// can only come from a hand-edited store: it is skipped, not handed out.
func parsePool(v any, withIDs bool) []Peer {
	items, _ := v.([]any)
	step := 1
	if withIDs {
		step = 2
	}
	peers := make([]Peer, 0, len(items)/step)
	for i := 0; i+step <= len(items); i += step {
		str, _ := items[i].(string)
		ap, err := netip.ParseAddrPort(str)
		if err != nil {
			continue
		}
		p := Peer{Addr: ap}
		if withIDs {
			p.PeerID, _ = items[i+1].(string)
		}
		peers = append(peers, p)
	}
	return peers
}
