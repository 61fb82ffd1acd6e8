package tracker

import (
	"context"
	"sync"
)

// runOps starts the loops that serve the operator rather than the clients:
// the request summary. Run waits for them through wg.
func (s *Server) runOps(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { s.summarize(ctx, summaryEvery) })
}
