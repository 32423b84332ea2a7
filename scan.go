package main

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Reading the store's rows into Tasks. Every statement returns
// taskColumns; these are the only functions that know their order.

// The columns every statement returns, in the order newTaskRow scans them.
// The timestamps go out as timestamptz_send's eight bytes: lib/pq reads a
// prepared statement's bytea in binary, so PostgreSQL formats no text and
// the server parses none. Formatting two timestamps per row was the largest
// part of what a list cost PostgreSQL beyond reading its rows.
const taskColumns = `id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version`

type scanner interface {
	Scan(dest ...any) error
}

// taskRow holds the destinations of one row: the columns a statement
// returns before taskColumns (a batch's position or user id), then
// taskColumns. Made once per statement and reused for each of its rows,
// so scanning a list allocates nothing of ours per row.
type taskRow struct {
	task        Task
	description sql.NullString
	dest        []any
}

func newTaskRow(lead ...any) *taskRow {
	r := &taskRow{}
	r.dest = append(lead, int64Column{&r.task.ID}, &r.task.Title, &r.description, &r.task.Completed,
		pgTimestamp{&r.task.CreatedAt}, pgTimestamp{&r.task.UpdatedAt}, int64Column{&r.task.Version})
	return r
}

// scan reads the next row into r.task, which holds until the next scan
// (its Description points into r; see kept). UserID is left as it is.
func (r *taskRow) scan(row scanner) error {
	if err := row.Scan(r.dest...); err != nil {
		return err
	}
	r.task.Description = nil
	if r.description.Valid {
		r.task.Description = &r.description.String
	}
	return nil
}

// kept is a copy of r.task that outlives the next scan.
func (r *taskRow) kept() Task {
	t := r.task
	if t.Description != nil {
		description := *t.Description
		t.Description = &description
	}
	return t
}

// scanOne reads the one task a statement returns; no row is errNotFound.
func scanOne(row *sql.Row, userID, op string) (Task, error) {
	r := newTaskRow()
	err := r.scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, errNotFound
	}
	if err != nil {
		return Task{}, fmt.Errorf("%s: %w", op, err)
	}
	t := r.task // r is not scanned again: no copy of the description needed
	t.UserID = userID
	return t, nil
}

// int64Column scans a bigint without the reflection database/sql uses for
// a plain *int64: two of every row's seven columns.
type int64Column struct{ p *int64 }

// Scan implements sql.Scanner. lib/pq decodes bigint to int64 in binary
// and text results alike.
func (c int64Column) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("bigint: unexpected %T", src)
	}
	*c.p = v
	return nil
}

// pgTimestamp scans timestamptz_send's eight bytes into a time.Time.
type pgTimestamp struct{ t *time.Time }

// postgresEpochMicros is 2000-01-01 UTC, where timestamptz_send counts from,
// in microseconds since 1970.
const postgresEpochMicros = 946_684_800 * 1_000_000

// Scan implements sql.Scanner. A prepared statement's bytea comes in
// binary, an unnamed one's as hex text, which lib/pq decodes: the same
// eight bytes either way.
func (p pgTimestamp) Scan(src any) error {
	b, ok := src.([]byte)
	if !ok || len(b) != 8 {
		return fmt.Errorf("timestamp: want timestamptz_send's 8 bytes, got %T of %d", src, len(b))
	}
	micros := int64(binary.BigEndian.Uint64(b))
	*p.t = time.UnixMicro(micros + postgresEpochMicros).UTC()
	return nil
}
