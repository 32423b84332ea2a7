package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// config is the server's settings: what it reads from its environment,
// and the clock that tests pin.
type config struct {
	databaseURL string
	tokens      tokenSettings
	addr        string
	cors        corsPolicy
	logLevel    slog.Level
	dbTimeout   time.Duration
	// clientStallTimeout: how long a client may take to accept one piece
	// of a streamed answer before it is cut (CLIENT_STALL_TIMEOUT).
	clientStallTimeout time.Duration
	dbWait             time.Duration
	dbMaxConns         int
	dbBatchMax         int // DB_BATCH_MAX: requests per coalesced statement; 1 is off
	// dbPreparedStatements: false sends every statement unnamed, for a
	// pooler in transaction mode that cannot hold prepared statements.
	dbPreparedStatements bool
	shutdownTimeout      time.Duration
	lameDuck             time.Duration // SHUTDOWN_LAME_DUCK, within shutdownTimeout
	rateLimitRPS         float64
	rateLimitBurst       int
	quotaTasks           int    // QUOTA_TASKS per user; 0: none
	quotaBytes           int    // QUOTA_BYTES per user (title and description bytes, and 64 + key per idempotency key); 0: none
	metricsAddr          string // empty: no metrics listener
	authOrigin           string // origin of BETTER_AUTH_URL; empty: no JWKS tokens
	jwksURL              string
	clock                func() time.Time // nil: time.Now; tests pin it
}

// tokenSettings are the JWT settings the server and the token command
// share, read in one place.
type tokenSettings struct {
	secret    []byte // nil: no HS256 tokens
	issuer    string
	audience  string
	userClaim string // empty: the default claims, sub first
}

// minSecretBytes is the HS256 key size RFC 7518 section 3.2 asks for.
const minSecretBytes = 32

// loadTokenSettings reads BETTER_AUTH_SECRET, JWT_ISSUER, JWT_AUDIENCE and
// JWT_USER_CLAIM. The secret may be left out only when needSecret is false.
func loadTokenSettings(getenv func(string) string, needSecret bool) (tokenSettings, error) {
	s := tokenSettings{issuer: getenv("JWT_ISSUER"), audience: getenv("JWT_AUDIENCE")}
	if getenv("BETTER_AUTH_SECRET") != "" || needSecret {
		secret, err := loadSecret(getenv)
		if err != nil {
			return tokenSettings{}, err
		}
		s.secret = secret
	}
	if name := getenv("JWT_USER_CLAIM"); name != "" {
		if strings.TrimSpace(name) != name {
			return tokenSettings{}, fmt.Errorf("JWT_USER_CLAIM must be a bare claim name, got %q", name)
		}
		s.userClaim = name
	}
	return s, nil
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

// loadConfig reads and checks every setting; an error names the variable.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
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
	var err error
	if cfg.tokens, err = loadTokenSettings(getenv, cfg.authOrigin == ""); err != nil {
		return config{}, err
	}

	port := getenv("PORT")
	if port == "" {
		port = "8000"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("PORT must be a TCP port number from 0 to 65535, got %q", port)
	}
	// LISTEN_ADDR: the one address to listen on; empty, every interface.
	host := getenv("LISTEN_ADDR")
	if host != "" && (strings.ContainsAny(host, ":/ ") && net.ParseIP(host) == nil) {
		return config{}, fmt.Errorf("LISTEN_ADDR must be an IP address or a host name such as 127.0.0.1, ::1 or localhost (the port is PORT), got %q", host)
	}
	cfg.addr = net.JoinHostPort(host, port)

	origins := getenv("CORS_ORIGINS")
	if origins == "" {
		origins = "http://localhost:3000"
	}
	if cfg.cors, err = parseCORSOrigins(origins); err != nil {
		return config{}, fmt.Errorf("CORS_ORIGINS: %w", err)
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
		{"CLIENT_STALL_TIMEOUT", &cfg.clientStallTimeout, 10 * time.Second},
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

	// SHUTDOWN_LAME_DUCK may be 0: no lame-duck period (make faults shows
	// what that costs).
	cfg.lameDuck = time.Second
	if v := getenv("SHUTDOWN_LAME_DUCK"); v != "" {
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed < 0 {
			return config{}, fmt.Errorf("SHUTDOWN_LAME_DUCK must be a duration such as 1s (0 for none), got %q", v)
		}
		cfg.lameDuck = parsed
	}
	if cfg.lameDuck >= cfg.shutdownTimeout && getenv("SHUTDOWN_LAME_DUCK") == "" {
		cfg.lameDuck = cfg.shutdownTimeout / 3 // the default must fit a short SHUTDOWN_TIMEOUT
	}
	if cfg.lameDuck >= cfg.shutdownTimeout {
		return config{}, fmt.Errorf("SHUTDOWN_LAME_DUCK (%s) must be shorter than SHUTDOWN_TIMEOUT (%s)", cfg.lameDuck, cfg.shutdownTimeout)
	}

	counts := []struct {
		name     string
		target   *int
		value    int
		min, max int
	}{
		{"DB_MAX_CONNS", &cfg.dbMaxConns, 4, 1, 1000},
		{"DB_BATCH_MAX", &cfg.dbBatchMax, 32, 1, 1000},
		{"RATE_LIMIT_BURST", &cfg.rateLimitBurst, 100, 1, 1_000_000},
		{"QUOTA_TASKS", &cfg.quotaTasks, 10_000, 0, 1 << 31},
		{"QUOTA_BYTES", &cfg.quotaBytes, 50 << 20, 0, 1 << 40},
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

	switch v := strings.ToLower(getenv("DB_PREPARED_STATEMENTS")); v {
	case "", "true", "1", "yes", "on":
		cfg.dbPreparedStatements = true
	case "false", "0", "no", "off":
	default:
		return config{}, fmt.Errorf("DB_PREPARED_STATEMENTS must be true or false, got %q", v)
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
