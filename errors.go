package main

// The contract's errors: the codes of docs/API.md and the apiError that
// carries one, made by the store and the handlers alike and answered by
// writeError (respond.go), the one place that knows their HTTP statuses.

// The contract's error codes.
const (
	codeBadRequest             = "BAD_REQUEST"
	codeAuthenticationRequired = "AUTHENTICATION_REQUIRED"
	codeNotFound               = "RESOURCE_NOT_FOUND"
	codeMethodNotAllowed       = "METHOD_NOT_ALLOWED"
	codePayloadTooLarge        = "PAYLOAD_TOO_LARGE"
	codePreconditionFailed     = "PRECONDITION_FAILED"
	codeRateLimited            = "RATE_LIMITED"
	codeQuotaExceeded          = "QUOTA_EXCEEDED"
	codeValidation             = "VALIDATION_ERROR"
	codeInternal               = "INTERNAL_ERROR"
	codeUnavailable            = "SERVICE_UNAVAILABLE"
)

// apiError is an answer that is not a success: the contract's code, the
// detail a client reads, the fields at fault for a validation error, and
// the cause, which goes to the log line and never to the client.
type apiError struct {
	code   string
	detail string
	fields []fieldError
	cause  error
}

// Error is the detail and, for the log, the cause.
func (e *apiError) Error() string {
	if e.cause != nil {
		return e.detail + ": " + e.cause.Error()
	}
	return e.detail
}

// Unwrap exposes the cause, so errors.Is and errors.As see through.
func (e *apiError) Unwrap() error { return e.cause }

// fieldError names one broken body or query rule.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// validationError is a 422 naming every broken rule; its detail is the first.
func validationError(fields ...fieldError) *apiError {
	return &apiError{code: codeValidation, detail: fields[0].Message, fields: fields}
}
