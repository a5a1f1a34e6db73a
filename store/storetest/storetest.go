// Package storetest opens the ledgers that tests use, on the engine the test
// run asks for: an embedded bbolt file (the default), or a fresh PostgreSQL
// database per ledger with ICA_TEST_STORE=postgres and ICA_TEST_POSTGRES (a
// superuser DSN). Every test that opens a store through it runs on both
// engines: `make test` runs the packages twice.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/pgtest"
	"github.com/ica-governance/ica/store"
)

// Engine names.
const (
	Bolt     = "bolt"
	Postgres = "postgres"
)

// Engine returns the engine this test run uses (ICA_TEST_STORE).
func Engine() string {
	if os.Getenv("ICA_TEST_STORE") == Postgres {
		return Postgres
	}
	return Bolt
}

// Target is one ledger a test opens, and may close and open again (a
// restart): a bbolt file in a temporary directory, or a PostgreSQL database
// of its own.
type Target struct {
	tb   testing.TB
	Path string // bbolt: the ledger file
	DSN  string // postgres: the database
}

// New makes a ledger target on the engine of this run.
func New(tb testing.TB) *Target {
	tb.Helper()
	t := &Target{tb: tb}
	if Engine() == Postgres {
		t.DSN = CreateDatabase(tb)
	} else {
		t.Path = filepath.Join(tb.TempDir(), "ica.db")
	}
	return t
}

// NewIn is New with the bbolt file in dir (tests that keep other files
// beside the ledger); on PostgreSQL dir is not used.
func NewIn(tb testing.TB, dir string) *Target {
	tb.Helper()
	t := New(tb)
	if t.Path != "" {
		t.Path = filepath.Join(dir, "ica.db")
	}
	return t
}

// Open opens the target's ledger.
func (t *Target) Open(opt store.Options) (*store.Store, error) {
	if t.DSN != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return store.OpenPostgres(ctx, store.PostgresConfig{URL: t.DSN, MaxConns: 8}, opt)
	}
	return store.Open(t.Path, opt)
}

// MustOpen opens the target's ledger or fails the test.
func (t *Target) MustOpen(opt store.Options) *store.Store {
	t.tb.Helper()
	s, err := t.Open(opt)
	if err != nil {
		t.tb.Fatalf("open the test ledger (%s): %v", Engine(), err)
	}
	return s
}

// Open opens a new ledger on this run's engine; the caller closes it.
func Open(tb testing.TB, opt store.Options) *store.Store {
	tb.Helper()
	return New(tb).MustOpen(opt)
}

// CreateDatabase creates an empty database on the ICA_TEST_POSTGRES server
// for one test and drops it when the test ends (internal/pgtest). Without
// ICA_TEST_POSTGRES the test is skipped with a loud message, and fails
// under CI, or when this run asked for PostgreSQL.
func CreateDatabase(tb testing.TB) string {
	tb.Helper()
	if Engine() == Postgres && os.Getenv(pgtest.Env) == "" {
		tb.Fatal("ICA_TEST_STORE=postgres needs ICA_TEST_POSTGRES (a superuser DSN; scripts/postgres-test.sh starts a server)")
	}
	return pgtest.DSN(tb)
}
