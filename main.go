// Command racktracker is a rack-aware BitTorrent tracker: it serves announce
// and scrape over HTTP, hands peers out so that each rack fetches a payload
// across racks about once, and records every transfer in Redis under a
// documented key layout. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"racktracker/app"
	"racktracker/rackmap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "racktracker: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program: flags, logging, the config file, then app.Run,
// which returns when ctx ends (after an orderly shutdown) or on an error
// that stops the start.
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

	cfg, err := loadConfig(*configPath, explicit)
	if err != nil {
		return err
	}
	// Registered before anything is served, so a SIGHUP never finds the
	// default action (which would end the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return app.Run(ctx, app.Options{
		Config:  cfg,
		Logger:  slog.New(logHandler),
		Version: versionString(),
		// SIGHUP rereads the racks section of the config file.
		Reload: hup,
		RackMap: func() (rackmap.Config, error) {
			c, err := loadConfig(*configPath, explicit)
			return c.Racks.Config, err
		},
		Started: func(s app.Started) {
			fmt.Fprintf(stdout, "racktracker listen http://%s\n", s.Listen)
			if s.Admin != nil {
				fmt.Fprintf(stdout, "racktracker admin.listen http://%s\n", s.Admin)
			}
		},
	})
}
