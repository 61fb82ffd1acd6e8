package storage

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Announces on an external Redis go out in batches: the announce scripts of
// concurrent requests are written to Redis together, as one pipeline, and
// their replies read together. Each announce is still one script run, atomic
// on its own, and one round trip; what a batch saves is the system calls,
// the connection handling and the wake-ups that each request otherwise
// pays on both sides, which on a loaded tracker cost more than the script.
//
// Batches form on their own, with no timer: a batcher takes what is queued
// when it is free, so a lone announce goes out at once and a busy tracker
// sends as many as waited. batchWorkers batches may be in flight at once,
// so that Redis has the next one while the tracker reads the replies of the
// last.
//
// A batch fails as a whole when its connection does (every announce in it
// gets the error; none is sent again: a lost reply may hide a script that
// ran). A request whose context ends while it waits returns at once; if its
// script was sent already, it runs, as a call whose reply was lost.
// The embedded store keeps one call per announce: its client is swapped
// under the gate when the store is rebuilt, and miniredis gains nothing
// from batching.
const (
	batchWorkers = 2
	batchMax     = 128
)

// batchReq is one announce waiting for its batch.
type batchReq struct {
	ctx  context.Context
	args []any
	res  []any
	err  error
	done chan struct{}
}

// batcher feeds queued announce scripts to Redis in pipelines.
type batcher struct {
	c     *redis.Client
	queue chan *batchReq
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newBatcher(c *redis.Client) *batcher {
	b := &batcher{c: c, queue: make(chan *batchReq, batchMax), stop: make(chan struct{})}
	for range batchWorkers {
		b.wg.Go(b.work)
	}
	return b
}

// run queues one announce script and waits for its reply or for ctx.
func (b *batcher) run(ctx context.Context, args []any) ([]any, error) {
	r := &batchReq{ctx: ctx, args: args, done: make(chan struct{})}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stop:
		return nil, redis.ErrClosed
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops the workers; requests still queued fail.
func (b *batcher) close() {
	close(b.stop)
	b.wg.Wait()
	for {
		select {
		case r := <-b.queue:
			r.err = redis.ErrClosed
			close(r.done)
		default:
			return
		}
	}
}

func (b *batcher) work() {
	batch := make([]*batchReq, 0, batchMax)
	for {
		select {
		case r := <-b.queue:
			batch = append(batch[:0], r)
		case <-b.stop:
			return
		}
	more:
		for len(batch) < batchMax {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
			default:
				break more
			}
		}
		b.send(batch)
		clear(batch)
	}
}

// send runs one batch: EVALSHA for each live request, then EVAL for those
// Redis did not have the script for (a restarted or new master): those did
// not run, so sending them again is no retry.
func (b *batcher) send(batch []*batchReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// The batch has a deadline of its own, a call's; each waiter gives up
	// at its own.
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmds := b.pipe(ctx, live, func(p redis.Pipeliner, r *batchReq) *redis.Cmd {
		return p.EvalSha(ctx, scriptAnnounce.Hash(), nil, r.args...)
	})
	var again []*batchReq
	for i, r := range live {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again = append(again, r)
			continue
		}
		r.res, r.err = cmds[i].Slice()
		close(r.done)
	}
	if len(again) == 0 {
		return
	}
	cmds = b.pipe(ctx, again, func(p redis.Pipeliner, r *batchReq) *redis.Cmd {
		return scriptAnnounce.Eval(ctx, p, nil, r.args...)
	})
	for i, r := range again {
		r.res, r.err = cmds[i].Slice()
		close(r.done)
	}
}

func (b *batcher) pipe(ctx context.Context, reqs []*batchReq, cmd func(redis.Pipeliner, *batchReq) *redis.Cmd) []*redis.Cmd {
	p := b.c.Pipeline()
	cmds := make([]*redis.Cmd, len(reqs))
	for i, r := range reqs {
		cmds[i] = cmd(p, r)
	}
	p.Exec(ctx) // each command carries its own error
	return cmds
}
