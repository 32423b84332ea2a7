package main

import (
	"errors"

	"github.com/lib/pq"
)

// Per-user quotas: schema.sql's triggers keep user_usage and refuse a write
// past the limits it carries (storeOptions); the store maps that refusal.

// quotaExceededCode is the SQLSTATE schema.sql's apply_usage raises when a
// write would take a user over QUOTA_TASKS or QUOTA_BYTES.
const quotaExceededCode = "TQ001"

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
