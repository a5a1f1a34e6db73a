// Package storetest opens the ledgers that tests use, on the engine the test
// run asks for: an embedded bbolt file (the default), or a fresh PostgreSQL
// database per ledger with ICA_TEST_STORE=postgres and ICA_TEST_POSTGRES (a
// superuser DSN). Every test that opens a store through it runs on both
// engines: `make test` runs the packages twice.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
// for one test and drops it when the test ends. Without ICA_TEST_POSTGRES
// the test is skipped with a loud message, and fails under CI=true.
func CreateDatabase(tb testing.TB) string {
	tb.Helper()
	admin := os.Getenv("ICA_TEST_POSTGRES")
	if admin == "" {
		msg := "SKIPPED: ICA_TEST_POSTGRES is not set, so no PostgreSQL test runs (.ci/run starts a server; see the README)"
		if os.Getenv("CI") == "true" || Engine() == Postgres {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to ICA_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "ica_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		tb.Fatalf("ICA_TEST_POSTGRES: %v", err)
	}
	q := func(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", q(cfg.Host), cfg.Port, q(cfg.User), q(cfg.Password), name)
}
