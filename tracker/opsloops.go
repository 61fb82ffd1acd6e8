package tracker

import (
	"context"
	"sync"
)

// runOps starts the loops that serve the operator rather than the clients:
// the request summary, the timeline sampler that also judges stuck racks,
// and the storage probe behind racktracker_storage_up. Run waits for them
// through wg.
func (s *Server) runOps(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { s.summarize(ctx, summaryEvery) })
	wg.Go(func() { s.sampleLoop(ctx) })
	wg.Go(func() { s.probe(ctx) })
}
