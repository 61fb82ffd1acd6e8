package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// labClientMain is the anacrolix client the lab runs in a host's namespace:
// the test binary re-executed with labClientEnv set. It downloads (or, with
// LAB_SEED=true, seeds) the .torrent at LAB_TORRENT into LAB_DIR, finding
// peers through the tracker alone, prints "complete <unix ns>" when it holds
// the payload, keeps seeding, and closes cleanly (announcing "stopped") on
// SIGTERM.
func labClientMain(ctx context.Context) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "lab client: "+format+"\n", args...)
		return 1
	}
	mi, err := metainfo.LoadFromFile(os.Getenv("LAB_TORRENT"))
	if err != nil {
		return fail("%v", err)
	}
	seed := os.Getenv("LAB_SEED") == "true"
	cfg := hostClientConfig(os.Getenv("LAB_DIR"))
	cfg.ListenPort = 6881
	cfg.Slogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		return fail("%v", err)
	}
	defer cl.Close()
	spec, err := torrent.TorrentSpecFromMetaInfoErr(mi)
	if err != nil {
		return fail("%v", err)
	}
	spec.Trackers = nil
	tor, _, err := cl.AddTorrentSpec(spec)
	if err != nil {
		return fail("%v", err)
	}
	<-tor.GotInfo()
	if seed {
		if err := tor.VerifyDataContext(ctx); err != nil {
			return fail("verify: %v", err)
		}
		select {
		case <-tor.Complete().On():
		case <-time.After(30 * time.Second):
			return fail("seeder: payload incomplete after verification")
		}
	} else {
		tor.DownloadAll()
	}
	// The tracker comes last, so that a seeder's first announce says left=0.
	tor.AddTrackers([][]string{{mi.Announce}})
	select {
	case <-tor.Complete().On():
		fmt.Printf("complete %d\n", time.Now().UnixNano())
	case <-ctx.Done():
		return 0
	}
	<-ctx.Done()
	return 0
}
