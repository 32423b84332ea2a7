package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
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
	var metricsAddr string
	for _, line := range strings.Split(logs.String(), "\n") {
		var entry struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "metrics listening" {
			metricsAddr = entry.Addr
		}
	}
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
