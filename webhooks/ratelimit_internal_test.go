package webhooks

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRateLimiter_ForgetsIdleCallers: a flood from ever new addresses does
// not grow the limiter without bound; a caller still being limited is kept.
func TestRateLimiter_ForgetsIdleCallers(t *testing.T) {
	l := NewRateLimiter(1)
	for i := range 1000 {
		l.Allow(fmt.Sprint("idle-", i))
	}
	for range 3 {
		l.Allow("busy")
	}
	l.mu.Lock()
	l.sweep(time.Now().Add(1500 * time.Millisecond)) // the idle ones have their burst back; busy has not
	n, busy := len(l.buckets), l.buckets["busy"]
	l.mu.Unlock()
	require.Equal(t, 1, n)
	require.NotNil(t, busy)
	ok, _ := l.Allow("busy")
	require.False(t, ok, "forgetting the idle callers kept the busy one's limit")
}
