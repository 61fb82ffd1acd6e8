// Package app assembles the racktracker program from its parts: from a
// composed Config it opens the rack map, the resolver and the store, builds
// the tracker, serves its listeners, runs every background loop (the
// tracker's maintenance, the store's snapshots and upkeep, rack-map reloads)
// and shuts all of it down in order. main (after reading flags and the YAML
// file), rtload's tracker process and the end-to-end tests all start the
// tracker through Run, so that what they exercise is the program that ships.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

// Reverse DNS: how long an announce may wait for a name, how long a name
// (or its absence) is remembered, and how many are.
const (
	resolveTimeout = 250 * time.Millisecond
	resolveTTL     = 10 * time.Minute
	resolveEntries = 1 << 16
)

// shutdownTimeout bounds the HTTP drain at the end of Run, and then, apart,
// the final snapshot.
const shutdownTimeout = 10 * time.Second

// Options are what Run needs besides the config: where to log, and the
// hooks through which its callers (main, the load tool, tests) take part.
type Options struct {
	// Config is the whole program's configuration; Run validates it again.
	Config Config
	// Logger receives every log line; nil discards them.
	Logger *slog.Logger
	// Version is logged at start.
	Version string

	// Reload and RackMap reload the rack map: on every value received from
	// Reload (main passes SIGHUP), Run calls RackMap and swaps in the map it
	// returns; a map that does not load keeps the old one. Other sections
	// take effect on restart only. Either nil: no reloads.
	Reload  <-chan os.Signal
	RackMap func() (rackmap.Config, error)

	// Wrap, when set, wraps the public listener's handler (the announce,
	// scrape and health endpoints): the load tool adds its hello-world
	// baseline beside them this way.
	Wrap func(http.Handler) http.Handler

	// Started, when set, is called once every listener is bound and served
	// and every background loop runs, with the bound addresses.
	Started func(Started)
}

// Started is what Run tells Options.Started.
type Started struct {
	Listen net.Addr // the public listener (listen)
	Admin  net.Addr // the admin listener (admin.listen); nil without one
	// Store is the open store, for in-process callers that read what the
	// tracker recorded (tests); it is closed when Run returns.
	Store *storage.Store
}

// Run is the whole program: it returns when ctx ends, after an orderly
// shutdown (HTTP drain, background loops, final snapshot, store close), or
// on an error that stops the start, having released what it had opened.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	racks, err := rackmap.New(cfg.Racks.Config)
	if err != nil {
		return fmt.Errorf("racks: %w", err)
	}
	var resolver *rackmap.Resolver
	if cfg.Racks.ResolveHostnames {
		resolver = rackmap.NewResolver(net.DefaultResolver.LookupAddr, resolveTimeout, resolveTTL, resolveEntries)
		defer resolver.Close()
	}

	store, err := storage.Open(ctx, cfg.Storage, storage.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	storeOpen := true
	defer func() {
		if storeOpen {
			store.Close(context.Background())
		}
	}()

	srv := tracker.New(cfg.Config, cfg.Racks.RackPolicy, store, racks, tracker.Options{Logger: log, Resolver: resolver})
	public := srv.Handler()
	if o.Wrap != nil {
		public = o.Wrap(public)
	}

	type listener struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}
	var listeners []listener
	listen := func(name, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		listeners = append(listeners, listener{name, tracker.HTTPServer(h, log), ln})
		return nil
	}
	if err := listen("listen", cfg.Listen, public); err != nil {
		return err
	}
	if cfg.Admin.Listen != "" {
		if err := listen("admin.listen", cfg.Admin.Listen, srv.AdminHandler()); err != nil {
			listeners[0].ln.Close()
			return err
		}
	}

	// Background work; each goroutine is waited for before the store closes.
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Run(bg) })
	wg.Go(func() { store.Run(bg) })
	if o.Reload != nil && o.RackMap != nil {
		wg.Go(func() { reloadRacks(bg, o.Reload, o.RackMap, srv, racks, log) })
	}

	served := make(chan error, len(listeners))
	started := Started{Store: store}
	for _, l := range listeners {
		log.Info("listening", "on", l.name, "addr", l.ln.Addr().String())
		switch l.name {
		case "listen":
			started.Listen = l.ln.Addr()
		case "admin.listen":
			started.Admin = l.ln.Addr()
		}
		go func() { served <- l.srv.Serve(l.ln) }()
	}
	log.Info("started", "version", o.Version, "backend", cfg.Storage.Backend, "handout", cfg.Racks.Handout, "racks", len(racks.Racks()))
	if o.Started != nil {
		o.Started(started)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		runErr = fmt.Errorf("http server: %w", err)
	}

	// Order: drain HTTP, stop background loops, final snapshot, close.
	drain, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, l := range listeners {
		if err := l.srv.Shutdown(drain); err != nil {
			log.Warn("http drain incomplete", "on", l.name, "err", err)
		}
	}
	stopBG()
	wg.Wait()
	storeOpen = false
	// The final snapshot gets its own time: a drain that used all of its
	// own must not cost the writes since the last periodic snapshot.
	final, cancelFinal := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelFinal()
	if err := store.Close(final); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("close storage: %w", err))
	}
	log.Info("stopped")
	return runErr
}

// reloadRacks swaps the rack map for the one load returns on every value
// from reload; a config or hosts file that does not load keeps the old map.
func reloadRacks(ctx context.Context, reload <-chan os.Signal, load func() (rackmap.Config, error), srv *tracker.Server, current *rackmap.Map, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		}
		cfg, err := load()
		if err != nil {
			log.Error("reload: keeping the current rack map", "err", err)
			continue
		}
		m, err := rackmap.New(cfg)
		if err != nil {
			log.Error("reload: keeping the current rack map", "err", err)
			continue
		}
		srv.SetRacks(m)
		log.Info("reloaded rack map", "changes", m.Diff(current))
		current = m
	}
}

// Running is a program Start started, with its bound addresses and store.
type Running struct {
	Started
	stop context.CancelFunc
	done chan error
}

// Start runs the program in a goroutine, for callers that go on in the same
// process (tests): it returns once Run serves, or with Run's error when the
// start fails. Stop ends it.
func Start(o Options) (*Running, error) {
	ctx, stop := context.WithCancel(context.Background())
	r := &Running{stop: stop, done: make(chan error, 1)}
	started := make(chan Started, 1)
	then := o.Started
	o.Started = func(s Started) {
		if then != nil {
			then(s)
		}
		started <- s
	}
	go func() { r.done <- Run(ctx, o) }()
	select {
	case r.Started = <-started:
		return r, nil
	case err := <-r.done:
		stop()
		return nil, err
	}
}

// Stop shuts the program down in Run's order and returns Run's error.
func (r *Running) Stop() error {
	r.stop()
	return <-r.done
}
