package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// Per-user quotas: schema.sql's triggers keep user_usage and refuse a write
// past the limits this file records; the store maps that refusal.

// quotaExceededCode is the SQLSTATE schema.sql's apply_usage raises when a
// write would take a user over QUOTA_TASKS or QUOTA_BYTES.
const quotaExceededCode = "TQ001"

const setQuotaLimitsSQL = `INSERT INTO quota_limits (id, max_tasks, max_bytes) VALUES (true, $1, $2)
ON CONFLICT (id) DO UPDATE SET max_tasks = EXCLUDED.max_tasks, max_bytes = EXCLUDED.max_bytes`

// setQuotaLimits records this server's quotas (0: none) for the triggers.
// Instances sharing a database share one setting: the last to start wins.
func setQuotaLimits(ctx context.Context, db *sql.DB, maxTasks, maxBytes int64) error {
	if _, err := db.ExecContext(ctx, setQuotaLimitsSQL, maxTasks, maxBytes); err != nil {
		return fmt.Errorf("set quotas: %w", err)
	}
	return nil
}

// quotaError turns the triggers' quota refusal into the contract's answer;
// the statement that raised it wrote nothing.
func quotaError(err error) error {
	if err == nil {
		return nil // before pqErr, which escapes: no allocation per answer
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == quotaExceededCode {
		return &apiError{code: codeQuotaExceeded, detail: pqErr.Message + " per user (QUOTA_TASKS, QUOTA_BYTES)", cause: err}
	}
	return err
}
