package tracker

import (
	"fmt"
	"math"
	"strings"
)

// clientError is a request the client got wrong. Its text is sent back as the
// bencoded failure reason (SPEC section 5), so it names the offending
// parameter and never carries anything internal; every other error is logged
// and answered generically.
type clientError string

func (e clientError) Error() string { return string(e) }

// maxQueryLen bounds the work and memory one request can cost before it is
// rejected. Real announces are a few hundred bytes; 8 KiB still fits a scrape
// of well over a hundred fully escaped hashes.
const maxQueryLen = 8 << 10

// maxScrapeHashes bounds the storage reads one scrape can cause.
const maxScrapeHashes = 256

// idLen is the length of an info_hash and of a peer_id (BEP 3).
const idLen = 20

var errTooLarge = clientError("request too large")

// announceQuery is an announce request as the client sent it: validated for
// shape only. Deciding what to believe (the ip parameter) and clamping numwant
// is the caller's job, because both depend on config.
type announceQuery struct {
	InfoHash   [20]byte
	PeerID     [20]byte
	Port       uint16
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      string // "", "started", "completed", "stopped" or "paused"
	Numwant    int    // -1 when absent or unreadable
	Compact    bool
	NoPeerID   bool
	Key        string
	TrackerID  string
	IP         string // raw ip parameter, "" when absent
}

// Bits of the announce parameters already seen, so that a repeated one is
// ignored (the first wins) without a map.
const (
	seenInfoHash = 1 << iota
	seenPeerID
	seenPort
	seenUploaded
	seenDownloaded
	seenLeft
	seenEvent
	seenNumwant
	seenCompact
	seenNoPeerID
	seenKey
	seenTrackerID
	seenIP
)

// parseAnnounce parses the raw query of GET /announce.
//
// Only '&' separates parameters: a ';' is data, as in net/url since Go 1.17
// and in opentracker. Keys and values are percent-decoded with form rules, so
// '+' is a space byte, also inside info_hash and peer_id. That is what
// net/url and chihaya do, and what clients that escape through a form
// encoder mean: anacrolix/torrent v1.59.1 sends byte 0x20 of a hash as '+'
// in a scrape (its announce sends %20 since anacrolix/torrent#534, to suit
// trackers such as opentracker that keep '+' literal). A client that means
// byte 0x2B sends %2B, as BEP 3 asks of every byte outside [0-9A-Za-z.-_~].
//
// Parameters the tracker does not use, and repeats of one it does, are
// ignored without being decoded, so a lax client's odd extra parameter
// cannot fail its announce. The exception is a second info_hash: an announce
// is about one transfer, and picking one of two would be a guess.
func parseAnnounce(rawQuery string) (announceQuery, error) {
	q := announceQuery{Numwant: -1, Compact: true}
	if len(rawQuery) > maxQueryLen {
		return announceQuery{}, errTooLarge
	}
	var seen uint
	// first reports whether this is the first occurrence of a parameter.
	first := func(bit uint) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	for rest := rawQuery; rest != ""; {
		var param string
		param, rest, _ = strings.Cut(rest, "&")
		rawKey, rawValue, _ := strings.Cut(param, "=")
		key, err := unescape(rawKey)
		if err != nil {
			continue // not a name we know, so not ours to judge
		}
		switch key {
		case "info_hash":
			if !first(seenInfoHash) {
				return announceQuery{}, clientError("duplicate info_hash")
			}
			if err := decodeID(key, rawValue, &q.InfoHash); err != nil {
				return announceQuery{}, err
			}
		case "peer_id":
			if first(seenPeerID) {
				if err := decodeID(key, rawValue, &q.PeerID); err != nil {
					return announceQuery{}, err
				}
			}
		case "port":
			if first(seenPort) {
				v, err := unescapeValue(key, rawValue)
				if err != nil {
					return announceQuery{}, err
				}
				n, ok := parseDecimal(v)
				if !ok || n < 1 || n > math.MaxUint16 {
					return announceQuery{}, invalid(key, v)
				}
				q.Port = uint16(n)
			}
		case "uploaded":
			if first(seenUploaded) {
				if err := parseCounter(key, rawValue, &q.Uploaded); err != nil {
					return announceQuery{}, err
				}
			}
		case "downloaded":
			if first(seenDownloaded) {
				if err := parseCounter(key, rawValue, &q.Downloaded); err != nil {
					return announceQuery{}, err
				}
			}
		case "left":
			if first(seenLeft) {
				if err := parseCounter(key, rawValue, &q.Left); err != nil {
					return announceQuery{}, err
				}
			}
		case "event":
			if first(seenEvent) {
				v, err := unescapeValue(key, rawValue)
				if err != nil {
					return announceQuery{}, err
				}
				// Constants rather than v, so that the query's backing
				// memory is not kept alive by a stored event.
				switch v {
				case "", "empty": // BEP 3: "empty" is the same as absent
					q.Event = ""
				case "started":
					q.Event = "started"
				case "completed":
					q.Event = "completed"
				case "stopped":
					q.Event = "stopped"
				case "paused": // BEP 21: a partial seed that stopped downloading
					q.Event = "paused"
				default:
					return announceQuery{}, clientError(fmt.Sprintf("unknown event %q", shorten(v)))
				}
			}
		case "numwant":
			if first(seenNumwant) {
				// A client that asks for nonsense still deserves peers: the
				// caller applies its default instead of failing the announce.
				if v, err := unescape(rawValue); err == nil {
					if n, ok := parseDecimal(v); ok {
						q.Numwant = int(min(n, math.MaxInt32))
					}
				}
			}
		case "compact":
			if first(seenCompact) {
				v, err := unescapeValue(key, rawValue)
				if err != nil {
					return announceQuery{}, err
				}
				// Only an explicit 0 turns it off: compact is what every
				// current client expects (BEP 23).
				q.Compact = v != "0"
			}
		case "no_peer_id":
			if first(seenNoPeerID) {
				v, err := unescapeValue(key, rawValue)
				if err != nil {
					return announceQuery{}, err
				}
				q.NoPeerID = v == "1"
			}
		case "key":
			if first(seenKey) {
				if q.Key, err = unescapeValue(key, rawValue); err != nil {
					return announceQuery{}, err
				}
			}
		case "trackerid":
			if first(seenTrackerID) {
				if q.TrackerID, err = unescapeValue(key, rawValue); err != nil {
					return announceQuery{}, err
				}
			}
		case "ip":
			if first(seenIP) {
				if q.IP, err = unescapeValue(key, rawValue); err != nil {
					return announceQuery{}, err
				}
			}
		}
	}
	switch {
	case seen&seenInfoHash == 0:
		return announceQuery{}, clientError("missing info_hash")
	case seen&seenPeerID == 0:
		return announceQuery{}, clientError("missing peer_id")
	case seen&seenPort == 0:
		return announceQuery{}, clientError("missing port")
	case seen&seenLeft == 0:
		// Required by BEP 3, and the tracker cannot tell a seeder from a
		// leecher without it. uploaded and downloaded only feed statistics,
		// so their absence means zero.
		return announceQuery{}, clientError("missing left")
	}
	return q, nil
}

// parseScrape parses the raw query of GET /scrape (BEP 48): the distinct
// info_hashes in the order first given. None at all is valid; what that
// means is the caller's decision. Decoding follows parseAnnounce.
func parseScrape(rawQuery string) ([][20]byte, error) {
	if len(rawQuery) > maxQueryLen {
		return nil, errTooLarge
	}
	var hashes [][20]byte
	for rest := rawQuery; rest != ""; {
		var param string
		param, rest, _ = strings.Cut(rest, "&")
		rawKey, rawValue, _ := strings.Cut(param, "=")
		if key, err := unescape(rawKey); err != nil || key != "info_hash" {
			continue
		}
		var h [20]byte
		if err := decodeID("info_hash", rawValue, &h); err != nil {
			return nil, err
		}
		// A linear search: the size limit keeps this under a few hundred
		// hashes, where it beats building a set.
		dup := false
		for _, seen := range hashes {
			if seen == h {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if len(hashes) == maxScrapeHashes {
			return nil, clientError(fmt.Sprintf("too many info_hash, at most %d", maxScrapeHashes))
		}
		if hashes == nil {
			// One allocation for the common scrape; repeats only shrink it.
			hashes = make([][20]byte, 0, min(strings.Count(rawQuery, "info_hash"), maxScrapeHashes))
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// decodeID percent-decodes a binary parameter straight into dst, without a
// temporary string, and counts every byte so that the error says how long
// the value really was.
func decodeID(name, s string, dst *[20]byte) error {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) {
				return badEscape(name)
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 15 || lo > 15 {
				return badEscape(name)
			}
			c = hi<<4 | lo
			i += 2
		case '+':
			c = ' '
		}
		if n < len(dst) {
			dst[n] = c
		}
		n++
	}
	if n != len(dst) {
		return clientError(fmt.Sprintf("%s must be %d bytes, got %d", name, idLen, n))
	}
	return nil
}

// parseCounter reads uploaded, downloaded or left: byte counts, so a sign is
// as wrong as a letter.
func parseCounter(name, rawValue string, dst *int64) error {
	v, err := unescapeValue(name, rawValue)
	if err != nil {
		return err
	}
	n, ok := parseDecimal(v)
	if !ok || n > math.MaxInt64 {
		return invalid(name, v)
	}
	*dst = int64(n)
	return nil
}

// parseDecimal reads an unsigned decimal number. Unlike strconv it refuses a
// leading '+' and saturates instead of failing on overflow, so that each
// caller applies its own upper bound in one comparison.
func parseDecimal(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		if n > (math.MaxUint64-uint64(d))/10 {
			n = math.MaxUint64
			continue // keep checking that the rest are digits
		}
		n = n*10 + uint64(d)
	}
	return n, true
}

// unescapeValue is unescape with the client error that names the parameter.
func unescapeValue(name, s string) (string, error) {
	v, err := unescape(s)
	if err != nil {
		return "", badEscape(name)
	}
	return v, nil
}

// errBadEscape only signals unescape's failure; callers turn it into a
// client error that names the parameter.
var errBadEscape = clientError("bad percent-encoding")

// unescape percent-decodes a key or value with form rules ('+' is a space).
// Nearly every value a client sends is plain, so that case returns s itself
// and allocates nothing.
func unescape(s string) (string, error) {
	i := strings.IndexAny(s, "%+")
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) {
				return "", errBadEscape
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 15 || lo > 15 {
				return "", errBadEscape
			}
			c = hi<<4 | lo
			i += 2
		case '+':
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// unhex returns the value of a hex digit, or 0xff for anything else.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0xff
}

func badEscape(name string) error {
	return clientError("bad percent-encoding in " + name)
}

func invalid(name, value string) error {
	return clientError(fmt.Sprintf("invalid %s %q", name, shorten(value)))
}

// shorten bounds how much of a client's own garbage is echoed back to it in
// a failure reason (and into logs).
func shorten(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
