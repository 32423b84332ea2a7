package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The layers newServer wraps around the routes, outermost last: routing
// with the contract's 404 and 405, authentication placement, path
// normalising, panic recovery, and the request log line with its id and
// metrics. CORS is in cors.go, authentication itself in auth.go.

// routeMatch is what the muxes make of a request: the mux that serves it
// and its pattern, or the Allow header of a path known for other methods.
type routeMatch struct {
	mux     *http.ServeMux
	pattern string
	allow   string
}

// matchRoute asks the muxes in order. A path the first one knows keeps
// its meaning there, a 405 included; a later mux is asked only about
// paths the earlier ones do not know at all.
func matchRoute(muxes []*http.ServeMux, r *http.Request) routeMatch {
	for _, mux := range muxes {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			return routeMatch{mux: mux, pattern: pattern}
		}
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			return routeMatch{allow: probe.header.Get("Allow")}
		}
	}
	return routeMatch{}
}

// routeOrError serves matched routes and answers the muxes' own 404 and
// 405 in the contract's JSON shape instead of their plain text.
func routeOrError(muxes []*http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := matchRoute(muxes, r)
		switch {
		case m.mux != nil:
			m.mux.ServeHTTP(w, r)
		case m.allow != "":
			w.Header().Set("Allow", m.allow)
			writeError(w, r, &apiError{code: codeMethodNotAllowed, detail: "method " + r.Method + " not allowed on " + r.URL.Path})
		default:
			writeError(w, r, noRoute(r))
		}
	})
}

func noRoute(r *http.Request) error {
	return &apiError{code: codeNotFound, detail: "no route for " + r.URL.Path}
}

// headerProbe records what the mux's built-in error handlers would answer.
type headerProbe struct {
	header http.Header
	status int
}

// Header, Write and WriteHeader make headerProbe an http.ResponseWriter
// that keeps the headers and status and drops the body.
func (p *headerProbe) Header() http.Header { return p.header }

// Write discards b.
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader records status.
func (p *headerProbe) WriteHeader(status int) { p.status = status }

// named records which route served a request, for metrics.
func named(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.route = route
		}
		next.ServeHTTP(w, r)
	})
}

// requireAuthUnder sends requests under prefix through authed and all others
// through open, so that no /api route, known or not, answers without a
// token. (normalizePath, in front of it, refuses paths that are not clean,
// such as /api//tasks, with a 404 before this.)
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
// clean, which the mux would otherwise redirect. Only a literal trailing
// slash is dropped: an encoded one (2%2F) is part of the segment, and an id
// holding it names no task.
func normalizePath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if escaped := r.URL.EscapedPath(); len(escaped) > 1 && strings.HasSuffix(escaped, "/") {
			r.URL.Path = strings.TrimSuffix(r.URL.Path, "/")
			r.URL.RawPath = strings.TrimSuffix(r.URL.RawPath, "/")
		}
		escaped := r.URL.EscapedPath()
		if escaped == "" || path.Clean(escaped) != escaped {
			writeError(w, r, noRoute(r))
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
			s.logger.Error("panic serving request", "request_id", requestIDFrom(r.Context()), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				noteError(r.Context(), fmt.Errorf("panic: %v", v))
				return // too late for a clean answer
			}
			writeError(w, r, fmt.Errorf("panic: %v", v))
		}()
		next.ServeHTTP(w, r)
	})
}

// requestInfo collects what inner layers learn about a request for the one
// log line the outermost layer writes.
type requestInfo struct {
	id          string
	route       string // the matched route pattern, without method
	userID      string // copied from the context by requireAuth, for the log
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
	var buf [32]byte
	id := append(append(buf[:0], requestIDPrefix...), '-')
	return string(strconv.AppendUint(id, requestCounter.Add(1), 36))
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

var (
	nosniff = []string{"nosniff"}
	noStore = []string{"no-store"}
)

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status and passes it on.
func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write counts as a 200 when no status was written first.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
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
		// Canonical keys and shared values, set directly: Header.Set would
		// allocate a key and a slice for each of them on every request.
		// net/http copies the values when it writes them, and no one
		// changes these in place.
		h := w.Header()
		h["X-Request-Id"] = []string{info.id}
		h["X-Content-Type-Options"] = nosniff
		h["Cache-Control"] = noStore
		if s.draining.Load() {
			h.Set("Connection", "close") // net/http closes the connection after this answer
		}

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
		// A /readyz 503 while draining is the drain working, not a fault.
		if status >= 500 && status != statusClientClosed && !(s.draining.Load() && info.route == "/readyz") {
			level = slog.LevelError
		}
		if !s.logger.Enabled(r.Context(), level) {
			return
		}
		if info.userID == "" && status >= 400 && status < 500 || status == http.StatusTooManyRequests {
			if !s.unauthenticatedLog.admit(time.Now()) {
				return
			}
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", clip(r.URL.Path)),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("request_id", info.id),
		}
		if info.userID != "" {
			attrs = append(attrs, slog.String("user_id", clip(info.userID)))
		}
		if info.authFailure != nil {
			attrs = append(attrs, slog.String("auth_error", clip(info.authFailure.Error())))
		}
		if info.err != nil {
			attrs = append(attrs, slog.String("error", clip(info.err.Error())))
		}
		s.logger.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// floodLogWindow and floodLogLines bound the log under a flood of
// answers nobody is signed in for (401s, and 404s, 405s and 400s given
// before authentication) and of 429s: in each window the first lines are
// written in full (so a single one can be found by its request id), the
// rest only counted, and the count is logged as the window ends. Metrics
// count every one.
const (
	floodLogWindow = time.Second
	floodLogLines  = 10
)

// logBudget admits a bounded number of log lines per window, and has
// report called with the count of those it refused when the window ends.
type logBudget struct {
	report func(suppressed int)

	mu          sync.Mutex
	windowStart time.Time
	logged      int
	suppressed  int
	reporting   bool // a timer will report suppressed
}

// admit reports whether a line may be logged now.
func (b *logBudget) admit(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.windowStart) >= floodLogWindow {
		b.windowStart, b.logged = now, 0
	}
	if b.logged < floodLogLines {
		b.logged++
		return true
	}
	b.suppressed++
	if !b.reporting {
		b.reporting = true
		time.AfterFunc(b.windowStart.Add(floodLogWindow).Sub(now), b.flush)
	}
	return false
}

// flush reports the lines refused since the last report.
func (b *logBudget) flush() {
	b.mu.Lock()
	n := b.suppressed
	b.suppressed, b.reporting = 0, false
	b.mu.Unlock()
	if n > 0 && b.report != nil {
		b.report(n)
	}
}

// maxLoggedBytes is the most of a path, user id or error message a log
// line holds; a longer one is cut, its full length noted.
const maxLoggedBytes = 256

// clip cuts s to maxLoggedBytes, on a character boundary, and notes how
// long it was.
func clip(s string) string {
	if head := cutAt(s, maxLoggedBytes); head != s {
		return head + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
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
