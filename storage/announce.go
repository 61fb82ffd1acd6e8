package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Announce is one announce as the store records it: the client's report,
// where the host stands, the election parameters and the handout plan of
// the tracker's policy.
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
	// MaxUnregistered caps the active transfers activated by announces
	// alone: past it, such an announce gets ErrTooManyUnregistered. Zero
	// means no cap.
	MaxUnregistered int
	// Representatives is the most representatives a rack may hold; Timers
	// judge liveness and stall against each peer's own cadence (zero
	// fields take the defaults).
	Representatives int
	Timers          Timers
	// Numwant is how many peers the asker may be handed (0: none, nothing
	// is sampled); Plan says which classes, per role. PeerIDs returns each
	// candidate's peer id too (the dictionary response form needs them).
	Numwant int
	Plan    Plan
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

// Class names a class of candidate peers of SPEC section 4, as seen from
// the asker's rack. The letters are what the script reads.
type Class byte

// Classes. Own and Other are relative to the asker's rack; All ignores racks
// (the rack-unaware handout).
const (
	OwnSeeders        Class = 's' // current seeders of the asker's rack
	OwnReps           Class = 'r' // current representatives of the asker's rack
	OwnLeechers       Class = 'l' // current leechers of the asker's rack (its representatives too)
	OtherSeeders      Class = 'S' // current seeders of other racks
	OtherReps         Class = 'R' // current representatives of other racks
	OtherLeechingReps Class = 'P' // representatives of other racks that still leech
	AllSeeders        Class = 'a' // current seeders, any rack
	AllLeechers       Class = 'b' // current leechers, any rack
)

var classNames = map[Class]string{
	OwnSeeders: "own_seeders", OwnReps: "own_reps", OwnLeechers: "own_leechers",
	OtherSeeders: "other_seeders", OtherReps: "other_reps", OtherLeechingReps: "other_leeching_reps",
	AllSeeders: "all_seeders", AllLeechers: "all_leechers",
}

// classOverlaps says, for each class, the classes that may hold some of its
// members: representatives are leechers or seeders, and the All classes
// hold every rack's peers. The script sizes a later stage's draws by what
// earlier stages drew of these (see sampling in announce.lua).
var classOverlaps = map[Class]string{
	OwnSeeders:        "sra",
	OwnReps:           "srlab",
	OwnLeechers:       "rlb",
	OtherSeeders:      "SRa",
	OtherReps:         "SRPab",
	OtherLeechingReps: "RPb",
	AllSeeders:        "srSRa",
	AllLeechers:       "rlRPb",
}

// Stage is one step of a handout: up to N peers drawn at random from the
// union of Classes. N <= 0 means as many as numwant allows.
type Stage struct {
	Classes []Class
	N       int
}

// Plan is a handout policy's wants: for each role of the asker, its stages
// in order. The script computes the role (and whether a leecher's rack
// starves, Escape) and samples the stages of that role only, about N+1 of
// each class (the asker may be among them), so that the tracker picks from
// exactly what it asked for.
type Plan struct {
	Leecher        []Stage // a leecher that is not a representative
	Escape         []Stage // such a leecher in a starving rack
	Representative []Stage // a representative that still leeches
	Seeder         []Stage
}

// Stages are the stages of the plan for a role and escape flag.
func (p Plan) Stages(r Role, escape bool) []Stage {
	switch r {
	case RoleRepresentative:
		return p.Representative
	case RoleSeeder:
		return p.Seeder
	case RoleLeecher:
		if escape {
			return p.Escape
		}
		return p.Leecher
	}
	return nil
}

// maxStages bounds a role's stages, so that a reply is bounded too.
const maxStages = 8

// encodeStages renders stages as the script reads them: "<classes>:<n>"
// separated by spaces.
func encodeStages(stages []Stage) string {
	var b strings.Builder
	for i, st := range stages[:min(len(stages), maxStages)] {
		if i > 0 {
			b.WriteByte(' ')
		}
		for _, c := range st.Classes {
			if _, ok := classNames[c]; ok {
				b.WriteByte(byte(c))
			}
		}
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(max(st.N, 0)))
	}
	return b.String()
}

// Peer is a candidate of a handout.
type Peer struct {
	Addr   netip.AddrPort
	PeerID string // set when Announce.PeerIDs asked for it
}

// Swarm is what an announce leaves: the counts the response carries, the
// asker's role, whether its rack is starving (no seeder and no
// representative, or no progress), what the election did, and the
// candidates of each stage of the plan for that role.
type Swarm struct {
	Complete   int
	Incomplete int
	Role       Role
	Escape     bool
	Elected    int
	Demoted    int
	// Stages holds the candidates of Plan.Stages(Role, Escape), stage by
	// stage; nil when nothing was sampled.
	Stages [][]Peer
	// SharedIP is set when another client (another peer_id) was current on
	// the asker's IP: peers are keyed by IP, so two clients behind one
	// address (NAT, containers) replace each other.
	SharedIP bool
}

// The announce script's arguments (ARGV) and reply, declared once: the Lua
// tables A (argument by name) and R (reply index by name) are generated
// from these lists, see announcePrelude.
const (
	argHash = iota
	argIP
	argPort
	argPeer
	argPeerID
	argKey
	argEvent
	argUploaded
	argDownloaded
	argLeft
	argCompact
	argRack
	argHostname
	argClock
	argAllow
	argReps
	argStall
	argNumwant
	argPlanLeecher
	argPlanEscape
	argPlanRep
	argPlanSeeder
	argPeerIDs
	argSeed
	argMaxUnregistered
	argTimeout
	argCadences
	argFirst
	argOverdue
	argMaxCadence
	argOverdueFloor
	numArgs
)

var argNames = [numArgs]string{
	argHash: "hash", argIP: "ip", argPort: "port", argPeer: "peer", argPeerID: "peer_id",
	argKey: "key", argEvent: "event", argUploaded: "uploaded", argDownloaded: "downloaded",
	argLeft: "left", argCompact: "compact", argRack: "rack", argHostname: "hostname",
	argClock: "clock", argAllow: "allow", argReps: "reps", argStall: "stall",
	argNumwant: "numwant", argPlanLeecher: "plan_leecher", argPlanEscape: "plan_escape",
	argPlanRep: "plan_rep", argPlanSeeder: "plan_seeder", argPeerIDs: "peer_ids", argSeed: "seed",
	argMaxUnregistered: "max_unregistered", argTimeout: "timeout", argCadences: "cadences",
	argFirst: "first", argOverdue: "overdue", argMaxCadence: "max_cadence",
	argOverdueFloor: "overdue_floor",
}

// Reply: a fixed head, then one array per sampled stage.
const (
	replyStatus = iota
	replyComplete
	replyIncomplete
	replyRole
	replyEscape
	replyElected
	replyDemoted
	replyShared // 1: another client was current on the asker's IP
	replyStages // first stage; the others follow
)

var replyNames = [replyStages + 1]string{
	replyStatus: "status", replyComplete: "complete", replyIncomplete: "incomplete",
	replyRole: "role", replyEscape: "escape", replyElected: "elected", replyDemoted: "demoted",
	replyShared: "shared", replyStages: "stages",
}

// Statuses of the reply.
const (
	statusOK           = "ok"
	statusUnregistered = "unregistered"
	statusUnknown      = "unknown"     // stopped for an inactive transfer
	statusDeactivated  = "deactivated" // seen, not active
	statusFull         = "full"        // too many transfers announces alone activated
)

// announcePrelude declares, in Lua, the names above: A.<arg>, R.<reply
// field> (1-based), ST (statuses), ROLE, CL (classes) and OVERLAP (class
// letter -> the letters of classOverlaps).
func announcePrelude() string {
	var b strings.Builder
	b.WriteString("local A = {")
	for i, n := range argNames {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s = ARGV[%d]", n, i+1)
	}
	b.WriteString("}\n")
	b.WriteString("local R = strict({")
	for i, n := range replyNames {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s = %d", n, i+1)
	}
	b.WriteString("})\n")
	fmt.Fprintf(&b, "local ST = strict({ok = %s, unregistered = %s, unknown = %s, deactivated = %s, full = %s})\n",
		luaQuote(statusOK), luaQuote(statusUnregistered), luaQuote(statusUnknown), luaQuote(statusDeactivated), luaQuote(statusFull))
	fmt.Fprintf(&b, "local ROLE = strict({leecher = %s, rep = %s, seeder = %s, stopped = %s})\n",
		luaQuote(string(RoleLeecher)), luaQuote(string(RoleRepresentative)), luaQuote(string(RoleSeeder)), luaQuote(string(RoleStopped)))
	b.WriteString("local CL = strict({")
	first := true
	for _, c := range []Class{OwnSeeders, OwnReps, OwnLeechers, OtherSeeders, OtherReps, OtherLeechingReps, AllSeeders, AllLeechers} {
		if !first {
			b.WriteString(", ")
		}
		first = false
		fmt.Fprintf(&b, "%s = %s", classNames[c], luaQuote(string(c)))
	}
	b.WriteString("})\n")
	b.WriteString("local OVERLAP = {")
	first = true
	for _, c := range []Class{OwnSeeders, OwnReps, OwnLeechers, OtherSeeders, OtherReps, OtherLeechingReps, AllSeeders, AllLeechers} {
		if !first {
			b.WriteString(", ")
		}
		first = false
		fmt.Fprintf(&b, "[%s] = %s", luaQuote(string(c)), luaQuote(classOverlaps[c]))
	}
	b.WriteString("}\n")
	return b.String()
}

// Announce records a in one atomic script run (one round trip; on an
// external Redis in a batch with concurrent announces, see batch.go) and returns
// the swarm it leaves. An announce of "stopped" for an inactive transfer
// writes nothing and returns an empty swarm.
func (s *Store) Announce(ctx context.Context, a Announce) (Swarm, error) {
	args := make([]any, numArgs)
	args[argHash] = a.InfoHash.String()
	args[argIP] = ipText(a.Addr.Addr())
	args[argPort] = strconv.Itoa(int(a.Addr.Port()))
	args[argPeer] = peerString(a.Addr)
	args[argPeerID] = a.PeerID
	args[argKey] = a.Key
	args[argEvent] = a.Event
	args[argUploaded] = a.Uploaded
	args[argDownloaded] = a.Downloaded
	args[argLeft] = a.Left
	args[argCompact] = boolText(a.Compact)
	args[argRack] = a.Rack
	args[argHostname] = a.Hostname
	args[argClock] = s.clockArg()
	args[argAllow] = flag(a.AllowUnregistered)
	args[argReps] = max(a.Representatives, 0)
	ta := s.timerArgs(a.Timers)
	args[argTimeout], args[argCadences], args[argFirst] = ta[0], ta[1], ta[2]
	args[argStall], args[argOverdue], args[argMaxCadence] = ta[3], ta[4], ta[5]
	args[argOverdueFloor] = ta[6]
	args[argNumwant] = max(a.Numwant, 0)
	args[argPlanLeecher] = encodeStages(a.Plan.Leecher)
	args[argPlanEscape] = encodeStages(a.Plan.Escape)
	args[argPlanRep] = encodeStages(a.Plan.Representative)
	args[argPlanSeeder] = encodeStages(a.Plan.Seeder)
	args[argPeerIDs] = flag(a.PeerIDs)
	// Redis seeds the scripts' math.random alike for every run.
	args[argSeed] = rand.Uint32()
	args[argMaxUnregistered] = max(a.MaxUnregistered, 0)
	var res []any
	err := s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		if s.batch != nil {
			res, err = s.batch.run(ctx, args)
		} else {
			res, err = scriptAnnounce.Run(ctx, c, nil, args...).Slice()
		}
		return err
	})
	if err != nil {
		return Swarm{}, err
	}
	status, _ := res[replyStatus].(string)
	switch status {
	case statusOK:
	case statusUnregistered:
		return Swarm{}, ErrNotRegistered
	case statusDeactivated:
		return Swarm{}, ErrDeactivated
	case statusFull:
		return Swarm{}, ErrTooManyUnregistered
	case statusUnknown:
		return Swarm{Role: RoleStopped}, nil
	default:
		return Swarm{}, fmt.Errorf("%w: announce script answered %v", ErrUnavailable, res)
	}
	if len(res) < replyStages {
		return Swarm{}, fmt.Errorf("%w: announce script answered %v", ErrUnavailable, res)
	}
	s.dirty.Store(true)
	sw := Swarm{
		Complete:   int(asInt(res[replyComplete])),
		Incomplete: int(asInt(res[replyIncomplete])),
		Elected:    int(asInt(res[replyElected])),
		Demoted:    int(asInt(res[replyDemoted])),
		Escape:     asInt(res[replyEscape]) == 1,
		SharedIP:   asInt(res[replyShared]) == 1,
	}
	if r, _ := res[replyRole].(string); len(r) == 1 {
		sw.Role = Role(r[0])
	}
	if len(res) > replyStages {
		sw.Stages = make([][]Peer, len(res)-replyStages)
		for i, v := range res[replyStages:] {
			sw.Stages[i] = parsePeers(v, a.PeerIDs)
		}
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

// parsePeers reads a stage the script returned. A member that does not parse
// can only come from a hand-edited store: it is skipped, not handed out.
func parsePeers(v any, withIDs bool) []Peer {
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
