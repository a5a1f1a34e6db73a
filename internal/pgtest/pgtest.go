// Package pgtest gives each test its own PostgreSQL database. The cluster is
// named by ICA_TEST_POSTGRES, a superuser DSN (scripts/postgres-test.sh
// starts a throwaway one; .ci/run does it for CI). DSN creates a database
// with a random name and drops it when the test ends, so tests run in
// parallel and leave nothing behind.
//
// Without ICA_TEST_POSTGRES the test is skipped with a loud message; under
// CI=true it fails instead, so CI cannot pass by running nothing.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the environment variable holding the superuser DSN.
const Env = "ICA_TEST_POSTGRES"

// DBPrefix starts the name of every database DSN creates, so a leftover
// from a killed test run is easy to recognise.
const DBPrefix = "ica_test_"

// InCI reports whether the tests run under CI (CI set and not "false"),
// where a missing test service is a failure rather than a skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Admin returns the superuser DSN from ICA_TEST_POSTGRES. Without it the
// test is skipped loudly, or fails under CI.
func Admin(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(Env)
	if dsn != "" {
		return dsn
	}
	msg := Env + " is not set: the PostgreSQL tests need a cluster " +
		"(eval \"$(scripts/postgres-test.sh start)\", see the README's section on tests)"
	if InCI() {
		tb.Fatalf("%s; under CI it must be set (.ci/run starts PostgreSQL)", msg)
	}
	tb.Skipf("SKIPPING: %s", msg)
	return ""
}

// DSN creates a fresh, empty database for this test and returns a DSN that
// connects to it as the superuser. The database is dropped (its connections
// closed by force) when the test and its subtests end.
func DSN(tb testing.TB) string {
	tb.Helper()
	admin := Admin(tb)
	name := DBPrefix + randomHex(8)
	dsn, err := withDatabase(admin, name)
	if err != nil {
		tb.Fatalf("pgtest: %s: %v", Env, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return dsn
}

// withDatabase returns dsn (URL or keyword/value form) naming another
// database. Errors never quote the DSN, which holds a password.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("not a valid postgres:// URL")
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "", errors.New("not a valid PostgreSQL connection string")
	}
	// In the keyword/value form the last setting of a key wins.
	return dsn + " dbname=" + name, nil
}

func exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Env, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("pgtest: random: " + err.Error())
	}
	return hex.EncodeToString(b)
}
