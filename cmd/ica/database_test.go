package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
)

// TestCopyStore_BoltToPostgresAndBack moves a served ledger into an empty
// database and back into a new file: the same entries, head and ledger id
// each time; a second copy into the now non-empty database is refused.
func TestCopyStore_BoltToPostgresAndBack(t *testing.T) {
	dsn := storetest.CreateDatabase(t)
	dir := t.TempDir()
	seedLedger(t, dir)
	code, out := icaCmd(t, nil, "copy-store", "--from", dir, "--to", dsn)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "the same in both")

	src, err := store.Open(ledgerPath(dir), store.Options{Key: testSigningKey()})
	require.NoError(t, err)
	want, wantID := src.LedgerEntries(), src.LedgerID()
	require.NoError(t, src.Close())

	back := filepath.Join(t.TempDir(), "back.db")
	code, out = icaCmd(t, nil, "copy-store", "--from", dsn, "--to", back)
	require.Equal(t, 0, code, out)
	b, err := store.Open(back, store.Options{Key: testSigningKey()})
	require.NoError(t, err)
	require.Equal(t, want, b.LedgerEntries())
	require.Equal(t, wantID, b.LedgerID(), "the ledger keeps its id across engines")
	require.NoError(t, b.Close())

	code, out = icaCmd(t, nil, "copy-store", "--from", dir, "--to", dsn)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "already holds a ledger")
	code, out = icaCmd(t, nil, "copy-store", "--from", filepath.Join(t.TempDir(), "missing"), "--to", dsn)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no ledger at")
}

type fakeCred struct {
	calls int
	ttl   time.Duration
	now   func() time.Time
	err   error
}

func (f *fakeCred) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.calls++
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	if len(opts.Scopes) != 1 || opts.Scopes[0] != pgEntraScope {
		return azcore.AccessToken{}, errors.New("wrong scope")
	}
	return azcore.AccessToken{Token: "tok-" + string(rune('0'+f.calls)), ExpiresOn: f.now().Add(f.ttl)}, nil
}

// TestDatabaseEntraToken: the database password is an Entra ID token for
// the PostgreSQL audience, reused while it is fresh and replaced before it
// expires; a failure reaches the connection attempt.
func TestDatabaseEntraToken(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cred := &fakeCred{ttl: time.Hour, now: clock}
	dc := DatabaseConfig{URL: "postgres://ica@db.postgres.database.azure.com:5432/ica?sslmode=require", Entra: true}
	require.NoError(t, dc.validate())
	pc, err := dc.postgresConfig(nil, cred)
	require.NoError(t, err)
	require.NotNil(t, pc.Token)
	pc.Token = (&tokenCache{cred: cred, scope: pgEntraScope, now: clock}).Token

	tok, err := pc.Token(context.Background())
	require.NoError(t, err)
	require.Equal(t, "tok-1", tok)
	now = now.Add(50 * time.Minute)
	tok, _ = pc.Token(context.Background())
	require.Equal(t, "tok-1", tok, "still fresh: reused")
	now = now.Add(6 * time.Minute) // 4 minutes before expiry
	tok, _ = pc.Token(context.Background())
	require.Equal(t, "tok-2", tok, "replaced before it expires")
	require.Equal(t, 2, cred.calls)

	cred.err = errors.New("no managed identity")
	now = now.Add(2 * time.Hour)
	_, err = pc.Token(context.Background())
	require.ErrorContains(t, err, "no managed identity")

	bad := DatabaseConfig{URL: dc.URL, Entra: true, Password: "x"}
	require.ErrorContains(t, bad.validate(), "leave ICA_DATABASE_PASSWORD")
	require.ErrorContains(t, (&DatabaseConfig{Entra: true}).validate(), "ICA_DATABASE_URL is not")
	require.Error(t, (&DatabaseConfig{URL: "postgres://%zz"}).validate())
}

func testSigningKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
}

// TestTools_NeverMigrateTheDatabase: the tools beside running replicas
// (check, export, proof, backup) open the database at the schema they know
// and never change it; ica migrate and a restore do.
func TestTools_NeverMigrateTheDatabase(t *testing.T) {
	dsn := storetest.CreateDatabase(t)
	env := map[string]string{"ICA_DATABASE_URL": dsn, "ICA_SIGNING_KEY": strings.Repeat("ab", 32)}
	code, out := icaCmd(t, env, "check")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "holds no ICA ledger")
	require.Contains(t, out, "ica migrate")
	tables := func() int {
		conn, err := pgx.Connect(context.Background(), dsn)
		require.NoError(t, err)
		defer conn.Close(context.Background())
		var n int
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").Scan(&n))
		return n
	}
	require.Zero(t, tables(), "the check created nothing")

	code, out = icaCmd(t, env, "migrate")
	require.Equal(t, 0, code, out)
	code, out = icaCmd(t, env, "check")
	require.Equal(t, 0, code, out)

	// A schema older than this ica: refused, and left as it is.
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var last int
	require.NoError(t, conn.QueryRow(context.Background(), "DELETE FROM ica_schema_migrations WHERE version = (SELECT max(version) FROM ica_schema_migrations) RETURNING version").Scan(&last))
	code, out = icaCmd(t, env, "check")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, fmt.Sprintf("has schema version %d, older than this ica needs (%d)", last-1, last))
	var now int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT max(version) FROM ica_schema_migrations").Scan(&now))
	require.Equal(t, last-1, now, "not migrated by the check")
}
