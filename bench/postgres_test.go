package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/internal/pgtest"
)

func TestOpenPostgres_SaysWhatIsMissing(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "")
	require.ErrorContains(t, err, PostgresEnv)
	_, err = OpenPostgres(context.Background(), "host=127.0.0.1 port=1 user=nobody sslmode=disable connect_timeout=2")
	require.ErrorContains(t, err, "cannot be reached")
	_, err = FindPgbench("/nonexistent/pgbench")
	require.Error(t, err)
}

func TestPostgres_DSN(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://o'brien:p%27w%5Cd@db.example.com:6543/postgres?sslmode=require")
	require.NoError(t, err)
	got, err := pgx.ParseConfig((&Postgres{cfg: cfg}).DSN("icabench_x"))
	require.NoError(t, err)
	require.Equal(t, "db.example.com", got.Host)
	require.Equal(t, uint16(6543), got.Port)
	require.Equal(t, "o'brien", got.User)
	require.Equal(t, `p'w\d`, got.Password)
	require.Equal(t, "icabench_x", got.Database)
	require.NotNil(t, got.TLSConfig, "TLS is kept")
}

// TestPgbenchInserts runs the baseline briefly (2 clients, 1 s) and checks
// what is read from pgbench's output and logs.
func TestPgbenchInserts(t *testing.T) {
	bin, err := FindPgbench("")
	if err != nil {
		t.Skipf("SKIPPING: %v", err)
	}
	dsn := pgtest.DSN(t)
	r, err := PgbenchInserts(context.Background(), bin, dsn, t.TempDir(), 2, 1, 300, 0, time.Second)
	require.NoError(t, err)
	require.Greater(t, r.TPS, 0.0)
	require.Positive(t, r.Count)
	require.Zero(t, r.Failed)
	require.Len(t, r.Latency, int(r.Count), "one latency per transaction from the logs")
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int64
	var v string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*), max(v) FROM bench_rows").Scan(&n, &v))
	require.GreaterOrEqual(t, n, r.Count)
	require.Equal(t, strings.Repeat("x", 300), v, "300-byte rows")
}
