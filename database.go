package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"
)

//go:embed schema.sql
var schemaSQL string

// schemaLockKey names the advisory lock that serialises schema application
// when several instances start at once on an empty database.
const schemaLockKey int64 = 0x746f646f5f736368 // "todo_sch"

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

// applySchema makes the database match schema.sql. CREATE ... IF NOT EXISTS
// alone races when two instances start together, hence the lock.
func applySchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
		return fmt.Errorf("apply schema: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply schema: commit: %w", err)
	}
	return nil
}

// isUnavailable reports whether err means the database could not be reached
// or is not accepting work, as opposed to a fault in the request or the code.
func isUnavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ENOENT) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		code := string(pqErr.Code)
		// 08: connection exception; 57P0x: shutdown or cannot connect now;
		// 53300: too many connections.
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P0") || code == "53300"
	}
	return false
}
