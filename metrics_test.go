package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	metricNameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	metricLabelRE = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$`)
)

// splitLabels splits a{...} contents at the commas between pairs.
func splitLabels(s string) []string {
	var pairs []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case escaped:
			escaped = false
		case s[i] == '\\':
			escaped = true
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			pairs = append(pairs, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		pairs = append(pairs, s[start:])
	}
	return pairs
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 0.001, 2
	logs := &syncBuffer{}
	stats := newMetrics(testStore)
	handler := handlerOf(newServer(slog.New(slog.NewJSONHandler(logs, nil)), testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, stats))
	srv := &testServer{Server: httptest.NewServer(handler), logs: logs}
	defer srv.Close()
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "m"})
	srv.request(t, "GET", taskPath(task.ID), token, nil)
	srv.request(t, "GET", "/api/tasks", token, nil) // 429: burst of 2 spent
	srv.request(t, "GET", "/api/tasks", "", nil)
	srv.request(t, "GET", "/api/tasks/7", "expired.token.x", nil)
	srv.request(t, "BREW", "/nowhere\"odd", "", nil)
	srv.request(t, "GET", "/healthz", "", nil)

	rec := httptest.NewRecorder()
	stats.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	samples := parseExposition(t, rec.Body.String())
	for series, want := range map[string]float64{
		`todo_http_requests_total{route="/api/tasks",method="POST",status="201"}`:     1,
		`todo_http_requests_total{route="/api/tasks/{id}",method="GET",status="200"}`: 1,
		`todo_http_requests_total{route="/api/tasks",method="GET",status="429"}`:      1,
		`todo_http_requests_total{route="/api/tasks",method="GET",status="401"}`:      1,
		`todo_http_requests_total{route="/api/tasks/{id}",method="GET",status="401"}`: 1,
		`todo_http_requests_total{route="unmatched",method="OTHER",status="404"}`:     1,
		`todo_http_requests_total{route="/healthz",method="GET",status="200"}`:        1,
		`todo_auth_failures_total{reason="missing"}`:                                  1,
		`todo_auth_failures_total{reason="malformed"}`:                                1,
		`todo_rate_limited_total`:                                                 1,
		`todo_http_request_duration_seconds_count{route="/api/tasks"}`:            3,
		`todo_http_request_duration_seconds_bucket{route="/api/tasks",le="+Inf"}`: 3,
		`todo_http_requests_in_flight`:                                            0,
		`todo_db_connections_max`:                                                 float64(testDB.Stats().MaxOpenConnections),
	} {
		if got, ok := samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v); want %v", series, got, ok, want)
		}
	}
	for _, name := range []string{"todo_db_connections_open", "todo_db_connections_in_use", "todo_db_connections_idle", "todo_db_wait_count_total", "todo_db_wait_duration_seconds_total", "go_goroutines"} {
		if _, ok := samples[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	// Buckets are cumulative.
	prev := -1.0
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"} {
		v := samples[`todo_http_request_duration_seconds_bucket{route="/api/tasks",le="`+le+`"}`]
		if v < prev {
			t.Errorf("bucket le=%s = %v is below the previous %v", le, v, prev)
		}
		prev = v
	}
	if res := srv.request(t, "GET", "/metrics", token, nil); res.status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API handler = %d; want 404", res.status)
	}
}

func TestMetricsOnlyOnTheirOwnListener(t *testing.T) {
	t.Parallel()
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"METRICS_ADDR": "127.0.0.1:0"}))
	defer func() { stop(); <-done }()
	metricsAddr := loggedAddr(logs.String(), "metrics listening")
	if metricsAddr == "" {
		t.Fatalf("no metrics listener logged:\n%s", logs)
	}
	public := &testServer{Server: &httptest.Server{URL: base}}
	wantError(t, public.request(t, "GET", "/metrics", "", nil), http.StatusNotFound, codeNotFound)
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "todo_http_requests_total") {
		t.Fatalf("metrics listener = %d %s", res.StatusCode, body)
	}
	parseExposition(t, string(body))
}

// parseExposition checks text against the Prometheus text format's rules
// and returns the samples by their full series name.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	types := map[string]string{}
	samples := map[string]float64{}
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("exposition does not end with a newline")
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		where := fmt.Sprintf("line %d %q", n+1, line)
		if strings.HasPrefix(line, "#") {
			fields := strings.SplitN(line, " ", 4)
			if len(fields) < 4 || (fields[1] != "HELP" && fields[1] != "TYPE") || !metricNameRE.MatchString(fields[2]) {
				t.Fatalf("%s: malformed comment", where)
			}
			if fields[1] == "TYPE" {
				if _, dup := types[fields[2]]; dup {
					t.Fatalf("%s: second TYPE for %s", where, fields[2])
				}
				switch fields[3] {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					t.Fatalf("%s: unknown type", where)
				}
				types[fields[2]] = fields[3]
			}
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s: no value", where)
		}
		if _, err := strconv.ParseFloat(value, 64); err != nil && value != "+Inf" {
			t.Fatalf("%s: value: %v", where, err)
		}
		name, labels := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			if !strings.HasSuffix(series, "}") {
				t.Fatalf("%s: unclosed labels", where)
			}
			name, labels = series[:i], series[i+1:len(series)-1]
		}
		if !metricNameRE.MatchString(name) {
			t.Fatalf("%s: bad metric name", where)
		}
		for _, pair := range splitLabels(labels) {
			if !metricLabelRE.MatchString(pair) {
				t.Fatalf("%s: bad label %q", where, pair)
			}
		}
		familyName := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && types[base] == "histogram" {
				familyName = base
			}
		}
		if types[familyName] == "" {
			t.Fatalf("%s: sample before its TYPE", where)
		}
		if types[familyName] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: counter without _total", where)
		}
		f, _ := strconv.ParseFloat(value, 64)
		if _, dup := samples[series]; dup {
			t.Fatalf("%s: duplicate series", where)
		}
		samples[series] = f
	}
	return samples
}

// TestPathScopedMetricsAndRateLimit: path-scoped requests count under their
// own route pattern and share the user's rate limit.
func TestPathScopedMetricsAndRateLimit(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 0.001, 2
	stats := newMetrics(testStore)
	handler := handlerOf(newServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, stats))
	srv := &testServer{Server: httptest.NewServer(handler), logs: &syncBuffer{}}
	defer srv.Close()
	user := newUser(t)
	token := mustToken(t, user)
	srv.request(t, "GET", userPath(user, ""), token, nil)
	srv.request(t, "GET", "/api/tasks", token, nil)
	res := srv.request(t, "GET", userPath(user, ""), token, nil)
	wantError(t, res, http.StatusTooManyRequests, codeRateLimited)

	rec := httptest.NewRecorder()
	stats.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	samples := parseExposition(t, rec.Body.String())
	for series, want := range map[string]float64{
		`todo_http_requests_total{route="/api/{user_id}/tasks",method="GET",status="200"}`: 1,
		`todo_http_requests_total{route="/api/tasks",method="GET",status="200"}`:           1,
		`todo_http_requests_total{route="/api/{user_id}/tasks",method="GET",status="429"}`: 1,
	} {
		if got := samples[series]; got != want {
			t.Errorf("%s = %v; want %v", series, got, want)
		}
	}
}
