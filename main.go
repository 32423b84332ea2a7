// Command todo-backend serves each user's todo tasks from PostgreSQL to a
// frontend that signs users in with Better Auth and sends a JWT.
package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is stamped by make build (-ldflags -X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "todo-backend: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program; main only wires it to the process, so tests can
// start the real thing with their own environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "token":
			return runToken(args[2:], getenv, stdout, stderr)
		case "-version", "--version", "version":
			fmt.Fprintln(stdout, "todo-backend", version)
			return nil
		}
		return fmt.Errorf("unknown argument %q (usage: todo-backend [-version | token [-ttl 1h] USER_ID])", args[1])
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	db, prepared, err := openDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	warnIfFewSlots(ctx, db, cfg.dbMaxConns, logger)
	if err := applySchema(ctx, db); err != nil {
		return err
	}
	store, err := openStore(ctx, db, storeOptions{prepared: prepared, batchMax: cfg.dbBatchMax, logger: logger,
		quotaTasks: int64(cfg.quotaTasks), quotaBytes: int64(cfg.quotaBytes)})
	if err != nil {
		return err
	}
	defer store.Close()

	var keys keySource // BETTER_AUTH_URL's JWKS, when set
	if cfg.authOrigin != "" {
		cache := newJWKSCache(cfg.jwksURL, logger)
		cache.start(ctx)
		keys = cache
	}
	verifier := newVerifiers(cfg, keys)
	stats := newMetrics(store)
	conns := newConnTracker()
	app, handler := newServer(logger, store, verifier, cfg, stats)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnState:         conns.track,
	}
	tcp, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	listener := &drainingListener{Listener: tcp}

	// Metrics get a listener of their own, never the public port. Both
	// listen before either serves, so "listening" comes last in the log,
	// when everything is up.
	metricsErr := make(chan error, 1)
	var metricsSrv *http.Server
	if cfg.metricsAddr != "" {
		metricsListener, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			tcp.Close()
			return fmt.Errorf("METRICS_ADDR: listen on %s: %w", cfg.metricsAddr, err)
		}
		logger.Info("metrics listening", "addr", metricsListener.Addr().String())
		metricsSrv = &http.Server{Handler: stats.handler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { metricsErr <- metricsSrv.Serve(metricsListener) }()
	}
	logger.Info("listening", "addr", listener.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(listener) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case err := <-metricsErr:
		srv.Close()
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	if metricsSrv != nil {
		defer metricsSrv.Close()
	}

	logger.Info("shutting down", "lame_duck", cfg.lameDuck.String(), "timeout", cfg.shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := drain(shutdownCtx, app, cfg.lameDuck, srv, listener, conns, serveErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// runToken prints an HS256 token for each USER_ID, one per line, so the API
// can be tried with curl (and loaded by scripts/load.sh); it needs
// BETTER_AUTH_SECRET but no database.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("token", flag.ContinueOnError)
	flags.SetOutput(stderr)
	ttl := flags.Duration("ttl", time.Hour, "how long the token is valid")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: todo-backend token [-ttl 1h] USER_ID... (one token per line)")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return errors.New("token: give at least one USER_ID")
	}
	for _, userID := range flags.Args() {
		if !usableUserID(userID) {
			return fmt.Errorf("token: USER_ID must be 1 to %d bytes, without NUL", maxUserIDBytes)
		}
	}
	if *ttl <= 0 {
		return errors.New("token: -ttl must be positive")
	}
	settings, err := loadTokenSettings(getenv, true)
	if err != nil {
		return err
	}
	now := time.Now()
	claimName := settings.userClaim
	if claimName == "" {
		claimName = defaultUserClaims[0]
	}
	signer := newHS256Verifier(settings.secret, "", "", "")
	out := bufio.NewWriter(stdout)
	for _, userID := range flags.Args() {
		claims := map[string]any{claimName: userID, "iat": now.Unix(), "exp": now.Add(*ttl).Unix()}
		if settings.issuer != "" {
			claims["iss"] = settings.issuer
		}
		if settings.audience != "" {
			claims["aud"] = settings.audience
		}
		token, err := signer.Sign(claims)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		fmt.Fprintln(out, token)
	}
	return out.Flush()
}
