package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func msg(key, order string) *ica.OutboxMessage {
	return &ica.OutboxMessage{Destination: "peer", Kind: "test", Key: key, OrderKey: order, Payload: []byte(`{}`)}
}

// TestStore_ClaimOutbox_Replicas: two replicas share one outbox. A claimed
// message is not handed to the other while its lease runs; only the oldest
// message of an order key is claimable; a dead replica's claim is taken
// over when its lease ends; completing one message frees the next of its key.
func TestStore_ClaimOutbox_Replicas(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, msg("a1", "card-A"), msg("a2", "card-A"), msg("b1", "card-B"), msg("c1", "")))

	gotA, _, err := s.ClaimOutbox(ctx, "peer", "replica-a", 30*time.Second, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a1", "b1", "c1"}, keys(gotA), "one message per order key")

	gotB, next, err := s.ClaimOutbox(ctx, "peer", "replica-b", 30*time.Second, 10)
	require.NoError(t, err)
	require.Empty(t, gotB, "everything is claimed by replica-a")
	require.Equal(t, clock.Now().Add(30*time.Second), next, "the earliest lease end")

	// replica-a delivers a1 and dies holding b1 and c1.
	require.NoError(t, s.CompleteOutbox(ctx, "peer", gotA[0].ID))
	gotB, _, err = s.ClaimOutbox(ctx, "peer", "replica-b", 30*time.Second, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a2"}, keys(gotB), "a1 is done, so a2 is next in card-A's order")

	clock.Advance(31 * time.Second)
	gotB, _, err = s.ClaimOutbox(ctx, "peer", "replica-b", 30*time.Second, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a2", "b1", "c1"}, keys(gotB), "replica-a's leases ended: taken over (a2 renewed)")

	// A retry releases the claim and waits for its time.
	require.NoError(t, s.RetryOutbox(ctx, "peer", gotB[1].ID, clock.Now().Add(time.Minute), "503"))
	gotA, next, err = s.ClaimOutbox(ctx, "peer", "replica-a", 30*time.Second, 10)
	require.NoError(t, err)
	require.Empty(t, gotA)
	require.Equal(t, clock.Now().Add(30*time.Second), next)
}

func keys(ms []*ica.OutboxMessage) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Key)
	}
	return out
}
