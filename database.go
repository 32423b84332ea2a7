package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// databaseConfig is DATABASE_URL read as lib/pq reads it, with the
// settings lib/pq does not know made good.
type databaseConfig struct {
	pq pq.Config
	// channelBinding is the string's channel_binding ("" when absent).
	// lib/pq has no SCRAM-SHA-256-PLUS, so require is kept as a demand for
	// a verified certificate: see parseDatabaseURL.
	channelBinding string
	// verifyAdded: sslmode=verify-full came from channel_binding=require.
	verifyAdded bool
}

// parseDatabaseURL reads a URL or key=value DSN. Neon's console strings end
// in ?sslmode=require&channel_binding=require; lib/pq would send the
// unknown channel_binding to the server as a run-time setting, which
// PostgreSQL (42704) and PgBouncer (08P01) refuse. channel_binding asks for
// protection against a man in the middle, which binding cannot give here,
// so require becomes sslmode=verify-full (the server's certificate must
// verify and name the host), with sslrootcert=system unless the string
// names a root certificate; disable and prefer need nothing (prefer allows
// a connection without binding). Without prepared statements, every
// statement goes unnamed in one round trip (binary_parameters=yes).
func parseDatabaseURL(raw string, preparedStatements bool) (databaseConfig, error) {
	cfg, err := pq.NewConfig(raw)
	if err != nil {
		// The message may quote the URL, and the URL may hold a password.
		msg := strings.ReplaceAll(err.Error(), raw, "<redacted>")
		return databaseConfig{}, fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL or DSN: %s", msg)
	}
	dc := databaseConfig{pq: cfg}
	if binding, ok := cfg.Runtime["channel_binding"]; ok {
		delete(dc.pq.Runtime, "channel_binding")
		dc.channelBinding = binding
		switch binding {
		case "disable", "prefer":
		case "require":
			switch cfg.SSLMode {
			case pq.SSLModeDisable, pq.SSLModeAllow:
				return databaseConfig{}, fmt.Errorf("DATABASE_URL: channel_binding=require needs TLS, but sslmode=%s turns it off; use sslmode=require (or verify-full)", cfg.SSLMode)
			case pq.SSLModeVerifyFull:
			default:
				dc.pq.SSLMode, dc.verifyAdded = pq.SSLModeVerifyFull, true
			}
			if dc.pq.SSLRootCert == "" {
				dc.pq.SSLRootCert = "system"
			}
		default:
			return databaseConfig{}, fmt.Errorf("DATABASE_URL: channel_binding must be disable, prefer or require, got %q", binding)
		}
	}
	if !preparedStatements {
		dc.pq.BinaryParameters = true
	}
	return dc, nil
}

// describeTLS is the start-up log line's account of how the connection is
// protected; it names no host, user or password.
func (dc databaseConfig) describeTLS() string {
	root := dc.pq.SSLRootCert
	if root == "" {
		root = "none"
	}
	return fmt.Sprintf("sslmode=%s sslrootcert=%s", dc.pq.SSLMode, root)
}

// openDB opens the pool and waits, with backoff, up to DB_WAIT for the
// database to answer: a Neon compute may be waking from suspend. Only
// failures that can pass are retried; a wrong password, database or
// setting, or a refused TLS handshake, stops at once with its reason.
// It reports whether the store may use named prepared statements: with
// DB_PREPARED_STATEMENTS on, only when probePreparedStatements finds that
// the path to PostgreSQL keeps them (see there); it logs one line saying
// what it found and what it chose.
func openDB(ctx context.Context, cfg config, logger *slog.Logger) (db *sql.DB, prepared bool, err error) {
	dc, err := parseDatabaseURL(cfg.databaseURL, cfg.dbPreparedStatements)
	if err != nil {
		return nil, false, err
	}
	if dc.channelBinding == "require" {
		logger.Info("DATABASE_URL has channel_binding=require, which lib/pq cannot do: the server's certificate must verify instead",
			"tls", dc.describeTLS())
	}
	connector, err := dc.connector(cfg.dbTimeout)
	if err != nil {
		return nil, false, err
	}
	db, err = connectPool(ctx, connector, dc, cfg, logger)
	if err != nil || !cfg.dbPreparedStatements {
		if err == nil {
			logger.Info("prepared statements: off (DB_PREPARED_STATEMENTS=false): every statement goes unnamed")
		}
		return db, false, err
	}
	found, holds := probePreparedStatements(ctx, connector)
	if holds {
		logger.Info("prepared statements: the path to PostgreSQL keeps each connection's own, so statements are prepared once per connection", "probe", found)
		return db, true, nil
	}
	logger.Warn("prepared statements: the path to PostgreSQL does not keep each connection's own (a pooler in transaction mode that does not track them), so every statement goes unnamed", "probe", found)
	db.Close()
	dc.pq.BinaryParameters = true // unnamed statements in one round trip
	if connector, err = dc.connector(cfg.dbTimeout); err != nil {
		return nil, false, err
	}
	db, err = connectPool(ctx, connector, dc, cfg, logger)
	return db, false, err
}

// connector is lib/pq's, with DB_TIMEOUT deadlines on every connection.
func (dc databaseConfig) connector(dbTimeout time.Duration) (*pq.Connector, error) {
	connector, err := pq.NewConnectorConfig(dc.pq)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	connector.Dialer(&deadlineDialer{limit: dbTimeout})
	return connector, nil
}

// connectPool opens the pool over connector and waits for the database.
func connectPool(ctx context.Context, connector *pq.Connector, dc databaseConfig, cfg config, logger *slog.Logger) (*sql.DB, error) {
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
		if !retryableAtStart(err) {
			db.Close()
			return nil, dc.explainStartFailure(err)
		}
		if time.Now().Add(backoff).After(deadline) {
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

// retryableAtStart tells failures that can pass (nothing listening yet, a
// timeout, a Neon compute starting, a name not resolvable yet, too many
// connections) from those that will not (a refused password, database or
// setting, a TLS handshake the server or the client refuses).
func retryableAtStart(err error) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		code := string(pqErr.Code)
		// 57P03: cannot connect now (starting up); 57P01/57P02: shut down;
		// 53300: too many connections; 08006/08001: the link failed.
		// 08P01 is also PgBouncer refusing a startup parameter, which is
		// final; only its "server login has been failing" passes.
		return code == "57P03" || code == "57P01" || code == "57P02" || code == "53300" || code == "08006" || code == "08001" ||
			code == "08P01" && strings.Contains(pqErr.Message, "server login")
	}
	if isCertificateError(err) || errors.Is(err, pq.ErrSSLNotSupported) || strings.Contains(err.Error(), "tls:") {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true // a new Neon endpoint's name can take a moment to resolve
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		isTimeout(err)
}

// isCertificateError reports whether the server's certificate did not
// verify: an unknown authority or another host's name.
func isCertificateError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	return errors.As(err, &certErr) || errors.As(err, &unknownAuthority) || errors.As(err, &hostnameErr)
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// explainStartFailure is the one line a permanent start-up failure ends
// with: the real reason, and for a certificate that channel_binding=require
// made us verify, how to fix it. It never holds the password.
func (dc databaseConfig) explainStartFailure(err error) error {
	if dc.channelBinding == "require" && isCertificateError(err) {
		return fmt.Errorf("database: the server's certificate did not verify (%s), which channel_binding=require in DATABASE_URL asks for here "+
			"(lib/pq cannot bind channels, so it verifies the certificate instead): add sslrootcert=/path/to/ca.pem naming the server's CA, "+
			"or drop channel_binding=require to encrypt without verifying the certificate (sslmode=require): %w", dc.describeTLS(), err)
	}
	return fmt.Errorf("database refused the connection (not retried): %w", err)
}

// deadlineDialer gives every database connection read and write deadlines
// of limit (DB_TIMEOUT) from each write. lib/pq answers a request's
// deadline only with a CancelRequest and then waits for the server; behind
// PgBouncer, which drops cancels for a client not yet linked to a server,
// that wait lasted until its server_login_retry. With the deadline, a
// connection that hears nothing fails, is dropped by the pool, and the
// request gets its 503.
type deadlineDialer struct {
	limit time.Duration
	d     net.Dialer
}

func (d *deadlineDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *deadlineDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// DialContext dials and wraps the connection; see deadlineDialer.
func (d *deadlineDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, limit: d.limit}, nil
}

// deadlineConn sets the deadline on each Write: lib/pq reads only after it
// has written (a query, a sync), so an idle connection never times out.
type deadlineConn struct {
	net.Conn
	limit time.Duration
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.limit))
	return c.Conn.Write(b)
}

// statement is one of the store's SQL statements: prepared once, or, with
// DB_PREPARED_STATEMENTS=false, sent unnamed with every call (lib/pq's
// binary_parameters makes that one round trip: Parse, Bind and Execute in
// one batch, which a pooler in transaction mode keeps on one server
// connection).
type statement struct {
	query string
	stmt  *sql.Stmt // nil when unprepared
	conn  queryer   // the pool or a transaction, when unprepared
	// read: the statement only reads, and runs without its context's
	// cancellation. A cancellable context costs every statement two
	// goroutines (database/sql's and lib/pq's watchers) and their
	// wake-ups, which showed in the open-loop tail of get. A read never
	// waits on a row lock; what still bounds it is the connection's own
	// deadline, DB_TIMEOUT after each write to it (deadlineConn), which
	// ends in the same 503. Writes keep their cancellation: a write that
	// waits on a row lock must be cancelled, not left to commit after its
	// client was answered.
	read bool
}

// context is ctx as the statement runs under it (see read).
func (st *statement) context(ctx context.Context) context.Context {
	if st.read {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (st *statement) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	ctx = st.context(ctx)
	if st.stmt != nil {
		return st.stmt.QueryContext(ctx, args...)
	}
	return st.conn.QueryContext(ctx, st.query, args...)
}

func (st *statement) QueryRowContext(ctx context.Context, args ...any) *sql.Row {
	ctx = st.context(ctx)
	if st.stmt != nil {
		return st.stmt.QueryRowContext(ctx, args...)
	}
	return st.conn.QueryRowContext(ctx, st.query, args...)
}

func (st *statement) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	if st.stmt != nil {
		return st.stmt.ExecContext(ctx, args...)
	}
	return st.conn.ExecContext(ctx, st.query, args...)
}

// inTx is the statement within tx.
func (st *statement) inTx(ctx context.Context, tx *sql.Tx) *statement {
	if st.stmt != nil {
		return &statement{query: st.query, stmt: tx.StmtContext(ctx, st.stmt), read: st.read}
	}
	return &statement{query: st.query, conn: tx, read: st.read}
}

// warnIfFewSlots logs one warning when PostgreSQL has fewer connection
// slots free than this instance's pool may open (DB_MAX_CONNS): every
// instance's pool, and every other client, must fit max_connections less
// the reserved slots, or a pooler must stand in front. Not knowing is no
// reason to stop: a failed look is logged at debug.
func warnIfFewSlots(ctx context.Context, db *sql.DB, maxConns int, logger *slog.Logger) {
	var free int
	err := db.QueryRowContext(ctx, `SELECT current_setting('max_connections')::int
	    - current_setting('superuser_reserved_connections')::int
	    - coalesce(current_setting('reserved_connections', true)::int, 0)
	    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int`).Scan(&free)
	if err != nil {
		logger.Debug("could not count PostgreSQL's free connection slots", "error", err.Error())
		return
	}
	free += db.Stats().OpenConnections // this pool's own are its to reuse
	if free < maxConns {
		logger.Warn("PostgreSQL has fewer free connection slots than DB_MAX_CONNS: instances x DB_MAX_CONNS must fit max_connections less its reserved slots, or put a pooler in front",
			"free_slots", free, "DB_MAX_CONNS", maxConns)
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
