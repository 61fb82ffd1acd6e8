package storage

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// This file is the only place that knows the Redis key layout of SPEC
// section 3. The Go builders below are used by the Go side of the store; the
// Lua builders in luaKeys are prepended to every script, so scripts build
// the very same names. TestLuaKeysMatchGo checks that both agree.
//
// The names are the contract operators' scripts read: no prefix, no version.
//
//	key                                  type    written by
//	racks                                set     announce
//	rack:<rack>                          set     announce (hostname, else IP)
//	transfers                            set     announce, register
//	active_transfers                     set     announce, register, deactivate
//	deactivations                        zset    deactivate: <datetime>:<hash> of every retired run -> its time (unix ms); prune
//	<hash>:peers:N|R|S|L                 set     announce, expire (R: election)
//	<hash>:rack:<rack>:N|R|S             set     announce, expire (R: election)
//	<hash>:length, :name                 string  register
//	<hash>:registered, :deregistered     string  activation, deactivation
//	<hash>:first_started, :last_started  string  announce (event=started)
//	<hash>:first_completed, :last_completed string announce (event=completed)
//	<hash>:peer:<ip>:<field>             string  announce (fields: peerFields)
//	<hash>:peer:<ip>:event:<event>       string  announce
//
// Extension keys (SPEC section 3 allows them under <hash>: so that
// deactivation carries them; README "Storage model" lists them):
//
//	<hash>:torrent                       string  register: the .torrent file
//	<hash>:seen                          zset    announce: ip -> expiry deadline (unix ms), the expiry index (timers.go)
//	<hash>:last_announce                 string  announce: datetime of the latest announce (idle timeout)
//	<hash>:racks                         set     announce: racks seen in this transfer
//	<hash>:rack:<rack>:left              zset    announce: current leechers of the rack -> left (election order)
//	<hash>:rack:<rack>:since             zset    announce: current leechers of the rack -> when they joined (unix ms; election ties)
//	<hash>:rack:<rack>:stalls            string  announce: since when (unix ms) the rack's leechers have shown no progress; absent while they progress
//	<hash>:complete, :incomplete         string  announce: sizes of peers:S and peers:L (SCARD sorts on miniredis)
//	<hash>:completions                   string  announce: count of completed events (scrape "downloaded")
//	<hash>:peer:<ip>:stalls              string  announce, election: since when (unix ms) a representative has made no progress; 0 while paused
//	<hash>:peer:<ip>:announced           string  announce: its latest announce (unix ms)
//	<hash>:peer:<ip>:cadence             string  announce: its announce cadence (ms) learned from its periodic announces
//	<hash>:timeline                      zset    sample: per-rack progress, one member per period (timeline.go)
//
// deactivations (SPEC section 3) is the index that finds the renamed runs
// without a keyspace scan, so that after deactivation no key starts with the
// hash. Before it, each hash kept its own index, <hash>:deactivations (a set
// of datetimes); Open moves those into deactivations.

// Global keys.
const (
	keyRacks           = "racks"
	keyTransfers       = "transfers"
	keyActiveTransfers = "active_transfers"
	keyDeactivations   = "deactivations"
	keyRackPrefix      = "rack:"
)

// Peer classes: the last segment of the peers and rack sets.
const (
	classSeen    = "N" // every peer seen
	classReps    = "R" // current representatives
	classSeeders = "S" // current seeders
	classLeech   = "L" // current leechers (peers:L only; per rack see rackLeft)
)

// Leaves of the per-transfer keys <hash>:<leaf>.
const (
	leafLength         = "length"
	leafName           = "name"
	leafRegistered     = "registered"
	leafDeregistered   = "deregistered"
	leafFirstStarted   = "first_started"
	leafLastStarted    = "last_started"
	leafFirstCompleted = "first_completed"
	leafLastCompleted  = "last_completed"
	leafTorrent        = "torrent"
	leafLastAnnounce   = "last_announce"
	leafComplete       = "complete"
	leafIncomplete     = "incomplete"
	leafCompletions    = "completions"
	leafSeen           = "seen"
	leafRacks          = "racks"
	leafDeactivations  = "deactivations" // the per-hash index of older versions
	leafTimeline       = "timeline"
)

// Leaves of the per-rack keys <hash>:rack:<rack>:<leaf> besides the classes.
const (
	rackLeft   = "left"
	rackSince  = "since"
	rackStalls = "stalls"
)

// Leaves of the per-peer keys <hash>:peer:<ip>:<leaf>.
const (
	peerCompact    = "compact"
	peerPort       = "port"
	peerPeerID     = "peer_id"
	peerKey        = "key"
	peerLastEvent  = "last_event"
	peerSeeder     = "seeder"
	peerDownloaded = "downloaded"
	peerLeft       = "left"
	peerUploaded   = "uploaded"
	peerRack       = "rack"
	peerHostname   = "hostname"
	peerStalls     = "stalls"
	peerAnnounced  = "announced"
	peerCadence    = "cadence"
	peerEvent      = "event" // <hash>:peer:<ip>:event:<event>
)

// transferFields are the per-transfer string keys, <hash>:<field>.
var transferFields = []string{
	leafLength, leafName, leafRegistered, leafDeregistered,
	leafFirstStarted, leafLastStarted, leafFirstCompleted, leafLastCompleted,
	leafTorrent, leafLastAnnounce, leafComplete, leafIncomplete, leafCompletions,
}

// transferSets are the per-transfer keys of other types, <hash>:<suffix>.
var transferSets = []string{
	"peers:" + classSeen, "peers:" + classReps, "peers:" + classSeeders, "peers:" + classLeech,
	leafSeen, leafRacks, leafTimeline,
}

// rackSuffixes are the per-transfer, per-rack keys, <hash>:rack:<rack>:<suffix>.
var rackSuffixes = []string{classSeen, classReps, classSeeders, rackLeft, rackSince, rackStalls}

// peerFields are the per-peer string keys, <hash>:peer:<ip>:<field>.
var peerFields = []string{
	peerCompact, peerPort, peerPeerID, peerKey, peerLastEvent, peerSeeder,
	peerDownloaded, peerLeft, peerUploaded, peerRack, peerHostname, peerStalls,
	peerAnnounced, peerCadence,
}

// Events a peer may report; each has a key <hash>:peer:<ip>:event:<event>.
const (
	EventNone      = ""
	EventStarted   = "started"
	EventCompleted = "completed"
	EventStopped   = "stopped"
	EventPaused    = "paused" // BEP 21: a partial seed that no longer downloads
)

var events = []string{EventStarted, EventCompleted, EventStopped, EventPaused}

// timeLayout is the fixed-width UTC datetime of every stored time, so that
// datetimes sort as text.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// FormatTime renders t as stored in Redis.
func FormatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// ParseTime reads a stored datetime.
func ParseTime(s string) (time.Time, error) { return time.Parse(timeLayout, s) }

// Stored booleans are exactly True and False.
func boolText(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// InfoHash is the 20-byte SHA-1 that names a transfer.
type InfoHash [20]byte

// String is the key form: 40 uppercase hex digits.
func (h InfoHash) String() string { return strings.ToUpper(hex.EncodeToString(h[:])) }

// ParseInfoHash reads 40 hex digits, either case.
func ParseInfoHash(s string) (InfoHash, error) {
	var h InfoHash
	if len(s) != 40 {
		return h, errBadHash(s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errBadHash(s)
	}
	return h, nil
}

// peerString is a set member: ip:port, IPv6 as [ip]:port, IPv4-mapped
// addresses as IPv4.
func peerString(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// ipText is the <ip> of per-peer keys: canonical, compressed for IPv6.
func ipText(a netip.Addr) string { return a.Unmap().String() }

// peerIP is the <ip> of a peer string.
func peerIP(peer string) string {
	for i := len(peer) - 1; i >= 0; i-- {
		if peer[i] == ':' {
			ip := peer[:i]
			if len(ip) > 1 && ip[0] == '[' {
				ip = ip[1 : len(ip)-1]
			}
			return ip
		}
	}
	return peer
}

func keyRack(rack string) string { return keyRackPrefix + rack }

// The structural segments of per-transfer keys.
const (
	segPeers = "peers" // <hash>:peers:<class>
	segRack  = "rack"  // <hash>:rack:<rack>:<leaf>
	segPeer  = "peer"  // <hash>:peer:<ip>:<leaf>
)

// tkeys builds the keys of one transfer from its key prefix: <hash> for an
// active transfer, <datetime>:<hash> for a deactivated one.
type tkeys string

func transferKeys(h InfoHash) tkeys { return tkeys(h.String()) }

func (k tkeys) field(leaf string) string  { return string(k) + ":" + leaf }
func (k tkeys) peers(class string) string { return string(k) + ":" + segPeers + ":" + class }
func (k tkeys) rack(rack, leaf string) string {
	return string(k) + ":" + segRack + ":" + rack + ":" + leaf
}
func (k tkeys) peer(ip, leaf string) string { return string(k) + ":" + segPeer + ":" + ip + ":" + leaf }
func (k tkeys) event(ip, event string) string {
	return k.peer(ip, peerEvent+":"+event)
}

// legacyDeactivations is the per-hash history index of older versions,
// which Open migrates into deactivations.
func (k tkeys) legacyDeactivations() string { return k.field(leafDeactivations) }

// archived is the prefix deactivation renames a transfer's keys under; it is
// also the run's member of deactivations.
func archived(h InfoHash, at string) tkeys { return tkeys(at + ":" + h.String()) }

// luaKeys is the Lua half of this file: the same builders for scripts. Every
// script starts with it. h is the transfer's key prefix (see tkeys). The leaf
// tables (K.t transfer leaves, K.c classes, K.r rack leaves, K.p peer leaves)
// raise an error on an unknown name, so a misspelt leaf fails every test
// that runs the script instead of writing a stray key. It runs at every
// script run: each table is one constructor (no growth) and the leaf tables
// share one metatable.
var luaKeys = `
local STRICT = {__index = function(_, n) error('no key leaf named ' .. tostring(n)) end}
local function strict(t) return setmetatable(t, STRICT) end
local K
K = {
  racks = ` + luaQuote(keyRacks) + `,
  transfers = ` + luaQuote(keyTransfers) + `,
  active = ` + luaQuote(keyActiveTransfers) + `,
  deactivations = ` + luaQuote(keyDeactivations) + `,
  t = strict({` + luaNames(transferFields...) + `, ` + luaNames(leafSeen, leafRacks, leafTimeline) + `}),
  c = strict({seen = ` + luaQuote(classSeen) + `, reps = ` + luaQuote(classReps) +
	`, seeders = ` + luaQuote(classSeeders) + `, leechers = ` + luaQuote(classLeech) + `}),
  r = strict({` + luaNames(rackLeft, rackSince, rackStalls) + `}),
  p = strict({` + luaNames(peerFields...) + `}),
  ev = strict({` + luaNames(events...) + `}),
  transfer_fields = {` + luaList(transferFields) + `},
  transfer_sets = {` + luaList(transferSets) + `},
  rack_suffixes = {` + luaList(rackSuffixes) + `},
  peer_fields = {` + luaList(peerFields) + `},
  events = {` + luaList(events) + `},
  rack = function(rack) return ` + luaQuote(keyRackPrefix) + ` .. rack end,
  field = function(h, leaf) return h .. ':' .. leaf end,
  peers = function(h, class) return h .. ` + luaQuote(":"+segPeers+":") + ` .. class end,
  rackset = function(h, rack, leaf) return h .. ` + luaQuote(":"+segRack+":") + ` .. rack .. ':' .. leaf end,
  peer = function(h, ip, leaf) return h .. ` + luaQuote(":"+segPeer+":") + ` .. ip .. ':' .. leaf end,
  event = function(h, ip, event) return h .. ` + luaQuote(":"+segPeer+":") + ` .. ip .. ` + luaQuote(":"+peerEvent+":") + ` .. event end,
  archived = function(at, h) return at .. ':' .. h end,
  -- peer strings: ip:port, IPv6 as [ip]:port
  peerstr = function(ip, port)
    if string.find(ip, ':', 1, true) then return '[' .. ip .. ']:' .. port end
    return ip .. ':' .. port
  end,
  peerip = function(p)
    local ip = string.match(p, '^(.*):%d+$')
    if string.sub(ip, 1, 1) == '[' then ip = string.sub(ip, 2, -2) end
    return ip
  end,
}
`

func luaList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = luaQuote(s)
	}
	return strings.Join(q, ", ")
}

// luaNames renders name = 'name' pairs: leaves whose Lua name is the leaf.
func luaNames(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = s + " = " + luaQuote(s)
	}
	return strings.Join(q, ", ")
}

// luaQuote is a Lua string literal; Go's quoting is valid Lua for the
// names of this file.
func luaQuote(s string) string { return strconv.Quote(s) }
