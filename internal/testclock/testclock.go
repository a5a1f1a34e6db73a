// Package testclock gives tests the date they run at. Tests never read the
// real date for what they assert: they start their fake clock at Start, which
// is the date a test names unless ICA_TEST_NOW pins another one. CI runs the
// date-sensitive packages again with ICA_TEST_NOW at awkward dates (the 1st,
// 28 February, the 31st, just before midnight UTC); `make test-dates` does the
// same by hand.
package testclock

import (
	"os"
	"testing"
	"time"
)

// Env is the environment variable that pins the test date (RFC 3339).
const Env = "ICA_TEST_NOW"

// Start returns the time a test's fake clock starts at: ICA_TEST_NOW when it
// is set, otherwise def. A malformed ICA_TEST_NOW fails the test.
func Start(tb testing.TB, def time.Time) time.Time {
	tb.Helper()
	v := os.Getenv(Env)
	if v == "" {
		return def.UTC()
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		tb.Fatalf("%s=%q is not an RFC 3339 time: %v", Env, v, err)
	}
	return t.UTC()
}

// Pinned reports whether ICA_TEST_NOW is set.
func Pinned() bool { return os.Getenv(Env) != "" }

// At is Start for package-level variables: it panics on a malformed
// ICA_TEST_NOW instead of failing one test.
func At(def time.Time) time.Time {
	v := os.Getenv(Env)
	if v == "" {
		return def.UTC()
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		panic(Env + "=" + v + " is not an RFC 3339 time: " + err.Error())
	}
	return t.UTC()
}
