package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Uploads of .torrent files are the one request whose size the client
// chooses, and a .torrent is decoded into memory whole. So before any
// decoding:
//   - the body is bounded (maxTorrentSize) and read only once the bytes it
//     may hold fit in a budget shared by every upload in flight
//     (uploadBudget), so parallel uploads queue rather than add up;
//   - scanTorrent walks the bencode iteratively, without allocating, and
//     refuses nesting deeper than maxBencodeDepth (a recursive decoder
//     would overflow its stack on megabytes of "l") and more values than
//     maxBencodeValues (each costs memory once decoded).
const (
	maxBencodeDepth  = 32
	maxBencodeValues = 1 << 20
	// uploadBudget is the most upload bytes held at once, each upload
	// counted at uploadCost of its size.
	uploadBudget = 64 << 20
	// uploadWait is how long an upload waits for the budget before it is
	// answered 503.
	uploadWait = 10 * time.Second
)

// uploadCost is what an upload of n bytes may hold at once: the body, the
// copy stored in Redis, and the decoded metainfo.
func uploadCost(n int64) int64 { return 3*n + 64<<10 }

// byteBudget is a weighted semaphore: acquire waits until n bytes are free.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
	wake chan struct{} // closed and replaced at every release
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, wake: make(chan struct{})}
}

func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.max) // a single upload always fits alone
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) release(n int64) {
	n = min(n, b.max)
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

var errNotBencode = errors.New("bencode syntax")

// scanTorrent checks that b is one bencoded dictionary, optionally followed
// by whitespace, nested at most maxBencodeDepth deep and holding at most
// maxBencodeValues values. It allocates nothing and runs in one pass, so it
// is safe on any input; only what it accepts is handed to the decoder.
func scanTorrent(b []byte) error {
	if len(b) == 0 || b[0] != 'd' {
		return errors.New("not a bencoded dictionary")
	}
	// Per open container: whether it is a dictionary, and for one, whether
	// the next value is a key (keys must be strings).
	var stack [maxBencodeDepth]struct{ dict, wantKey bool }
	depth, values := 0, 0
	i := 0
	for {
		if i >= len(b) {
			return fmt.Errorf("%w: truncated at byte %d", errNotBencode, i)
		}
		c := b[i]
		if c == 'e' {
			if depth == 0 {
				return fmt.Errorf("%w: unexpected end at byte %d", errNotBencode, i)
			}
			if top := stack[depth-1]; top.dict && !top.wantKey {
				return fmt.Errorf("%w: dictionary key without a value at byte %d", errNotBencode, i)
			}
			depth--
			i++
			if depth == 0 {
				break
			}
			continue
		}
		values++
		if values > maxBencodeValues {
			return fmt.Errorf("more than %d bencoded values: no .torrent this tracker serves is that large", maxBencodeValues)
		}
		isKey := depth > 0 && stack[depth-1].dict && stack[depth-1].wantKey
		if isKey && (c < '0' || c > '9') {
			return fmt.Errorf("%w: dictionary key is not a string at byte %d", errNotBencode, i)
		}
		if depth > 0 && stack[depth-1].dict {
			stack[depth-1].wantKey = !stack[depth-1].wantKey
		}
		switch {
		case c == 'd' || c == 'l':
			if depth == maxBencodeDepth {
				return fmt.Errorf("bencode nested deeper than %d levels: not a .torrent", maxBencodeDepth)
			}
			stack[depth] = struct{ dict, wantKey bool }{c == 'd', true}
			depth++
			i++
		case c == 'i':
			j := i + 1
			if j < len(b) && b[j] == '-' {
				j++
			}
			start := j
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == start || j-start > 20 || j >= len(b) || b[j] != 'e' {
				return fmt.Errorf("%w: bad integer at byte %d", errNotBencode, i)
			}
			i = j + 1
		case c >= '0' && c <= '9':
			n, j := 0, i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				if j-i >= 10 {
					return fmt.Errorf("%w: string length too long at byte %d", errNotBencode, i)
				}
				n = n*10 + int(b[j]-'0')
				j++
			}
			if j >= len(b) || b[j] != ':' || n > len(b)-j-1 {
				return fmt.Errorf("%w: bad or truncated string at byte %d", errNotBencode, i)
			}
			i = j + 1 + n
		default:
			return fmt.Errorf("%w: unexpected byte %q at %d", errNotBencode, c, i)
		}
		if depth == 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return fmt.Errorf("%w: %d bytes after the dictionary", errNotBencode, len(b)-i)
		}
	}
	return nil
}
