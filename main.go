// Command todo-backend serves each user's todo tasks from PostgreSQL to a
// frontend that signs users in with Better Auth and sends a JWT.
package main

import (
	"bufio"
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"
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

	db, err := openDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := applySchema(ctx, db); err != nil {
		return err
	}
	store, err := prepareStore(ctx, db)
	if err != nil {
		return err
	}
	defer store.Close()

	verifier := newVerifiers(cfg, nil)
	if verifier.jwks != nil {
		cache := newJWKSCache(cfg.jwksURL, logger)
		cache.start(ctx)
		verifier.jwks.keys = cache
	}
	stats := newMetrics(store.PoolStats)
	conns := &connTracker{states: map[net.Conn]http.ConnState{}}
	srv := &http.Server{
		Handler:           newServer(logger, store, verifier, cfg, stats),
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
	logger.Info("listening", "addr", listener.Addr().String())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(listener) }()

	// Metrics get a listener of their own, never the public port.
	metricsErr := make(chan error, 1)
	var metricsSrv *http.Server
	if cfg.metricsAddr != "" {
		metricsListener, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			srv.Close()
			return fmt.Errorf("METRICS_ADDR: listen on %s: %w", cfg.metricsAddr, err)
		}
		logger.Info("metrics listening", "addr", metricsListener.Addr().String())
		metricsSrv = &http.Server{Handler: stats.handler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { metricsErr <- metricsSrv.Serve(metricsListener) }()
	}

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

	logger.Info("shutting down", "timeout", cfg.shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := drain(shutdownCtx, srv, listener, conns, serveErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// drain stops the server without failing a request it accepted. Shutdown
// alone drops a request that it reads after it has begun, even on a
// connection accepted just before; so first every connection is told to
// close after its current request, the connections the kernel has already
// queued are accepted, the listener closes, and Shutdown comes only once
// every accepted connection has had its request read. In-flight requests
// then finish, bounded by ctx.
func drain(ctx context.Context, srv *http.Server, listener *drainingListener, conns *connTracker, serveErr <-chan error) error {
	srv.SetKeepAlivesEnabled(false)
	listener.drain()
	select {
	case <-serveErr: // the listener is closed
	case <-ctx.Done():
		return srv.Close()
	}
	for conns.countNew() > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	return srv.Shutdown(ctx)
}

// drainingListener, once drained, keeps accepting for a moment, so that
// connections already in the kernel's queue are served rather than reset,
// and then reports itself closed to end Serve.
type drainingListener struct {
	net.Listener
	draining atomic.Bool
}

const drainAcceptWindow = 100 * time.Millisecond

func (l *drainingListener) drain() {
	l.draining.Store(true)
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Now().Add(drainAcceptWindow))
	} else {
		l.Listener.Close()
	}
}

func (l *drainingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.draining.Load() {
		return nil, net.ErrClosed
	}
	return c, err
}

// connTracker knows each open connection's state, so drain can wait for
// accepted connections that have not yet sent their request.
type connTracker struct {
	mu     sync.Mutex
	states map[net.Conn]http.ConnState
}

func (t *connTracker) track(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if state == http.StateClosed || state == http.StateHijacked {
		delete(t.states, c)
		return
	}
	t.states[c] = state
}

func (t *connTracker) countNew() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, state := range t.states {
		if state == http.StateNew {
			n++
		}
	}
	return n
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
		if userID == "" || len(userID) > maxUserIDBytes || strings.IndexByte(userID, 0) >= 0 {
			return fmt.Errorf("token: USER_ID must be 1 to %d bytes", maxUserIDBytes)
		}
	}
	if *ttl <= 0 {
		return errors.New("token: -ttl must be positive")
	}
	secret, err := loadSecret(getenv)
	if err != nil {
		return err
	}
	now := time.Now()
	claimName := getenv("JWT_USER_CLAIM")
	if claimName == "" {
		claimName = "sub"
	}
	signer := newHS256Verifier(secret, "", "", "")
	out := bufio.NewWriter(stdout)
	for _, userID := range flags.Args() {
		claims := map[string]any{claimName: userID, "iat": now.Unix(), "exp": now.Add(*ttl).Unix()}
		if iss := getenv("JWT_ISSUER"); iss != "" {
			claims["iss"] = iss
		}
		if aud := getenv("JWT_AUDIENCE"); aud != "" {
			claims["aud"] = aud
		}
		token, err := signer.Sign(claims)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		fmt.Fprintln(out, token)
	}
	return out.Flush()
}

// config is everything the server reads from its environment.
type config struct {
	databaseURL     string
	secret          []byte
	addr            string
	cors            corsPolicy
	issuer          string
	audience        string
	userClaim       string
	logLevel        slog.Level
	dbTimeout       time.Duration
	dbWait          time.Duration
	dbMaxConns      int
	shutdownTimeout time.Duration
	rateLimitRPS    float64
	rateLimitBurst  int
	metricsAddr     string // empty: no metrics listener
	authOrigin      string // origin of BETTER_AUTH_URL; empty: no JWKS tokens
	jwksURL         string
	clock           func() time.Time // nil: time.Now; tests pin it
}

// minSecretBytes is the HS256 key size RFC 7518 section 3.2 asks for.
const minSecretBytes = 32

// loadConfig reads and checks every setting; an error names the variable.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{
		issuer:   getenv("JWT_ISSUER"),
		audience: getenv("JWT_AUDIENCE"),
	}

	cfg.databaseURL = getenv("DATABASE_URL")
	if cfg.databaseURL == "" {
		cfg.databaseURL = getenv("NEON_DATABASE_URL")
	}
	if cfg.databaseURL == "" {
		return config{}, errors.New("DATABASE_URL is required (a PostgreSQL URL or key=value DSN; NEON_DATABASE_URL is accepted too)")
	}

	if raw := getenv("BETTER_AUTH_URL"); raw != "" {
		origin, err := betterAuthOrigin(raw)
		if err != nil {
			return config{}, fmt.Errorf("BETTER_AUTH_URL: %w", err)
		}
		cfg.authOrigin = origin
		cfg.jwksURL = origin + "/api/auth/jwks"
	}
	if raw := getenv("JWKS_URL"); raw != "" {
		if cfg.authOrigin == "" {
			return config{}, errors.New("JWKS_URL needs BETTER_AUTH_URL too (its origin is the tokens' iss and aud)")
		}
		if _, err := betterAuthOrigin(raw); err != nil {
			return config{}, fmt.Errorf("JWKS_URL: %w", err)
		}
		cfg.jwksURL = raw
	}

	// With JWKS on, the shared secret is optional; with both, both kinds
	// of token work.
	if getenv("BETTER_AUTH_SECRET") != "" || cfg.authOrigin == "" {
		secret, err := loadSecret(getenv)
		if err != nil {
			return config{}, err
		}
		cfg.secret = secret
	}

	port := getenv("PORT")
	if port == "" {
		port = "8000"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("PORT must be a TCP port number from 0 to 65535, got %q", port)
	}
	cfg.addr = ":" + port

	var err error
	origins := getenv("CORS_ORIGINS")
	if origins == "" {
		origins = "http://localhost:3000"
	}
	if cfg.cors, err = parseCORSOrigins(origins); err != nil {
		return config{}, fmt.Errorf("CORS_ORIGINS: %w", err)
	}

	if name := getenv("JWT_USER_CLAIM"); name != "" {
		if strings.TrimSpace(name) != name {
			return config{}, fmt.Errorf("JWT_USER_CLAIM must be a bare claim name, got %q", name)
		}
		cfg.userClaim = name
	}

	switch level := strings.ToLower(getenv("LOG_LEVEL")); level {
	case "debug":
		cfg.logLevel = slog.LevelDebug
	case "", "info":
		cfg.logLevel = slog.LevelInfo
	case "warn", "warning":
		cfg.logLevel = slog.LevelWarn
	case "error":
		cfg.logLevel = slog.LevelError
	default:
		return config{}, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", level)
	}

	durations := []struct {
		name   string
		target *time.Duration
		value  time.Duration
	}{
		{"DB_TIMEOUT", &cfg.dbTimeout, 5 * time.Second},
		{"DB_WAIT", &cfg.dbWait, 30 * time.Second},
		{"SHUTDOWN_TIMEOUT", &cfg.shutdownTimeout, 15 * time.Second},
	}
	for _, d := range durations {
		*d.target = d.value
		if v := getenv(d.name); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil || parsed <= 0 {
				return config{}, fmt.Errorf("%s must be a positive duration such as 5s, got %q", d.name, v)
			}
			*d.target = parsed
		}
	}

	counts := []struct {
		name     string
		target   *int
		value    int
		min, max int
	}{
		{"DB_MAX_CONNS", &cfg.dbMaxConns, 8, 1, 1000},
		{"RATE_LIMIT_BURST", &cfg.rateLimitBurst, 100, 1, 1_000_000},
	}
	for _, c := range counts {
		*c.target = c.value
		if v := getenv(c.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < c.min || n > c.max {
				return config{}, fmt.Errorf("%s must be a whole number from %d to %d, got %q", c.name, c.min, c.max, v)
			}
			*c.target = n
		}
	}

	if addr := getenv("METRICS_ADDR"); addr != "" {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return config{}, fmt.Errorf("METRICS_ADDR must be host:port such as 127.0.0.1:9090, got %q", addr)
		}
		cfg.metricsAddr = addr
	}

	// Far above what a person clicking in a browser does; 0 turns it off.
	cfg.rateLimitRPS = 50
	if v := getenv("RATE_LIMIT_RPS"); v != "" {
		rps, err := strconv.ParseFloat(v, 64)
		if err != nil || rps < 0 || math.IsInf(rps, 0) || math.IsNaN(rps) {
			return config{}, fmt.Errorf("RATE_LIMIT_RPS must be a number of requests per second (0 turns the limit off), got %q", v)
		}
		cfg.rateLimitRPS = rps
	}
	return cfg, nil
}

func loadSecret(getenv func(string) string) ([]byte, error) {
	secret := getenv("BETTER_AUTH_SECRET")
	if secret == "" {
		return nil, errors.New("BETTER_AUTH_SECRET is required (the HS256 secret shared with Better Auth, at least 32 bytes), unless BETTER_AUTH_URL turns on JWKS tokens")
	}
	if len(secret) < minSecretBytes {
		return nil, fmt.Errorf("BETTER_AUTH_SECRET must be at least %d bytes, got %d", minSecretBytes, len(secret))
	}
	return []byte(secret), nil
}

// openDB opens the pool and waits, with backoff, up to DB_WAIT for the
// database to answer: a Neon compute may be waking from suspend.
func openDB(ctx context.Context, cfg config, logger *slog.Logger) (*sql.DB, error) {
	connector, err := pq.NewConnector(cfg.databaseURL)
	if err != nil {
		// The message may quote the URL, and the URL may hold a password.
		msg := strings.ReplaceAll(err.Error(), cfg.databaseURL, "<redacted>")
		return nil, fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL or DSN: %s", msg)
	}
	db := sql.OpenDB(connector)
	// Sized for a small VM and Neon: idle connections are closed before
	// Neon's 5-minute suspend, and every connection is renewed now and then
	// so a failover or pooler restart is picked up.
	db.SetMaxOpenConns(cfg.dbMaxConns)
	db.SetMaxIdleConns(cfg.dbMaxConns)
	db.SetConnMaxIdleTime(4 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)

	deadline := time.Now().Add(cfg.dbWait)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pingCtx, cancel := context.WithTimeout(ctx, cfg.dbTimeout)
		err := db.PingContext(pingCtx)
		cancel()
		if err == nil {
			return db, nil
		}
		if ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("database: %w", ctx.Err())
		}
		if !isUnavailable(err) || time.Now().Add(backoff).After(deadline) {
			db.Close()
			return nil, fmt.Errorf("database not reachable (waited %s, DB_WAIT): %w", cfg.dbWait, err)
		}
		logger.Warn("database not reachable yet, retrying", "attempt", attempt, "retry_in", backoff.String(), "error", err.Error())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// newVerifiers builds the token verifiers cfg asks for. JWKS tokens must
// carry the origin of BETTER_AUTH_URL as iss and aud (what Better Auth's
// own verifier checks) unless JWT_ISSUER / JWT_AUDIENCE say otherwise, and
// their user id is sub.
func newVerifiers(cfg config, keys keySource) *verifiers {
	v := &verifiers{}
	if cfg.secret != nil {
		v.hs256 = newHS256Verifier(cfg.secret, cfg.issuer, cfg.audience, cfg.userClaim)
	}
	if cfg.authOrigin != "" {
		rules := claimRules{issuer: cfg.authOrigin, audience: cfg.authOrigin, userClaims: []string{"sub"}}
		if cfg.issuer != "" {
			rules.issuer = cfg.issuer
		}
		if cfg.audience != "" {
			rules.audience = cfg.audience
		}
		v.jwks = &jwksVerifier{keys: keys, rules: rules}
	}
	return v
}

// server holds the dependencies every handler shares.
type server struct {
	logger    *slog.Logger
	store     *Store
	verifier  tokenVerifier
	cors      corsPolicy
	limiter   *rateLimiter
	metrics   *metrics
	dbTimeout time.Duration
	now       func() time.Time
	// routeOf names the route pattern a request would match, for requests
	// answered before routing (401s, 429s).
	routeOf func(*http.Request) string
}

// newServer builds the whole HTTP handler: middleware around the routes.
// A nil metrics counts nothing.
func newServer(logger *slog.Logger, store *Store, verifier tokenVerifier, cfg config, stats *metrics) http.Handler {
	s := &server{
		logger:    logger,
		store:     store,
		verifier:  verifier,
		cors:      cfg.cors,
		limiter:   newRateLimiter(cfg.rateLimitRPS, cfg.rateLimitBurst),
		metrics:   stats,
		dbTimeout: cfg.dbTimeout,
		now:       time.Now,
	}
	if cfg.clock != nil {
		s.now = cfg.clock
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, named(routePath(rt.pattern), rt.handler))
	}
	s.routeOf = func(r *http.Request) string { _, pattern := mux.Handler(r); return routePath(pattern) }
	var h http.Handler = routeOrError(mux)
	h = requireAuthUnder("/api", requireAuth(s.verifier, s.now, s.limiter.limitPerUser(s.now, h)), h)
	h = normalizePath(h)
	h = s.recoverPanics(h)
	h = s.cors.middleware(h)
	h = s.logRequests(h)
	return h
}

type route struct {
	pattern string
	handler http.Handler
}

// routes lists the whole API; openapi.json must describe exactly these,
// which a test checks.
func (s *server) routes() []route {
	return []route{
		{"GET /healthz", s.handleHealth()},
		{"GET /readyz", s.handleReady()},
		{"GET /openapi.json", handleOpenAPI()},
		{"GET /api/tasks", s.handleListTasks()},
		{"POST /api/tasks", s.handleCreateTask()},
		{"GET /api/tasks/{id}", s.handleGetTask()},
		{"PUT /api/tasks/{id}", s.handleUpdateTask()},
		{"DELETE /api/tasks/{id}", s.handleDeleteTask()},
		{"PATCH /api/tasks/{id}/complete", s.handleCompleteTask()},
	}
}

// routePath is a pattern without its method: the metrics' route label.
func routePath(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}

// named records which route served a request, for metrics.
func named(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.route = route
		}
		next.ServeHTTP(w, r)
	})
}

//go:embed openapi.json
var openAPIDocument []byte

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
		w.Write(openAPIDocument)
	})
}

func (s *server) handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func (s *server) handleReady() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := s.dbContext(r)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			noteError(r.Context(), err)
			writeError(w, r, http.StatusServiceUnavailable, codeUnavailable, "database not reachable")
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// dbContext bounds one request's database work, so a stuck database turns
// into a 503 rather than a hung request; a client that goes away cancels it.
func (s *server) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.dbTimeout)
}

// writeStoreError maps a store error to the contract's answer; only the
// unexpected ones are logged as errors.
func (s *server) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNotFound):
		writeTaskNotFound(w, r)
	case errors.Is(err, errPreconditionFailed):
		writeError(w, r, http.StatusPreconditionFailed, codePreconditionFailed, "the task has changed: If-Match does not name its current ETag")
	case r.Context().Err() != nil:
		// The client is gone; nobody reads this answer.
		noteError(r.Context(), err)
		writeError(w, r, statusClientClosed, codeUnavailable, "request cancelled")
	case isUnavailable(err):
		noteError(r.Context(), err)
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, codeUnavailable, "database unavailable, try again shortly")
	default:
		noteError(r.Context(), err)
		writeError(w, r, http.StatusInternalServerError, codeInternal, "internal error")
	}
}

// statusClientClosed is logged (never seen) for requests whose client left.
const statusClientClosed = 499

// routeOrError serves matched routes and answers the mux's own 404 and 405
// in the contract's JSON shape instead of its plain text.
func routeOrError(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
			return
		}
		writeError(w, r, http.StatusNotFound, codeNotFound, "no route for "+r.URL.Path)
	})
}

// headerProbe records what the mux's built-in error handlers would answer.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }

// requireAuthUnder sends requests under prefix through authed and all others
// through open, so that no /api path, known or not, answers without a token.
func requireAuthUnder(prefix string, authed, open http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			authed.ServeHTTP(w, r)
			return
		}
		open.ServeHTTP(w, r)
	})
}

// normalizePath serves "/api/tasks/" as "/api/tasks" without a redirect (a
// redirect can lose the Authorization header) and refuses paths that are not
// clean, which the mux would otherwise redirect.
func normalizePath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if len(p) > 1 && strings.HasSuffix(p, "/") {
			r.URL.Path = p[:len(p)-1]
			r.URL.RawPath = strings.TrimSuffix(r.URL.RawPath, "/")
		}
		escaped := r.URL.EscapedPath()
		if escaped == "" || path.Clean(escaped) != escaped {
			writeError(w, r, http.StatusNotFound, codeNotFound, "no route for "+r.URL.Path)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic into the contract's 500; the stack goes to the
// log, never to the client.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			noteError(r.Context(), fmt.Errorf("panic: %v", v))
			s.logger.Error("panic serving request", "request_id", requestIDFrom(r.Context()), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				return // too late for a clean answer
			}
			writeError(w, r, http.StatusInternalServerError, codeInternal, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// requestInfo collects what inner layers learn about a request for the one
// log line the outermost layer writes.
type requestInfo struct {
	id          string
	route       string // the matched route pattern, without method
	userID      string
	authFailure error
	err         error
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func requestIDFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

func noteAuthFailure(ctx context.Context, err error) {
	if info := infoFrom(ctx); info != nil {
		info.authFailure = err
	}
}

func noteError(ctx context.Context, err error) {
	if info := infoFrom(ctx); info != nil {
		info.err = err
	}
}

// requestIDPrefix and requestCounter make ids unique across restarts
// without a random read per request.
var (
	requestIDPrefix = strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36)
	requestCounter  atomic.Uint64
)

func newRequestID() string {
	return requestIDPrefix + "-" + strconv.FormatUint(requestCounter.Add(1), 36)
}

// validRequestID accepts a caller's X-Request-ID only when it is safe to
// echo in a header and a log line.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests gives every request an id, the headers every answer carries,
// and one log line when it is done.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{id: r.Header.Get("X-Request-ID")}
		if !validRequestID(info.id) {
			info.id = newRequestID()
		}
		h := w.Header()
		h.Set("X-Request-ID", info.id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")

		sw := &statusWriter{ResponseWriter: w}
		if s.metrics != nil {
			s.metrics.inFlight.Add(1)
			defer s.metrics.inFlight.Add(-1)
		}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))

		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		if s.metrics != nil {
			s.countRequest(r, info, status, time.Since(start))
		}
		level := slog.LevelInfo
		if status >= 500 && status != statusClientClosed {
			level = slog.LevelError
		}
		if !s.logger.Enabled(r.Context(), level) {
			return
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("request_id", info.id),
		}
		if info.userID != "" {
			attrs = append(attrs, slog.String("user_id", info.userID))
		}
		if info.authFailure != nil {
			attrs = append(attrs, slog.String("auth_error", info.authFailure.Error()))
		}
		if info.err != nil {
			attrs = append(attrs, slog.String("error", info.err.Error()))
		}
		s.logger.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// countRequest feeds one answered request to the metrics.
func (s *server) countRequest(r *http.Request, info *requestInfo, status int, d time.Duration) {
	route := info.route
	if route == "" { // answered before routing: 401, 429, preflight, 404
		route = s.routeOf(r)
	}
	if route == "" {
		route = "unmatched"
	}
	s.metrics.observe(route, r.Method, status, d)
	if info.authFailure != nil {
		s.metrics.authFailure(authFailureReason(info.authFailure))
	}
	if status == http.StatusTooManyRequests {
		s.metrics.rateLimited.Add(1)
	}
}

// The contract's error codes.
const (
	codeBadRequest             = "BAD_REQUEST"
	codeAuthenticationRequired = "AUTHENTICATION_REQUIRED"
	codeNotFound               = "RESOURCE_NOT_FOUND"
	codeMethodNotAllowed       = "METHOD_NOT_ALLOWED"
	codePayloadTooLarge        = "PAYLOAD_TOO_LARGE"
	codePreconditionFailed     = "PRECONDITION_FAILED"
	codeRateLimited            = "RATE_LIMITED"
	codeValidation             = "VALIDATION_ERROR"
	codeInternal               = "INTERNAL_ERROR"
	codeUnavailable            = "SERVICE_UNAVAILABLE"
)

// apiError is an answer that is not a success.
type apiError struct {
	status int
	code   string
	detail string
	fields []fieldError
}

// fieldError names one broken body or query rule.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// errorBody is the contract's error shape.
type errorBody struct {
	Detail    string       `json:"detail"`
	ErrorCode string       `json:"error_code"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	writeAPIError(w, r, &apiError{status: status, code: code, detail: detail})
}

func writeAPIError(w http.ResponseWriter, r *http.Request, e *apiError) {
	encode(w, e.status, errorBody{
		Detail:    e.detail,
		ErrorCode: e.code,
		RequestID: requestIDFrom(r.Context()),
		Errors:    e.fields,
	})
}

func writeValidationError(w http.ResponseWriter, r *http.Request, fields []fieldError) {
	writeAPIError(w, r, &apiError{
		status: http.StatusUnprocessableEntity,
		code:   codeValidation,
		detail: fields[0].Message,
		fields: fields,
	})
}

// encode writes v as the JSON body of an answer with status. Tasks, the
// hot path, have their own encoder (writeTask).
func encode(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here; a failure is a bug, and the
		// client still gets the contract's shape.
		status = http.StatusInternalServerError
		body = []byte(`{"detail":"internal error","error_code":"INTERNAL_ERROR"}`)
	}
	writeJSON(w, status, body)
}

// writeJSON sends body and a newline. The newline is appended in place, so
// body must be the caller's own; it may be reused afterwards. One Write
// matters: a body past net/http's 4 KiB buffer is written straight through,
// and a separate newline after it cost a third write system call per list.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	body = append(body, '\n')
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

var contentTypeJSON = []string{"application/json"}

// bufferPool recycles response buffers; one task is about 250 bytes, and a
// buffer grows to fit a list once, then is reused at that size.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

// putBuffer returns a buffer unless it grew past what is worth keeping.
func putBuffer(b *[]byte) {
	if cap(*b) <= 1<<20 {
		bufferPool.Put(b)
	}
}

// maxBodyBytes is the largest request body accepted.
const maxBodyBytes = 1 << 20

// decode reads a request body that must be one JSON object. Unparseable
// input is a 400; parseable JSON of another shape is a 422.
func decode(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, *apiError) {
	if r.ContentLength > maxBodyBytes {
		return nil, errPayloadTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errPayloadTooLarge
		}
		return nil, &apiError{status: http.StatusBadRequest, code: codeBadRequest, detail: "could not read the request body"}
	}
	return decodeObject(body)
}

var errPayloadTooLarge = &apiError{status: http.StatusRequestEntityTooLarge, code: codePayloadTooLarge, detail: "request body is larger than 1 MiB"}

func decodeObject(body []byte) (map[string]json.RawMessage, *apiError) {
	if !utf8.Valid(body) {
		return nil, &apiError{status: http.StatusBadRequest, code: codeBadRequest, detail: "request body is not valid UTF-8"}
	}
	if !json.Valid(body) {
		return nil, &apiError{status: http.StatusBadRequest, code: codeBadRequest, detail: "request body is not valid JSON"}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, &apiError{status: http.StatusUnprocessableEntity, code: codeValidation, detail: "request body must be a JSON object"}
	}
	return obj, nil
}
