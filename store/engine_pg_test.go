package store

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/ica-governance/ica/internal/pgtest"
	"github.com/stretchr/testify/require"
)

// pgEngineForTest opens the PostgreSQL engine on a fresh database of
// ICA_TEST_POSTGRES (the store's own tests cannot use storetest, which
// imports this package).
func pgEngineForTest(t *testing.T) *pgEngine {
	t.Helper()
	e, err := openPgEngine(context.Background(), PostgresConfig{URL: pgtest.DSN(t)})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// TestPgCursor_MatchesModel: the PostgreSQL cursor, with its windows and
// prefetched ranges, and the overlays above it, read exactly what a plain
// sorted map holds.
func TestPgCursor_MatchesModel(t *testing.T) {
	e := pgEngineForTest(t)
	ctx := context.Background()
	for seed := range uint64(12) {
		rng := mrand.New(mrand.NewPCG(seed, 7))
		key := func() []byte { return []byte{byte('a' + rng.IntN(5)), byte('a' + rng.IntN(5))} }
		// Each round writes through a committed group, then reads in a new one.
		want := model{}
		wtx, err := e.Begin(ctx)
		require.NoError(t, err)
		_ = wtx.Bucket(bucketRuns).ForEach(func(k, v []byte) error { want[string(k)] = string(v); return nil })
		ov := newOverlay(wtx)
		for range 12 {
			k := key()
			if rng.IntN(4) == 0 {
				require.NoError(t, ov.Bucket(bucketRuns).Delete(k))
				delete(want, string(k))
			} else {
				v := fmt.Sprint(rng.IntN(100))
				require.NoError(t, ov.Bucket(bucketRuns).Put(k, []byte(v)))
				want[string(k)] = v
			}
		}
		require.NoError(t, ov.merge())
		require.NoError(t, wtx.Commit())

		wtx, err = e.Begin(ctx)
		require.NoError(t, err)
		pw := wtx.(*pgWriteTx)
		var hints []readHint
		for range 3 {
			hints = append(hints, hintAround(bucketRuns, key()), hintGet(bucketRuns, key()))
		}
		pw.prefetch(hints)
		checkBucket(t, rng, wtx.Bucket(bucketRuns), want)
		// An operation's overlay on top of the group's.
		op := newOverlay(wtx)
		got := model{}
		for k, v := range want {
			got[k] = v
		}
		for range 6 {
			k := key()
			require.NoError(t, op.Bucket(bucketRuns).Put(k, []byte("x")))
			got[string(k)] = "x"
		}
		checkBucket(t, rng, op.Bucket(bucketRuns), got)
		require.NoError(t, pw.Err())
		wtx.Rollback()
	}
}

// TestPgMigrations_Numbered: the embedded migrations have distinct
// version numbers (two branches adding "0002" would otherwise collide).
func TestPgMigrations_Numbered(t *testing.T) {
	ms, err := loadMigrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	require.Equal(t, 1, ms[0].version)
}

// TestPgMigrations_CoverEveryBucket: every bucket of the schema has its
// table after the migrations, and applying them again changes nothing.
func TestPgMigrations_CoverEveryBucket(t *testing.T) {
	e := pgEngineForTest(t)
	ctx := context.Background()
	for _, b := range allBuckets {
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = $1", table(b)).Scan(&n))
		require.Equal(t, 1, n, "bucket %s has no table: add a migration in store/migrations/postgres", b)
	}
	require.NoError(t, e.migrate(ctx, nil, false))
	require.NoError(t, e.migrate(ctx, nil, true), "at the schema it knows, a tool opens it")
	var v int
	require.NoError(t, e.pool.QueryRow(ctx, "SELECT max(version) FROM ica_schema_migrations").Scan(&v))
	require.Equal(t, PostgresSchemaVersion(), v)

	// A database migrated by a newer ica is refused, naming both versions.
	_, err := e.pool.Exec(ctx, "INSERT INTO ica_schema_migrations (version, name) VALUES (9999, '9999_future.sql')")
	require.NoError(t, err)
	err = e.migrate(ctx, nil, false)
	require.ErrorContains(t, err, "schema version 9999, newer than this ica knows")
	err = e.migrate(ctx, nil, true)
	require.ErrorContains(t, err, "schema version 9999, newer than this ica knows")
}

// TestPgReads_KnownWindowsAskOnce: inside one group, a scan of an empty
// table is asked once however many operations make it, and the prefetched
// window of a key prefix answers its scan without a query (each query is
// a round trip under the chain lock, which every replica waits for).
func TestPgReads_KnownWindowsAskOnce(t *testing.T) {
	e := pgEngineForTest(t)
	wtx, err := e.Begin(context.Background())
	require.NoError(t, err)
	defer wtx.Rollback()
	tx := wtx.(*pgWriteTx)
	queries := func() int { return tx.r.queries }
	for range 5 {
		k, _ := tx.Bucket(bucketDeployLocks).Cursor().First()
		require.Nil(t, k)
	}
	require.Equal(t, 1, queries(), "an empty table is read once")

	tx.prefetch([]readHint{hintAround(bucketApprByRun, join([]byte("run-7"), sep)), hintAround(bucketDeployLocks, []byte{})})
	before := queries()
	c := tx.Bucket(bucketApprByRun).Cursor()
	k, _ := c.Seek(join([]byte("run-7"), sep))
	require.Nil(t, k)
	k, _ = tx.Bucket(bucketDeployLocks).Cursor().First()
	require.Nil(t, k)
	require.Equal(t, before, queries(), "the prefetched windows answer the scans")
}

// TestCheckServerVersion: a server older than 13 is refused at start with
// one line naming its version; 13 and newer are accepted.
func TestCheckServerVersion(t *testing.T) {
	for _, v := range []string{"130000", "150018", "170002"} {
		require.NoError(t, checkServerVersion("postgres://ica@db/ica", v), v)
	}
	err := checkServerVersion("postgres://ica@db/ica", "120017")
	var cfg *ConnConfigError
	require.ErrorAs(t, err, &cfg, "not retried: a setting to correct")
	require.Equal(t, "database postgres://ica@db/ica runs PostgreSQL 12.17; ICA needs 13 or newer", err.Error())
	require.ErrorAs(t, checkServerVersion("postgres://ica@db/ica", "x"), &cfg)
}
