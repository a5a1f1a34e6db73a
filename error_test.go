package ica_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestError_Codes(t *testing.T) {
	e := ica.Errorf(ica.ECONFLICT, "run %s already finished as %s", "r1", "success")
	require.Equal(t, ica.ECONFLICT, e.Code)
	require.Equal(t, "run r1 already finished as success", e.Message)
	require.Equal(t, "conflict: run r1 already finished as success", e.Error())

	require.Equal(t, "", ica.ErrorCode(nil))
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(e))
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(fmt.Errorf("start run: %w", e)), "wrapped")
	require.Equal(t, ica.EINTERNAL, ica.ErrorCode(io.EOF), "foreign")
	require.Equal(t, ica.EINTERNAL, ica.ErrorCode(fmt.Errorf("x: %w", io.EOF)))
}

func TestError_MessageHidesInternals(t *testing.T) {
	secret := errors.New("open /var/lib/ica/ica.db: permission denied (token=abc123)")
	require.Equal(t, "", ica.ErrorMessage(nil))
	require.Equal(t, "internal error", ica.ErrorMessage(secret))
	require.Equal(t, "internal error", ica.ErrorMessage(fmt.Errorf("wrap: %w", secret)))
	// An internal *Error hides even its own message.
	require.Equal(t, "internal error", ica.ErrorMessage(&ica.Error{Code: ica.EINTERNAL, Message: "bucket runs missing", Cause: secret}))

	u := ica.Unavailable("the ledger could not be written; retry later", secret)
	require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(u))
	require.Equal(t, "the ledger could not be written; retry later", ica.ErrorMessage(u))
	require.NotContains(t, ica.ErrorMessage(u), "permission")
	// The cause is kept for logs and errors.Is.
	require.ErrorIs(t, u, secret)
	require.Contains(t, u.Error(), "permission denied")
	require.Equal(t, secret, errors.Unwrap(u))
}

func TestError_Field(t *testing.T) {
	e := ica.FieldErrorf(ica.EINVALID, "commit", "commit %q is not hexadecimal", "xyz")
	require.Equal(t, "commit", ica.ErrorField(e))
	require.Equal(t, "commit", ica.ErrorField(fmt.Errorf("decode: %w", e)))
	require.Equal(t, `invalid: commit "xyz" is not hexadecimal (field commit)`, e.Error())
	require.Equal(t, "", ica.ErrorField(ica.Errorf(ica.EINVALID, "no field")))
	require.Equal(t, "", ica.ErrorField(io.EOF))
	require.Equal(t, "", ica.ErrorField(nil))

	full := &ica.Error{Code: ica.EINVALID, Message: "m", Field: "f", Cause: io.EOF}
	require.Equal(t, "invalid: m (field f): EOF", full.Error())
}

func TestError_FormatIsNotInterpretedTwice(t *testing.T) {
	// A user-supplied value containing verbs must come out verbatim.
	e := ica.Errorf(ica.EINVALID, "unknown action %q", "%s%d%!")
	require.Equal(t, `unknown action "%s%d%!"`, ica.ErrorMessage(e))
}

func TestRetryAfter(t *testing.T) {
	_, ok := ica.RetryAfter(io.EOF)
	require.False(t, ok)
	_, ok = ica.RetryAfter(nil)
	require.False(t, ok)
	err := fmt.Errorf("deliver: %w", &ica.RetryAfterError{After: 3 * time.Second, Err: io.ErrUnexpectedEOF})
	d, ok := ica.RetryAfter(err)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, "deliver: unexpected EOF", err.Error())
}
