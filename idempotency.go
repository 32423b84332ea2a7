package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Idempotency-Key: the statements and the store method that create a task
// at most once per user and key.

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = `interval '24 hours'`

const dropExpiredKeySQL = `DELETE FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND created_at < now() - ` + idempotencyTTL

const claimKeySQL = `INSERT INTO idempotency_keys (user_id, key, fingerprint)
VALUES ($1, $2, $3)
ON CONFLICT (user_id, key) DO NOTHING`

const saveKeyResponseSQL = `UPDATE idempotency_keys SET task_id = $3, task_version = $4, task_created = $5
WHERE user_id = $1 AND key = $2`

const getKeySQL = `SELECT fingerprint, task_id, task_version, task_created, response FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND created_at >= now() - ` + idempotencyTTL

// sweepKeysSQL is the one statement not scoped by user: housekeeping that
// removes a bounded batch of any user's expired keys, skipping rows another
// sweeper holds so sweepers never wait on or deadlock with each other.
const sweepKeysSQL = `DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys
    WHERE created_at < now() - ` + idempotencyTTL + `
    LIMIT 100 FOR UPDATE SKIP LOCKED))`

// createdOnce is what an Idempotency-Key remembers of the task it created:
// enough to answer a retry with the very same 201.
type createdOnce struct {
	taskID   int64
	version  sql.NullInt64 // the ETag's version; NULL for keys saved before it was kept
	body     []byte
	replayed bool
}

// replayBody rebuilds the first answer's body from the retry's own input
// (its fingerprint matched, so title, description and completed are the
// same) and the id, version and creation time the key kept.
func replayBody(userID string, in taskInput, created createdOnce, createdAt string, render func(*Task) []byte) ([]byte, error) {
	t := Task{ID: created.taskID, UserID: userID, Title: in.title, Description: in.description, Completed: in.completed, Version: created.version.Int64}
	if err := (pgTimestamp{&t.CreatedAt}).Scan(createdAt); err != nil {
		return nil, fmt.Errorf("replay idempotency key: %w", err)
	}
	t.UpdatedAt = t.CreatedAt
	return render(&t), nil
}

// CreateTaskOnce creates a task for an Idempotency-Key. The first request
// with the key creates the task and saves its id, version and creation
// time in one transaction; a repeat with the same fingerprint gets the
// same 201 body back, rebuilt by render (replayed true), and one with another fingerprint gets errKeyReused. A
// concurrent repeat waits on the key's row until the first commits or
// rolls back.
func (s *Store) CreateTaskOnce(ctx context.Context, userID, key string, fingerprint []byte, in taskInput, render func(*Task) []byte) (created createdOnce, err error) {
	err = s.entered(ctx, func() error {
		for attempt := 0; attempt < 3; attempt++ {
			created, err = s.claimKeyAndCreate(ctx, userID, key, fingerprint, in, render)
			if err != nil {
				return err
			}
			if created.body != nil {
				// Best effort: a failed sweep leaves work for the next insert.
				s.sweepExpiredKeys.ExecContext(ctx)
				return nil
			}
			var stored []byte
			var createdAt sql.NullString
			err = s.getKey.QueryRowContext(ctx, userID, key).Scan(&stored, &created.taskID, &created.version, &createdAt, &created.body)
			if errors.Is(err, sql.ErrNoRows) {
				continue // it expired and was swept in between: claim it afresh
			}
			if err != nil {
				return fmt.Errorf("read idempotency key: %w", err)
			}
			if !bytes.Equal(stored, fingerprint) {
				return errKeyReused
			}
			created.replayed = true
			if created.body == nil { // saved by this version: rebuilt, not stored
				created.body, err = replayBody(userID, in, created, createdAt.String, render)
			}
			return err
		}
		return errors.New("idempotency key: could not claim or read the key")
	})
	return created, err
}

// claimKeyAndCreate returns a nil body when another request holds the key.
func (s *Store) claimKeyAndCreate(ctx context.Context, userID, key string, fingerprint []byte, in taskInput, render func(*Task) []byte) (createdOnce, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return createdOnce{}, fmt.Errorf("create task once: %w", err)
	}
	defer tx.Rollback()
	if _, err := s.dropExpiredKey.inTx(ctx, tx).ExecContext(ctx, userID, key); err != nil {
		return createdOnce{}, fmt.Errorf("create task once: drop expired key: %w", err)
	}
	res, err := s.claimKey.inTx(ctx, tx).ExecContext(ctx, userID, key, fingerprint)
	if err != nil {
		return createdOnce{}, fmt.Errorf("create task once: claim key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return createdOnce{}, err
	}
	task, err := scanOne(s.createTask.inTx(ctx, tx).QueryRowContext(ctx, userID, in.title, in.description, in.completed), userID, "create task once")
	if err != nil {
		return createdOnce{}, err
	}
	created := createdOnce{taskID: task.ID, version: sql.NullInt64{Int64: task.Version, Valid: true}, body: render(&task)}
	createdAt := task.CreatedAt.UTC().Format("2006-01-02 15:04:05.999999-07")
	if _, err := s.saveKeyResponse.inTx(ctx, tx).ExecContext(ctx, userID, key, task.ID, task.Version, createdAt); err != nil {
		return createdOnce{}, fmt.Errorf("create task once: save response: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return createdOnce{}, fmt.Errorf("create task once: commit: %w", err)
	}
	return created, nil
}
