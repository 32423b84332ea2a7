package main

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// metrics counts what the server does, for Prometheus. It is written with
// the standard library only; the text exposition format is simple enough.
type metrics struct {
	db dbStats // read at scrape time; nil in some tests

	mu        sync.RWMutex
	requests  map[requestKey]*atomic.Uint64
	latencies map[string]*histogram // by route

	inFlight     atomic.Int64
	rateLimited  atomic.Uint64
	authFailures sync.Map // reason -> *atomic.Uint64
}

type requestKey struct {
	route  string
	method string
	status int
}

// dbStats is what the store tells metrics at scrape time.
type dbStats interface {
	PoolStats() sql.DBStats
	BatchStats() []batchStats
}

func newMetrics(db dbStats) *metrics {
	return &metrics{db: db, requests: map[requestKey]*atomic.Uint64{}, latencies: map[string]*histogram{}}
}

// latencyBuckets are upper bounds in seconds.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

type histogram struct {
	buckets [13]atomic.Uint64 // one per bound, then +Inf; not cumulative
	sumNano atomic.Uint64
	count   atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	seconds := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets, seconds)
	h.buckets[i].Add(1)
	h.sumNano.Add(uint64(d.Nanoseconds()))
	h.count.Add(1)
}

// knownMethods keeps the method label's values bounded whatever clients send.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if !knownMethods[method] {
		method = "OTHER"
	}
	key := requestKey{route, method, status}
	m.mu.RLock()
	counter, ok := m.requests[key]
	h := m.latencies[route]
	m.mu.RUnlock()
	if !ok || h == nil {
		m.mu.Lock()
		if counter = m.requests[key]; counter == nil {
			counter = &atomic.Uint64{}
			m.requests[key] = counter
		}
		if h = m.latencies[route]; h == nil {
			h = &histogram{}
			m.latencies[route] = h
		}
		m.mu.Unlock()
	}
	counter.Add(1)
	h.observe(d)
}

func (m *metrics) authFailure(reason string) {
	if m == nil {
		return
	}
	c, _ := m.authFailures.LoadOrStore(reason, &atomic.Uint64{})
	c.(*atomic.Uint64).Add(1)
}

// authFailureReason is the bounded label of a 401's reason: the one its
// tokenError (jwt.go) carries, or "other".
func authFailureReason(err error) string {
	var te *tokenError
	if errors.As(err, &te) {
		return te.reason
	}
	return "other"
}

// handler serves the exposition, and Go's profiler under /debug/pprof/;
// both belong on METRICS_ADDR only, never on the public port.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.write(w)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func (m *metrics) write(w io.Writer) {
	var b strings.Builder

	m.mu.RLock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	routes := make([]string, 0, len(m.latencies))
	for route := range m.latencies {
		routes = append(routes, route)
	}
	m.mu.RUnlock()
	sort.Slice(keys, func(i, j int) bool {
		a, c := keys[i], keys[j]
		if a.route != c.route {
			return a.route < c.route
		}
		if a.method != c.method {
			return a.method < c.method
		}
		return a.status < c.status
	})
	sort.Strings(routes)

	family(&b, "todo_http_requests_total", "counter", "HTTP requests by route pattern, method and status.")
	for _, k := range keys {
		m.mu.RLock()
		n := m.requests[k].Load()
		m.mu.RUnlock()
		fmt.Fprintf(&b, "todo_http_requests_total{route=%s,method=%s,status=\"%d\"} %d\n", quoteLabel(k.route), quoteLabel(k.method), k.status, n)
	}

	family(&b, "todo_http_request_duration_seconds", "histogram", "Time to answer a request, by route pattern.")
	for _, route := range routes {
		m.mu.RLock()
		h := m.latencies[route]
		m.mu.RUnlock()
		var cumulative uint64
		for i := range h.buckets {
			cumulative += h.buckets[i].Load()
			le := "+Inf"
			if i < len(latencyBuckets) {
				le = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
			}
			fmt.Fprintf(&b, "todo_http_request_duration_seconds_bucket{route=%s,le=\"%s\"} %d\n", quoteLabel(route), le, cumulative)
		}
		fmt.Fprintf(&b, "todo_http_request_duration_seconds_sum{route=%s} %s\n", quoteLabel(route), formatFloat(float64(h.sumNano.Load())/1e9))
		fmt.Fprintf(&b, "todo_http_request_duration_seconds_count{route=%s} %d\n", quoteLabel(route), cumulative)
	}

	family(&b, "todo_http_requests_in_flight", "gauge", "Requests being served now.")
	fmt.Fprintf(&b, "todo_http_requests_in_flight %d\n", m.inFlight.Load())

	family(&b, "todo_auth_failures_total", "counter", "Requests refused with 401, by reason.")
	var reasons []string
	m.authFailures.Range(func(k, _ any) bool { reasons = append(reasons, k.(string)); return true })
	sort.Strings(reasons)
	for _, reason := range reasons {
		c, _ := m.authFailures.Load(reason)
		fmt.Fprintf(&b, "todo_auth_failures_total{reason=%s} %d\n", quoteLabel(reason), c.(*atomic.Uint64).Load())
	}

	family(&b, "todo_rate_limited_total", "counter", "Requests refused with 429.")
	fmt.Fprintf(&b, "todo_rate_limited_total %d\n", m.rateLimited.Load())

	if m.db != nil {
		s := m.db.PoolStats()
		gauges := []struct {
			name, help string
			value      int
		}{
			{"todo_db_connections_max", "Maximum open connections (DB_MAX_CONNS).", s.MaxOpenConnections},
			{"todo_db_connections_open", "Open connections, in use or idle.", s.OpenConnections},
			{"todo_db_connections_in_use", "Connections in use.", s.InUse},
			{"todo_db_connections_idle", "Idle connections.", s.Idle},
		}
		for _, g := range gauges {
			family(&b, g.name, "gauge", g.help)
			fmt.Fprintf(&b, "%s %d\n", g.name, g.value)
		}
		family(&b, "todo_db_wait_count_total", "counter", "Times a request waited for a free connection.")
		fmt.Fprintf(&b, "todo_db_wait_count_total %d\n", s.WaitCount)
		family(&b, "todo_db_wait_duration_seconds_total", "counter", "Time spent waiting for a free connection.")
		fmt.Fprintf(&b, "todo_db_wait_duration_seconds_total %s\n", formatFloat(s.WaitDuration.Seconds()))
		writeBatchStats(&b, m.db.BatchStats())
	}

	family(&b, "go_goroutines", "gauge", "Goroutines that currently exist.")
	fmt.Fprintf(&b, "go_goroutines %d\n", runtime.NumGoroutine())
	io.WriteString(w, b.String())
}

func family(b *strings.Builder, name, kind, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// quoteLabel quotes a label value as the exposition format asks: only
// backslash, double quote and line feed are escaped.
func quoteLabel(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// writeBatchStats shows how many requests each coalesced statement took:
// a batch of one is a request that waited and found no company.
func writeBatchStats(b *strings.Builder, stats []batchStats) {
	family(b, "todo_db_batch_size", "histogram", "Requests per statement run for waiting requests, by operation.")
	for _, st := range stats {
		for i, n := range st.buckets {
			le := "+Inf"
			if i < len(batchSizeBounds) {
				le = strconv.Itoa(batchSizeBounds[i])
			}
			fmt.Fprintf(b, "todo_db_batch_size_bucket{op=%s,le=\"%s\"} %d\n", quoteLabel(st.op), le, n)
		}
		fmt.Fprintf(b, "todo_db_batch_size_sum{op=%s} %d\n", quoteLabel(st.op), st.sum)
		fmt.Fprintf(b, "todo_db_batch_size_count{op=%s} %d\n", quoteLabel(st.op), st.buckets[len(st.buckets)-1])
	}
	family(b, "todo_db_batch_reruns_total", "counter", "Batches the database refused whole and that were rerun one request at a time.")
	for _, st := range stats {
		fmt.Fprintf(b, "todo_db_batch_reruns_total{op=%s} %d\n", quoteLabel(st.op), st.fallbacks)
	}
}
