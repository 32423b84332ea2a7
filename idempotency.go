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

// claimKeySQL: $4 and $5 are the quotas (quotaLimits): a key counts
// toward the user's bytes.
var claimKeySQL = `INSERT INTO idempotency_keys (user_id, key, fingerprint)
SELECT $1::text, $2::text, $3::bytea
FROM ` + quotaLimits(4) + `
ON CONFLICT (user_id, key) DO NOTHING`

const saveKeySQL = `UPDATE idempotency_keys SET task_id = $3, task_version = $4, task_created = $5
WHERE user_id = $1 AND key = $2`

const getKeySQL = `SELECT fingerprint, task_id, task_version, timestamptz_send(task_created) FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND created_at >= now() - ` + idempotencyTTL

// sweepKeysSQL is the one statement not scoped by user: housekeeping that
// removes a bounded batch of any user's expired keys, skipping rows another
// sweeper holds so sweepers never wait on or deadlock with each other.
const sweepKeysSQL = `DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys
    WHERE created_at < now() - ` + idempotencyTTL + `
    LIMIT 100 FOR UPDATE SKIP LOCKED))`

// CreateTaskOnce creates a task for an Idempotency-Key. The first request
// with the key creates the task and saves its id, version and creation
// time in one transaction. A repeat with the same fingerprint gets that
// same task back as it was created (replayed true): its fingerprint
// matched, so its own title, description and completed are the first
// request's. One with another fingerprint gets errKeyReused. A concurrent
// repeat waits on the key's row until the first commits or rolls back.
func (s *Store) CreateTaskOnce(ctx context.Context, userID, key string, fingerprint []byte, in taskInput) (task Task, replayed bool, err error) {
	err = s.entered(ctx, func() error {
		for attempt := 0; attempt < 3; attempt++ {
			var created bool
			task, created, err = s.claimKeyAndCreate(ctx, userID, key, fingerprint, in)
			if err != nil || created {
				if created {
					// Best effort: a failed sweep leaves work for the next insert.
					s.sweepExpiredKeys.ExecContext(ctx)
				}
				return err
			}
			var stored []byte
			task = Task{UserID: userID, Title: in.title, Description: in.description, Completed: in.completed}
			err = s.getKey.QueryRowContext(ctx, userID, key).Scan(&stored, &task.ID, &task.Version, pgTimestamp{&task.CreatedAt})
			if errors.Is(err, sql.ErrNoRows) {
				continue // it expired and was swept in between: claim it afresh
			}
			if err != nil {
				return fmt.Errorf("read idempotency key: %w", err)
			}
			if !bytes.Equal(stored, fingerprint) {
				return errKeyReused
			}
			task.UpdatedAt, replayed = task.CreatedAt, true
			return nil
		}
		return errors.New("idempotency key: could not claim or read the key")
	})
	return task, replayed, err
}

// claimKeyAndCreate creates the task and reports created, or reports that
// another request holds the key.
func (s *Store) claimKeyAndCreate(ctx context.Context, userID, key string, fingerprint []byte, in taskInput) (task Task, created bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Task{}, false, fmt.Errorf("create task once: %w", err)
	}
	defer tx.Rollback()
	if _, err := s.dropExpiredKey.inTx(ctx, tx).ExecContext(ctx, userID, key); err != nil {
		return Task{}, false, fmt.Errorf("create task once: drop expired key: %w", err)
	}
	res, err := s.claimKey.inTx(ctx, tx).ExecContext(ctx, userID, key, fingerprint, s.opts.quotaTasks, s.opts.quotaBytes)
	if err != nil {
		return Task{}, false, fmt.Errorf("create task once: claim key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return Task{}, false, err
	}
	task, err = scanOne(s.createTask.inTx(ctx, tx).QueryRowContext(ctx, userID, in.title, in.description, in.completed,
		s.opts.quotaTasks, s.opts.quotaBytes), userID, "create task once")
	if err != nil {
		return Task{}, false, err
	}
	if _, err := s.saveKey.inTx(ctx, tx).ExecContext(ctx, userID, key, task.ID, task.Version, task.CreatedAt); err != nil {
		return Task{}, false, fmt.Errorf("create task once: save the key: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Task{}, false, fmt.Errorf("create task once: commit: %w", err)
	}
	return task, true, nil
}
