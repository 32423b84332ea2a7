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
// part of what a list cost PostgreSQL beyond reading its rows (README,
// Performance).
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

// pgTimestamp scans a timestamp into a time.Time: timestamptz_send's eight
// bytes (the task columns), or timestamptz's text output (an idempotency
// key's task_created, kept as text).
type pgTimestamp struct{ t *time.Time }

// postgresEpochMicros is 2000-01-01 UTC, where timestamptz_send counts from,
// in microseconds since 1970.
const postgresEpochMicros = 946_684_800 * 1_000_000

// Scan implements sql.Scanner.
func (p pgTimestamp) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case string:
		s = v
	case []byte:
		// A text timestamp is never eight bytes long.
		if len(v) == 8 {
			micros := int64(binary.BigEndian.Uint64(v))
			*p.t = time.UnixMicro(micros + postgresEpochMicros).UTC()
			return nil
		}
		s = string(v)
	default:
		return fmt.Errorf("timestamp: unexpected %T", src)
	}
	// PostgreSQL's ISO output in the session's time zone:
	// 2026-01-18 10:00:00.123456+00, +05:30, -03 ...
	t, ok := parsePGTimestamp(s)
	if !ok {
		return fmt.Errorf("timestamp: unexpected format %q", s)
	}
	*p.t = t
	return nil
}

// parsePGTimestamp reads YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]].
func parsePGTimestamp(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02 15:04:05+00") || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	second, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	i, nanos := 19, 0
	if i < len(s) && s[i] == '.' {
		i++
		scale := 100_000_000
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			nanos += int(s[i]-'0') * scale
			scale /= 10
		}
	}
	// The offset: ±HH, ±HH:MM or ±HH:MM:SS.
	zone := len(s) - i
	if (zone != 3 && zone != 6 && zone != 9) || (s[i] != '+' && s[i] != '-') {
		return time.Time{}, false
	}
	sign := 1
	if s[i] == '-' {
		sign = -1
	}
	offset, ok := num(i+1, i+3)
	if !ok {
		return time.Time{}, false
	}
	offset *= 3600
	for j, unit := i+3, 60; j < len(s); j, unit = j+3, 1 {
		part, ok := num(j+1, j+3)
		if s[j] != ':' || !ok {
			return time.Time{}, false
		}
		offset += part * unit
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nanos, time.UTC)
	return t.Add(-time.Duration(sign*offset) * time.Second), true
}
