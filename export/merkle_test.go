package export

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/compact"

	"github.com/ica-governance/ica"
)

// noteHead is the head checkpoint the store signs since the ledger is a
// Merkle log: the ica-checkpoint:v1 signature plus the C2SP note over the
// root of the first seq entries.
func noteHead(t *testing.T, entries []*ica.LedgerEntry, root []byte) ica.Checkpoint {
	t.Helper()
	last := entries[len(entries)-1]
	if root == nil {
		r := (&compact.RangeFactory{Hash: ica.HashChildren}).NewEmptyRange(0)
		for _, e := range entries {
			l, err := ica.LeafHash(e.Hash)
			require.NoError(t, err)
			require.NoError(t, r.Append(l, nil))
		}
		var err error
		root, err = r.GetRootHash(nil)
		require.NoError(t, err)
	}
	cp := ica.SignCheckpoint(testKey, last.Seq, last.Hash, t0)
	cp.Origin, cp.Root = "ica.example.com/ledger/test", hex.EncodeToString(root)
	var err error
	cp.Note, err = ica.SignCheckpointNote(testKey, &ica.CheckpointNote{Origin: cp.Origin, Size: cp.Seq, Root: root, ChainHead: cp.Hash, Time: cp.Time})
	require.NoError(t, err)
	return cp
}

// New exports carry the signed note and the Merkle root; a whole export
// recomputes the root, a subset still verifies without it. Old exports (no
// note: TestEncoder_RoundTrip and the rest) verify as before.
func TestVerify_MerkleRoot(t *testing.T) {
	c := sample(t, 7)
	head := noteHead(t, c.entries, nil)
	for _, format := range []string{FormatCSV, FormatJSON} {
		b, m := mustExport(t, format, c.entries, head)
		require.NotEmpty(t, m.Head.Note)
		rep := mustVerifyOK(t, b)
		require.True(t, rep.MerkleRecomputed, format)
		require.Contains(t, rep.String(), "recomputed from the records")

		sub, _ := mustExport(t, format, c.entries[3:], head)
		rep = mustVerifyOK(t, sub)
		require.False(t, rep.MerkleRecomputed)
	}
	// A head whose signed root is not the records' (the key signed a tree
	// that is not this chain).
	bad := noteHead(t, c.entries, make([]byte, 32))
	b, _ := mustExport(t, FormatCSV, c.entries, bad)
	rep, err := Verify(bytes.NewReader(b))
	require.Error(t, err)
	require.Contains(t, rep.Problem, "Merkle root")
}
