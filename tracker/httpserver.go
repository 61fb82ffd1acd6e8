package tracker

import (
	"log/slog"
	"net/http"
	"time"
)

// HTTPServer returns the http.Server every listener of the program uses
// to serve h: timeouts so that a slow or silent client cannot hold a
// connection and its goroutine for long, a bound on request headers, and
// net/http's own complaints logged at warn through log.
func HTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes, // the handler enforces HeaderLimit
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
