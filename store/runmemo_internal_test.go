package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestRunMemo_DecodesWhatIsStored: the memo answers with the run as stored
// now, whoever changed it, and a caller's changes to its answer stay with
// the caller.
func TestRunMemo_DecodesWhatIsStored(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	clock := ica.NewFakeClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, err := Open(filepath.Join(t.TempDir(), "ica.db"), Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	_, _, err = s.StartRun(ctx, &ica.RunStart{PipelineName: "p", RunID: "r1", Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "ci"}, "ado")
	require.NoError(t, err)

	read := func(m *runMemo) *ica.Run {
		var r *ica.Run
		require.NoError(t, s.view(func(tx Tx) error {
			var err error
			r, err = m.mustRun(tx, "r1")
			return err
		}))
		return r
	}
	r := read(&s.runs)
	require.Equal(t, ica.RunRunning, r.Status)
	r.Status, r.PipelineName = "tampered", "x"
	again := read(&s.runs)
	require.Equal(t, ica.RunRunning, again.Status, "a caller's change does not reach the memo")
	require.Equal(t, "p", again.PipelineName)

	// Another writer (a second Store on another replica would do the same)
	// finishes the run: the memo sees other bytes and decodes them.
	other := &runMemo{}
	require.Equal(t, ica.RunRunning, read(other).Status)
	clock.Advance(time.Minute)
	_, _, err = s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunFailed}, "ado")
	require.NoError(t, err)
	done := read(other)
	require.Equal(t, ica.RunFailed, done.Status)
	require.NotNil(t, done.EndTime)
	*done.EndTime = time.Time{}
	require.False(t, read(other).EndTime.IsZero(), "the end time is the caller's own copy")

	require.NoError(t, s.view(func(tx Tx) error {
		_, err := other.mustRun(tx, "missing")
		require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(err))
		return nil
	}))
}
