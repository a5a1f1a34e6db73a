package ica

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status and one way of telling a
// Mattermost user what went wrong (see webhooks.StatusOf and bot replies).
const (
	EINVALID       = "invalid"        // 400: malformed or missing input
	EUNAUTHORIZED  = "unauthorized"   // 401: no or bad credentials
	EFORBIDDEN     = "forbidden"      // 403: authenticated, not allowed
	ENOTFOUND      = "not_found"      // 404
	ECONFLICT      = "conflict"       // 409: state does not allow it, or a conflicting repeat
	ETOOLARGE      = "too_large"      // 413
	EPOLICY        = "policy_refused" // 422: refused by a policy gate (budget, freeze)
	ERATELIMIT     = "rate_limited"   // 429
	EUNAVAILABLE   = "unavailable"    // 503: transient; retrying may help
	ENOTCONFIGURED = "not_configured" // 503 without Retry-After: a feature that is not set up; the message names the setting
	EINTERNAL      = "internal"       // 500: a bug; details are logged, not shown
)

// Error is ICA's one error type. Message is safe to show to the caller;
// Field names the input field at fault, when there is one. Cause is never
// shown to callers; it is logged.
type Error struct {
	Code    string
	Message string
	Field   string
	Cause   error
}

// Error implements the error interface.
func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the private cause.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error with the given code and a formatted public message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an *Error about one input field.
func FieldErrorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a transient failure (disk, peer) whose detail must not be shown.
func Unavailable(msg string, cause error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: msg, Cause: cause}
}

// NotConfigured is the error of a documented feature this server has not
// been configured for; setting names what would enable it (a variable).
func NotConfigured(feature, setting string) *Error {
	return &Error{Code: ENOTCONFIGURED, Message: feature + " is not configured on this server: set " + setting}
}

// ErrorCode returns the code of err, EINTERNAL for foreign errors and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the public message of err; foreign errors are "internal error".
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// ErrorField returns the field named by err, if any.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
