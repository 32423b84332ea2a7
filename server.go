package main

import (
	"context"
	_ "embed"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
	// draining is set when shutdown begins: /readyz answers 503, and every
	// answer says Connection: close.
	draining atomic.Bool
	// unauthenticatedLog bounds the log lines of answers to requests
	// nobody is signed in for, and of 429s, under a flood.
	unauthenticatedLog logBudget
	// clientStall is how long a client may take to accept one piece of
	// a streamed answer (CLIENT_STALL_TIMEOUT).
	clientStall time.Duration
}

// newServer builds the server, whose drain starts on SIGTERM, and the
// whole HTTP handler: middleware around the routes. A nil metrics counts
// nothing.
func newServer(logger *slog.Logger, store *Store, verifier tokenVerifier, cfg config, stats *metrics) (*server, http.Handler) {
	s := &server{
		logger:      logger,
		store:       store,
		verifier:    verifier,
		cors:        cfg.cors,
		limiter:     newRateLimiter(cfg.rateLimitRPS, cfg.rateLimitBurst),
		metrics:     stats,
		dbTimeout:   cfg.dbTimeout,
		clientStall: cfg.clientStallTimeout,
		now:         time.Now,
	}
	s.unauthenticatedLog.report = func(n int) {
		logger.Warn("answers not logged one by one: to requests nobody is signed in for, or over the rate limit", "count", n, "per", floodLogWindow.String())
	}
	if cfg.clock != nil {
		s.now = cfg.clock
	}
	// Go's mux refuses /api/tasks/{id} and /api/{user_id}/tasks side by
	// side (both match /api/tasks/tasks), so the path-scoped routes have a
	// mux of their own, asked only for paths the first does not know.
	muxes := []*http.ServeMux{http.NewServeMux(), http.NewServeMux()}
	for _, rt := range s.routes() {
		mux := muxes[0]
		if strings.Contains(rt.pattern, "{user_id}") {
			mux = muxes[1]
		}
		mux.Handle(rt.pattern, named(routePath(rt.pattern), rt.handler))
	}
	s.routeOf = func(r *http.Request) string { return routePath(matchRoute(muxes, r).pattern) }
	var h http.Handler = routeOrError(muxes)
	h = requireAuthUnder("/api", requireAuth(s.verifier, s.now, s.limiter.limitPerUser(s.now, h)), h)
	h = normalizePath(h)
	h = s.recoverPanics(h)
	h = s.cors.middleware(h)
	h = s.logRequests(h)
	return s, h
}

type route struct {
	pattern string
	handler http.Handler
}

// routes lists the whole API; openapi.json must describe exactly these,
// which a test checks. Every task route is served twice: at /api/tasks...
// and, for the hackathon family of frontends, at /api/{user_id}/tasks...,
// where the path's user id must be the token's.
func (s *server) routes() []route {
	tasks := []route{
		{"GET /api/tasks", s.handleListTasks()},
		{"POST /api/tasks", s.handleCreateTask()},
		{"GET /api/tasks/{id}", s.handleGetTask()},
		{"PUT /api/tasks/{id}", s.handleUpdateTask()},
		{"PATCH /api/tasks/{id}", s.handlePatchTask()},
		{"DELETE /api/tasks/{id}", s.handleDeleteTask()},
		{"PATCH /api/tasks/{id}/complete", s.handleCompleteTask()},
	}
	all := []route{
		{"GET /healthz", s.handleHealth()},
		{"GET /readyz", s.handleReady()},
		{"GET /openapi.json", handleOpenAPI()},
	}
	all = append(all, tasks...)
	for _, rt := range tasks {
		scoped := strings.Replace(rt.pattern, " /api/tasks", " /api/{user_id}/tasks", 1)
		all = append(all, route{scoped, ownPath(rt.handler)})
	}
	return all
}

// ownPath serves a path-scoped route only when the path's {user_id}
// (percent-decoded) is exactly the token's user id. Any other user id is
// answered as a missing task, before anything is read or written: another
// user's data is "not found", never "forbidden". The handler still scopes
// its SQL by the token's user id alone.
func ownPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDFrom(r.Context())
		if !ok {
			writeError(w, r, errNoUserID)
			return
		}
		if r.PathValue("user_id") != userID {
			writeError(w, r, errNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routePath is a pattern without its method: the metrics' route label.
func routePath(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
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
		if s.draining.Load() {
			writeError(w, r, errShuttingDown)
			return
		}
		ctx, cancel := s.dbContext(r)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			writeError(w, r, &apiError{code: codeUnavailable, detail: "database not reachable", cause: err})
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// errShuttingDown is /readyz once the drain has begun, so that a load
// balancer stops sending new work.
var errShuttingDown = &apiError{code: codeUnavailable, detail: "shutting down"}

// dbContext bounds one request's database work, so a stuck database turns
// into a 503 rather than a hung request; a client that goes away cancels it.
func (s *server) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.dbTimeout)
}

// drain stops the server without failing a request it accepted. First a
// lame-duck period: /readyz answers 503 so a load balancer stops sending,
// while requests on open connections, and new ones, are still served, each
// answer with Connection: close, so that clients leave their keep-alive
// connections themselves instead of writing a request onto one as it is
// closed. Then idle connections close, the connections the kernel has
// already queued are accepted, the listener closes, and Shutdown comes only
// once every accepted connection has had its request read (Shutdown alone
// drops a request that it reads after it has begun). In-flight requests
// then finish, bounded by ctx.
func drain(ctx context.Context, s *server, lameDuck time.Duration, srv *http.Server, listener *drainingListener, conns *connTracker, serveErr <-chan error) error {
	s.draining.Store(true)
	select {
	case <-time.After(lameDuck):
	case <-ctx.Done():
	}
	srv.SetKeepAlivesEnabled(false)
	listener.drain()
	select {
	case <-serveErr: // the listener is closed
	case <-ctx.Done():
		return srv.Close()
	}
	for conns.count(http.StateNew) > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Shutdown(ctx); err == nil || ctx.Err() == nil {
		return err
	}
	// SHUTDOWN_TIMEOUT is up: what is still running (a client that takes
	// no answer, a request stuck on the database) is cut, and the drain
	// has still done what it promises.
	busy := conns.count(http.StateActive)
	s.logger.Warn("shutdown: cut the connections still busy at SHUTDOWN_TIMEOUT", "connections", busy)
	srv.Close()
	return nil
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

// Accept reports net.ErrClosed once the drain's accept window is over.
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

func newConnTracker() *connTracker { return &connTracker{states: map[net.Conn]http.ConnState{}} }

func (t *connTracker) track(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if state == http.StateClosed || state == http.StateHijacked {
		delete(t.states, c)
		return
	}
	t.states[c] = state
}

// count is how many connections are in state.
func (t *connTracker) count(state http.ConnState) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.states {
		if s == state {
			n++
		}
	}
	return n
}
