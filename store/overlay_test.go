package store

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stretchr/testify/require"
)

// model is the reference a bucket seen through an overlay must match.
type model map[string]string

func (m model) keys() []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestOverlay_MatchesModel writes random keys to a bbolt bucket, then
// through an overlay, and checks every read and every cursor move against
// a plain map; merging must leave the base equal to the model, dropping
// must leave it as it was.
func TestOverlay_MatchesModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			eng, err := openBoltEngine(filepath.Join(t.TempDir(), "kv.db"), 0, false)
			require.NoError(t, err)
			defer eng.Close()
			key := func() []byte { return []byte{byte('a' + rng.IntN(6)), byte('a' + rng.IntN(6))} }

			base := model{}
			wtx, err := eng.Begin(t.Context())
			require.NoError(t, err)
			for range 15 {
				k, v := key(), fmt.Sprint(rng.IntN(100))
				require.NoError(t, wtx.Bucket(bucketRuns).Put(k, []byte(v)))
				base[string(k)] = v
			}
			require.NoError(t, wtx.Commit())

			wtx, err = eng.Begin(t.Context())
			require.NoError(t, err)
			defer wtx.Rollback()
			ov := newOverlay(wtx)
			b := ov.Bucket(bucketRuns)
			want := model{}
			for k, v := range base {
				want[k] = v
			}
			for range 20 {
				k := key()
				if rng.IntN(3) == 0 {
					require.NoError(t, b.Delete(k))
					delete(want, string(k))
				} else {
					v := fmt.Sprint(rng.IntN(100))
					require.NoError(t, b.Put(k, []byte(v)))
					want[string(k)] = v
				}
				checkBucket(t, rng, b, want)
			}
			if seed%2 == 0 {
				require.NoError(t, ov.merge())
				checkBucket(t, rng, wtx.Bucket(bucketRuns), want)
			} else {
				checkBucket(t, rng, wtx.Bucket(bucketRuns), base)
			}
		})
	}
}

// checkBucket compares Get, a forward and a backward walk, and random
// cursor moves with the model.
func checkBucket(t *testing.T, rng *rand.Rand, b Bucket, m model) {
	t.Helper()
	keys := m.keys()
	for _, k := range keys {
		require.Equal(t, m[k], string(b.Get([]byte(k))))
	}
	var fwd []string
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		require.Equal(t, m[string(k)], string(v))
		fwd = append(fwd, string(k))
	}
	require.Equal(t, keys, orEmpty(fwd))
	var back []string
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		back = append(back, string(k))
	}
	slices.Reverse(back)
	require.Equal(t, keys, orEmpty(back))
	// Seek to random keys and step both ways.
	for range 10 {
		seek := []byte{byte('a' + rng.IntN(7))}
		if rng.IntN(2) == 0 {
			seek = append(seek, byte('a'+rng.IntN(7)))
		}
		i, _ := slices.BinarySearch(keys, string(seek))
		k, _ := c.Seek(seek)
		if i == len(keys) {
			require.Nil(t, k, "seek %q", seek)
			continue
		}
		require.Equal(t, keys[i], string(k), "seek %q", seek)
		if rng.IntN(2) == 0 {
			k, _ = c.Next()
			if i+1 < len(keys) {
				require.Equal(t, keys[i+1], string(k))
			} else {
				require.Nil(t, k)
			}
		} else {
			k, _ = c.Prev()
			if i > 0 {
				require.Equal(t, keys[i-1], string(k))
			} else {
				require.Nil(t, k)
			}
		}
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestOverlay_Sequence: NextSequence through an overlay reaches the base
// only on merge.
func TestOverlay_Sequence(t *testing.T) {
	eng, err := openBoltEngine(filepath.Join(t.TempDir(), "kv.db"), 0, false)
	require.NoError(t, err)
	defer eng.Close()
	wtx, err := eng.Begin(t.Context())
	require.NoError(t, err)
	defer wtx.Rollback()
	ov := newOverlay(wtx)
	n, _ := ov.Bucket(bucketApprovals).NextSequence()
	require.Equal(t, uint64(1), n)
	require.Equal(t, uint64(0), wtx.Bucket(bucketApprovals).Sequence(), "not merged yet")
	ov.reset()
	n, _ = ov.Bucket(bucketApprovals).NextSequence()
	require.Equal(t, uint64(1), n, "a dropped overlay leaves no hole")
	require.NoError(t, ov.merge())
	require.Equal(t, uint64(1), wtx.Bucket(bucketApprovals).Sequence())
	require.True(t, bytes.Equal(nil, wtx.Bucket(bucketApprovals).Get([]byte("x"))))
}

// TestStore_Commit_FailureIsolated: in one group commit, a failing
// operation (a refused request, a panic) is answered with its own error,
// leaves no trace, and its neighbours run exactly once and are committed.
func TestStore_Commit_FailureIsolated(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ica.db"), Options{Key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))})
	require.NoError(t, err)
	defer s.Close()
	calls := make([]int, 6)
	var batch []*writeReq
	for i := range calls {
		i := i
		batch = append(batch, &writeReq{done: make(chan error, 1), fn: func(tx Tx, st *txState) error {
			calls[i]++
			if err := tx.Bucket(bucketRuns).Put([]byte(fmt.Sprint("k", i)), []byte("v")); err != nil {
				return err
			}
			switch i {
			case 2:
				return fmt.Errorf("refused %d", i)
			case 4:
				panic("boom")
			}
			return nil
		}})
	}
	wtx, err := s.eng.Begin(t.Context())
	require.NoError(t, err)
	s.commit(wtx, batch, time.Now())
	for i, r := range batch {
		err := <-r.done
		switch i {
		case 2:
			require.EqualError(t, err, "refused 2")
		case 4:
			require.ErrorContains(t, err, "panicked")
		default:
			require.NoError(t, err)
		}
		require.Equal(t, 1, calls[i], "operation %d ran once", i)
	}
	require.NoError(t, s.view(func(tx Tx) error {
		for i := range calls {
			got := tx.Bucket(bucketRuns).Get([]byte(fmt.Sprint("k", i)))
			if i == 2 || i == 4 {
				require.Nil(t, got, "failed operation %d left no trace", i)
			} else {
				require.Equal(t, "v", string(got))
			}
		}
		return nil
	}))
}

// TestOpen_MigratesSchema1Outbox: a ledger written by the previous layout
// (one nested outbox bucket per destination) opens with its queued
// messages in the flat outbox, in order.
func TestOpen_MigratesSchema1Outbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ica.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLedger, bucketRuns, bucketOutbox} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, []byte("1")); err != nil {
			return err
		}
		nb, err := tx.Bucket(bucketOutbox).CreateBucket([]byte("mattermost"))
		if err != nil {
			return err
		}
		for _, id := range []uint64{3, 7} {
			if err := nb.Put(u64(id), fmt.Appendf(nil, `{"id":%d,"destination":"mattermost","kind":"card"}`, id)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketOutbox).SetSequence(7)
	}))
	require.NoError(t, db.Close())

	s, err := Open(path, Options{Key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))})
	require.NoError(t, err)
	defer s.Close()
	msgs, err := s.PendingOutbox(t.Context(), "mattermost", 10)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	require.Equal(t, []uint64{3, 7}, []uint64{msgs[0].ID, msgs[1].ID})
	require.Equal(t, int64(2), s.OutboxDepth())
	require.NotEmpty(t, s.LedgerID())
	dests, err := s.OutboxDestinations(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"mattermost"}, dests)
}
