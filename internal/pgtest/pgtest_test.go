package pgtest_test

import (
	"context"
	"testing"

	"github.com/ica-governance/ica/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestDSN_FreshDatabaseDroppedAfterTest(t *testing.T) {
	admin := pgtest.Admin(t)
	ctx := context.Background()
	var name string
	t.Run("use", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect to the test database: %v", err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if len(name) <= len(pgtest.DBPrefix) || name[:len(pgtest.DBPrefix)] != pgtest.DBPrefix {
			t.Fatalf("connected to %q, want a fresh %s… database", name, pgtest.DBPrefix)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("fresh database has %d tables", tables)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
			t.Fatal(err)
		}
		// Another test's database is another database.
		other := pgtest.DSN(t)
		c2, err := pgx.Connect(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close(ctx)
		var otherName string
		if err := c2.QueryRow(ctx, "SELECT current_database()").Scan(&otherName); err != nil {
			t.Fatal(err)
		}
		if otherName == name {
			t.Fatalf("two DSN calls share database %s", name)
		}
		// The connection is still open when the cleanup drops the database.
	})

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}
