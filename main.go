// Command racktracker is a rack-aware BitTorrent tracker: it serves announce
// and scrape over HTTP, hands peers out so that each rack fetches a payload
// across racks about once, and records every transfer in Redis under a
// documented key layout. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "racktracker: %v\n", err)
		os.Exit(1)
	}
}

// Reverse DNS: how long an announce may wait for a name, how long a name
// (or its absence) is remembered, and how many are.
const (
	resolveTimeout = 250 * time.Millisecond
	resolveTTL     = 10 * time.Minute
	resolveEntries = 1 << 16
)

// shutdownTimeout bounds the HTTP drain on SIGINT/SIGTERM.
const shutdownTimeout = 10 * time.Second

// run is the whole program; it returns when ctx ends (after an orderly
// shutdown) or on an error that stops the start.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("racktracker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "tracker.yaml", "path of the YAML config; when the default is missing, built-in defaults run")
	logLevel := fs.String("log-level", "info", "log level: debug (adds a line per request), info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text (logfmt) or json (one object per line)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "racktracker", versionString())
		return nil
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel)
	}
	var logHandler slog.Handler
	switch *logFormat {
	case "text":
		logHandler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		logHandler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		return fmt.Errorf("-log-format %q: want text or json", *logFormat)
	}
	log := slog.New(logHandler)

	cfg, err := loadConfig(*configPath, explicit)
	if err != nil {
		return err
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
	if err := listen("listen", cfg.Listen, srv.Handler()); err != nil {
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
	// Registered before anything is served, so a SIGHUP never finds the
	// default action (which would end the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() { reloadOnHUP(bg, hup, *configPath, explicit, srv, racks, log) })

	served := make(chan error, len(listeners))
	for _, l := range listeners {
		log.Info("listening", "on", l.name, "addr", l.ln.Addr().String())
		fmt.Fprintf(stdout, "racktracker %s http://%s\n", l.name, l.ln.Addr())
		go func() { served <- l.srv.Serve(l.ln) }()
	}
	log.Info("started", "version", versionString(), "backend", cfg.Storage.Backend, "handout", cfg.Racks.Handout, "racks", len(racks.Racks()))

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

// reloadOnHUP rereads the racks section of the config on SIGHUP and swaps
// the rack map; a config or hosts file that does not load keeps the old map.
// Other sections take effect on restart only.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, mustExist bool, srv *tracker.Server, current *rackmap.Map, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := loadConfig(path, mustExist)
		if err != nil {
			log.Error("reload: keeping the current rack map", "err", err)
			continue
		}
		m, err := rackmap.New(cfg.Racks.Config)
		if err != nil {
			log.Error("reload: keeping the current rack map", "err", err)
			continue
		}
		srv.SetRacks(m)
		log.Info("reloaded rack map", "changes", m.Diff(current))
		current = m
	}
}
