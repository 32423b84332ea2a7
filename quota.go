package main

import (
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// Per-user quotas: schema.sql's triggers keep user_usage and refuse a write
// past the limits it carries (storeOptions); the store maps that refusal.

// quotaExceededCode is the SQLSTATE schema.sql's apply_usage raises when a
// write would take a user over QUOTA_TASKS or QUOTA_BYTES.
const quotaExceededCode = "TQ001"

// quotaLimits is the one-row subquery by which a write carries this
// instance's quotas, its parameters $n (QUOTA_TASKS) and $n+1
// (QUOTA_BYTES): set_config(..., true) gives them to the statement's
// transaction, where schema.sql's apply_usage reads them. So each instance
// enforces the limits it was started with, whatever the others were.
func quotaLimits(n int) string {
	return fmt.Sprintf("(SELECT set_config('todo.quota_tasks', $%d::text, true), set_config('todo.quota_bytes', $%d::text, true)) AS quota", n, n+1)
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
