package bot_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot"
)

// A checkpoint posted to the checkpoint channel: once, with its signed note.
func TestBot_CheckpointPost(t *testing.T) {
	h := newHarness(t, nil)
	h.mm.AddChannel("ica", "ledger-checkpoints")
	h.mm.Join("ledger-checkpoints", "ica-bot")
	h.request("run-cp", 10)
	cp, err := h.store.Checkpoint()
	require.NoError(t, err)
	msg := bot.CheckpointMessage("ledger-checkpoints", h.store.LedgerID(), &cp)
	require.NotNil(t, msg)
	require.NoError(t, h.store.Enqueue(context.Background(), msg, msg))
	h.settle()
	posts := h.mm.Posts("ledger-checkpoints")
	require.Len(t, posts, 1)
	require.Contains(t, posts[0].Message, cp.Note)
	require.True(t, strings.HasPrefix(posts[0].Message, "Ledger checkpoint: **"))
}
