package store

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// mappingAt returns the [start, end) of the mapping of this process that
// holds addr, from /proc/self/maps.
func mappingAt(t *testing.T, addr uintptr) (start, end uintptr) {
	f, err := os.Open("/proc/self/maps")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s, e uintptr
		if _, err := fmt.Sscanf(strings.Fields(sc.Text())[0], "%x-%x", &s, &e); err == nil && s <= addr && addr < e {
			return s, e
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return 0, 0
}

// TestReleaseMapped_StaysInsideTheMapping: bbolt grows its file ahead of
// its mapping, so the file's size is not the mapping's. Handing back pages
// up to the file's size zeroed whatever followed the mapping (the Go heap:
// servers crashed under load); the range handed back ends inside the
// mapping, and the ledger reads the same afterwards.
func TestReleaseMapped_StaysInsideTheMapping(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "ica.db")
	s, err := Open(path, Options{Clock: ica.NewFakeClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)), Key: key})
	require.NoError(t, err)
	defer s.Close()
	db := s.eng.(*boltEngine).db
	for batch := range 10 {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("test_fill"))
			if err != nil {
				return err
			}
			for i := range 600 {
				value := make([]byte, 4000) // bbolt keeps it until the commit
				value[0], value[1] = byte(batch), byte(i)
				if err := b.Put(fmt.Appendf(nil, "%02d-%04d", batch, i), value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		addr, size := releaseRange(tx)
		start, end := mappingAt(t, addr)
		require.Equal(t, start, addr, "the range starts at the mapping")
		require.LessOrEqual(t, addr+size, end, "the range ends inside the mapping")
		require.Greater(t, size, uintptr(0))
		require.Greater(t, uintptr(fi.Size()), end-start,
			"the file is longer than the mapping here (bbolt grows it ahead), which is what this test is about")
		return nil
	}))
	s.releaseMapped()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("test_fill"))
		for batch := range 10 {
			for i := range 600 {
				v := b.Get(fmt.Appendf(nil, "%02d-%04d", batch, i))
				require.Len(t, v, 4000)
				require.Equal(t, []byte{byte(batch), byte(i)}, v[:2])
			}
		}
		return nil
	}))
	rep, err := s.Check()
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
}
