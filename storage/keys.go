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
// the very same names. keys_test.go checks that both agree.
//
// The names are the contract operators' scripts read: no prefix, no version.
//
//	key                                  type    written by
//	racks                                set     announce
//	rack:<rack>                          set     announce (hostname, else IP)
//	transfers                            set     announce, register
//	active_transfers                     set     announce, register, deactivate
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
//	<hash>:seen                          zset    announce: ip -> last announce (unix ms), the expiry index
//	<hash>:last_announce                 string  announce: datetime of the latest announce (idle timeout)
//	<hash>:racks                         set     announce: racks seen in this transfer
//	<hash>:rack:<rack>:left              zset    announce: current leechers of the rack -> left (election order)
//	<hash>:rack:<rack>:since             zset    announce: current leechers of the rack -> when they joined (unix ms; election ties)
//	<hash>:rack:<rack>:stalls            string  announce: leecher announces since the rack last made progress
//	<hash>:complete, :incomplete         string  announce: sizes of peers:S and peers:L (SCARD sorts on miniredis)
//	<hash>:completions                   string  announce: count of completed events (scrape "downloaded")
//	<hash>:peer:<ip>:stalls              string  announce: announces of a representative without progress (paused: the limit)
//	<hash>:deactivations                 set     deactivate: datetimes under which this hash's keys were renamed
//
// <hash>:deactivations is the one key deactivation does not rename: it is the
// index that finds the renamed keys without a keyspace scan.

// Global keys.
const (
	keyRacks           = "racks"
	keyTransfers       = "transfers"
	keyActiveTransfers = "active_transfers"
	keyRackPrefix      = "rack:"
)

// Peer classes: the last segment of the peers and rack sets.
const (
	classSeen    = "N" // every peer seen
	classReps    = "R" // current representatives
	classSeeders = "S" // current seeders
	classLeech   = "L" // current leechers (peers:L only; per rack see rackLeft)
)

// transferFields are the per-transfer string keys, <hash>:<field>.
var transferFields = []string{
	"length", "name", "registered", "deregistered",
	"first_started", "last_started", "first_completed", "last_completed",
	"torrent", "last_announce", "complete", "incomplete", "completions",
}

// transferSets are the per-transfer keys of other types, <hash>:<suffix>.
var transferSets = []string{"peers:N", "peers:R", "peers:S", "peers:L", "seen", "racks"}

// rackSuffixes are the per-transfer, per-rack keys, <hash>:rack:<rack>:<suffix>.
var rackSuffixes = []string{"N", "R", "S", "left", "since", "stalls"}

// peerFields are the per-peer string keys, <hash>:peer:<ip>:<field>.
var peerFields = []string{
	"compact", "port", "peer_id", "key", "last_event", "seeder",
	"downloaded", "left", "uploaded", "rack", "hostname", "stalls",
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

// tkeys builds the keys of one transfer from its key prefix: <hash> for an
// active transfer, <datetime>:<hash> for a deactivated one.
type tkeys string

func transferKeys(h InfoHash) tkeys { return tkeys(h.String()) }

func (k tkeys) field(name string) string     { return string(k) + ":" + name }
func (k tkeys) peers(class string) string    { return string(k) + ":peers:" + class }
func (k tkeys) rack(rack, sfx string) string { return string(k) + ":rack:" + rack + ":" + sfx }
func (k tkeys) peer(ip, field string) string { return string(k) + ":peer:" + ip + ":" + field }
func (k tkeys) event(ip, event string) string {
	return string(k) + ":peer:" + ip + ":event:" + event
}
func (k tkeys) deactivations() string { return string(k) + ":deactivations" }

// archived is the prefix deactivation renames a transfer's keys under.
func archived(h InfoHash, at string) tkeys { return tkeys(at + ":" + h.String()) }

// luaKeys is the Lua half of this file: the same builders for scripts. Every
// script starts with it. h is the transfer's key prefix (see tkeys).
var luaKeys = `
local K = {}
K.racks = '` + keyRacks + `'
K.transfers = '` + keyTransfers + `'
K.active = '` + keyActiveTransfers + `'
function K.rack(rack) return '` + keyRackPrefix + `' .. rack end
function K.field(h, name) return h .. ':' .. name end
function K.peers(h, class) return h .. ':peers:' .. class end
function K.rackset(h, rack, sfx) return h .. ':rack:' .. rack .. ':' .. sfx end
function K.peer(h, ip, field) return h .. ':peer:' .. ip .. ':' .. field end
function K.event(h, ip, event) return h .. ':peer:' .. ip .. ':event:' .. event end
function K.deactivations(h) return h .. ':deactivations' end
-- peer strings: ip:port, IPv6 as [ip]:port
function K.peerstr(ip, port)
  if string.find(ip, ':', 1, true) then return '[' .. ip .. ']:' .. port end
  return ip .. ':' .. port
end
function K.peerip(p)
  local ip = string.match(p, '^(.*):%d+$')
  if string.sub(ip, 1, 1) == '[' then ip = string.sub(ip, 2, -2) end
  return ip
end
K.transfer_fields = {` + luaList(transferFields) + `}
K.transfer_sets = {` + luaList(transferSets) + `}
K.rack_suffixes = {` + luaList(rackSuffixes) + `}
K.peer_fields = {` + luaList(peerFields) + `}
K.events = {` + luaList(events) + `}
`

func luaList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
