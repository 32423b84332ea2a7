package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		names string // the variable the one line must name
	}{
		{"no database", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL"},
		{"no secret", map[string]string{"BETTER_AUTH_SECRET": ""}, "BETTER_AUTH_SECRET"},
		{"short secret", map[string]string{"BETTER_AUTH_SECRET": strings.Repeat("s", 31)}, "BETTER_AUTH_SECRET"},
		{"port not a number", map[string]string{"PORT": "http"}, "PORT"},
		{"port too large", map[string]string{"PORT": "70000"}, "PORT"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"bad origin", map[string]string{"CORS_ORIGINS": "localhost:3000"}, "CORS_ORIGINS"},
		{"bad user claim", map[string]string{"JWT_USER_CLAIM": " sub"}, "JWT_USER_CLAIM"},
		{"bad db timeout", map[string]string{"DB_TIMEOUT": "soon"}, "DB_TIMEOUT"},
		{"negative db wait", map[string]string{"DB_WAIT": "-1s"}, "DB_WAIT"},
		{"bad shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "0"}, "SHUTDOWN_TIMEOUT"},
		{"lame duck past the shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "2s", "SHUTDOWN_LAME_DUCK": "2s"}, "SHUTDOWN_LAME_DUCK"},
		{"bad DB_PREPARED_STATEMENTS", map[string]string{"DB_PREPARED_STATEMENTS": "sometimes"}, "DB_PREPARED_STATEMENTS"},
		{"bad pool size", map[string]string{"DB_MAX_CONNS": "0"}, "DB_MAX_CONNS"},
		{"bad batch size", map[string]string{"DB_BATCH_MAX": "0"}, "DB_BATCH_MAX"},
		{"bad metrics address", map[string]string{"METRICS_ADDR": "9090"}, "METRICS_ADDR"},
		{"bad rate", map[string]string{"RATE_LIMIT_RPS": "fast"}, "RATE_LIMIT_RPS"},
		{"bad burst", map[string]string{"RATE_LIMIT_BURST": "0"}, "RATE_LIMIT_BURST"},
		{"bad dsn", map[string]string{"DATABASE_URL": "postgres://user:hunter2@host:notaport/db"}, "DATABASE_URL"},
		{"unknown dsn key", map[string]string{"DATABASE_URL": "host=x sslmode=sometimes password=hunter2"}, "DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"todo-backend"}, envFrom(baseEnv(tt.env)), &stdout, &stderr)
			if err == nil {
				t.Fatal("run succeeded; want a configuration error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.names) || strings.Contains(msg, "\n") {
				t.Errorf("error %q; want one line naming %s", msg, tt.names)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q leaks the database password", msg)
			}
		})
	}
}

func TestLoadConfigDefaultsAndAliases(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envFrom(map[string]string{"NEON_DATABASE_URL": "host=neon", "BETTER_AUTH_SECRET": testSecret}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.databaseURL != "host=neon" || cfg.addr != ":8000" || !cfg.cors.origins["http://localhost:3000"] || cfg.logLevel != slog.LevelInfo ||
		cfg.dbTimeout != 5*time.Second || cfg.dbWait != 30*time.Second || cfg.shutdownTimeout != 15*time.Second || cfg.dbMaxConns != 4 || cfg.dbBatchMax != 32 || cfg.clientStallTimeout != 10*time.Second {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = loadConfig(envFrom(map[string]string{
		"DATABASE_URL": "host=direct", "NEON_DATABASE_URL": "host=neon", "BETTER_AUTH_SECRET": testSecret,
		"LOG_LEVEL": "WARN", "PORT": "9000", "CORS_ORIGINS": "*", "DB_MAX_CONNS": "6", "JWT_USER_CLAIM": "uid", "DB_BATCH_MAX": "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.databaseURL != "host=direct" || cfg.logLevel != slog.LevelWarn || cfg.addr != ":9000" || !cfg.cors.anyOrigin || cfg.dbMaxConns != 6 || cfg.dbBatchMax != 1 || cfg.tokens.userClaim != "uid" {
		t.Errorf("DATABASE_URL must win over NEON_DATABASE_URL and settings apply: %+v", cfg)
	}
	for _, level := range []string{"debug", "error"} {
		if _, err := loadConfig(envFrom(map[string]string{"DATABASE_URL": "x", "BETTER_AUTH_SECRET": testSecret, "LOG_LEVEL": level})); err != nil {
			t.Errorf("LOG_LEVEL=%s: %v", level, err)
		}
	}
}

// TestEnvExampleDefaults: every setting deploy/env.example lists as a
// default gives the same configuration set as left out.
func TestEnvExampleDefaults(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("deploy/env.example")
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"DATABASE_URL": "host=db", "BETTER_AUTH_SECRET": testSecret}
	want, err := loadConfig(envFrom(base))
	if err != nil {
		t.Fatal(err)
	}
	_, defaults, found := strings.Cut(string(data), "# Every other setting, at its default")
	if !found {
		t.Fatal("deploy/env.example has no list of defaults")
	}
	checked := 0
	for _, line := range strings.Split(defaults, "\n") {
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "# "), "=")
		if !ok || strings.ContainsAny(name, " :(") {
			continue
		}
		env := map[string]string{name: value}
		for k, v := range base {
			env[k] = v
		}
		got, err := loadConfig(envFrom(env))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("deploy/env.example: %s=%s is not the default (%v)", name, value, err)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("checked %d defaults; deploy/env.example lists more", checked)
	}
}

// TestListenAddr: LISTEN_ADDR binds one address; unset, every interface.
func TestListenAddr(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{"": ":8000", "127.0.0.1": "127.0.0.1:8000", "::1": "[::1]:8000", "localhost": "localhost:8000"} {
		cfg, err := loadConfig(envFrom(map[string]string{"DATABASE_URL": "host=db", "BETTER_AUTH_SECRET": testSecret, "LISTEN_ADDR": value}))
		if err != nil || cfg.addr != want {
			t.Errorf("LISTEN_ADDR=%q: addr %q, %v; want %q", value, cfg.addr, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:80", "http://x", "a b"} {
		if _, err := loadConfig(envFrom(map[string]string{"DATABASE_URL": "host=db", "BETTER_AUTH_SECRET": testSecret, "LISTEN_ADDR": bad})); err == nil || !strings.Contains(err.Error(), "LISTEN_ADDR") {
			t.Errorf("LISTEN_ADDR=%q: %v; want an error naming LISTEN_ADDR", bad, err)
		}
	}
}
