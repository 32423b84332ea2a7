package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// Prepared statements behind poolers: the start-up probe that decides
// whether statements are prepared at all (openDB), and what a statement
// lost after start answers.

// probePreparedStatements finds out whether a statement a connection
// prepares stays that connection's own all the way to PostgreSQL. lib/pq
// names each connection's statements 1, 2, 3 ... in the order it prepares
// them, so behind a pooler in transaction mode that does not track them
// (PgBouncer before 1.21, or with max_prepared_statements=0), the same
// name means different SQL on different server connections, and a Bind
// can run another request's statement. Two new connections each prepare
// their first statement (both named "1"), which return different values,
// and run them in turn: directly, through a pooler in session mode, or
// through one that tracks statements (PgBouncer 1.21+ with
// max_prepared_statements), each always gets its own value. Behind a
// pooler that shares server connections without tracking, the second
// Parse meets the first one's "1" (42P05), or an execution lands on the
// other's statement or on none. Any failure counts as "does not hold":
// unnamed statements are always safe.
func probePreparedStatements(ctx context.Context, connector driver.Connector) (found string, holds bool) {
	var conns []driver.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var stmts []driver.Stmt
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	for i := range 2 {
		c, err := connector.Connect(ctx)
		if err != nil {
			return "could not connect: " + err.Error(), false
		}
		conns = append(conns, c)
		st, err := c.Prepare(fmt.Sprintf("SELECT %d::int AS todo_backend_probe", i+1))
		if err != nil {
			return fmt.Sprintf("connection %d could not prepare its statement: %v", i+1, err), false
		}
		stmts = append(stmts, st)
	}
	for round := range 8 {
		i := round % 2
		got, err := queryInt(ctx, stmts[i])
		if err != nil {
			return fmt.Sprintf("connection %d's statement failed: %v", i+1, err), false
		}
		if got != int64(i+1) {
			return fmt.Sprintf("connection %d's statement ran connection %d's", i+1, got), false
		}
	}
	return "two connections each ran their own statement 8 times", true
}

// queryInt runs st and reads the one integer it returns.
func queryInt(ctx context.Context, st driver.Stmt) (int64, error) {
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		return 0, err
	}
	v, ok := dest[0].(int64)
	if !ok {
		return 0, fmt.Errorf("unexpected %T", dest[0])
	}
	return v, nil
}

// checkPooler turns the errors of a lost prepared statement into a 503,
// and logs once what to do. The start-up probe (probePreparedStatements)
// turns prepared statements off behind a pooler that cannot hold them, so
// this is for a path that changed after start, such as a reconfigured
// PgBouncer.
func (s *Store) checkPooler(err error) error {
	if err == nil || !s.opts.prepared || !isPreparedStatementLost(err) {
		return err
	}
	s.poolerWarning.Do(func() {
		s.opts.logger.Error("the database or its pooler lost a prepared statement, which the start-up probe found it kept: restart the server so that the probe runs again, or set DB_PREPARED_STATEMENTS=false",
			"error", err.Error())
	})
	// The service is misconfigured, not the request: a 503 like an outage.
	return errUnavailable(err)
}

// isPreparedStatementLost: 26000 prepared statement does not exist, 42P05
// already exists, or a Bind that reached another client's statement.
func isPreparedStatementLost(err error) bool {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return false
	}
	switch pqErr.Code {
	case "26000", "42P05":
		return true
	case "08P01":
		return strings.Contains(pqErr.Message, "prepared statement")
	}
	return false
}
