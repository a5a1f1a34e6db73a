package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/postgres/*.sql
var pgMigrations embed.FS

// minPostgresVersion is the oldest server ICA runs on (server_version_num).
const minPostgresVersion = 130000

// PostgresConfig says how to reach the database.
type PostgresConfig struct {
	// URL is a postgres:// URL or a key=value DSN (ICA_DATABASE_URL).
	URL string
	// Password, when set, replaces the URL's (ICA_DATABASE_PASSWORD or a file).
	Password string
	// Token, when set, returns the password for each new connection (an
	// Entra ID access token on Azure Database for PostgreSQL); it is asked
	// for every connection and must cache and refresh its token itself.
	Token func(ctx context.Context) (string, error)
	// MaxConns bounds the pool (default 16).
	MaxConns int32
	// Logger receives connection and migration messages.
	Logger *slog.Logger
	// NoMigrate opens the database only at the schema this ica knows and
	// never changes it (the tools beside running replicas: a newer ica
	// run by an auditor must not migrate production under older replicas).
	NoMigrate bool
}

// ParsePostgres checks a database URL without connecting, and returns it
// with any password hidden, for messages.
func ParsePostgres(url string) (redacted string, err error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "", fmt.Errorf("ICA_DATABASE_URL: %s", redactErr(err))
	}
	return describePG(&cfg.Config), nil
}

func describePG(c *pgconn.Config) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// redactErr removes what pgx quotes of a connection string from its error.
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "cannot parse `"); i >= 0 {
		if j := strings.Index(s[i+14:], "`"); j >= 0 {
			s = s[:i] + "cannot parse the connection string" + s[i+14+j+1:]
		}
	}
	return s
}

func (c *ConnConfigError) Error() string { return c.msg }

// ConnConfigError is a database setting that cannot work (wrong password,
// missing database, old server): retrying does not help.
type ConnConfigError struct{ msg string }

// openPgEngine connects, checks the server and applies migrations under a
// lock (two replicas starting together do not race).
func openPgEngine(ctx context.Context, cfg PostgresConfig) (*pgEngine, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, &ConnConfigError{fmt.Sprintf("ICA_DATABASE_URL: %s", redactErr(err))}
	}
	if cfg.Password != "" {
		pc.ConnConfig.Password = cfg.Password
	}
	if cfg.Token != nil {
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			tok, err := cfg.Token(ctx)
			if err != nil {
				return fmt.Errorf("database token: %w", err)
			}
			cc.Password = tok
			return nil
		}
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns == 0 {
		pc.MaxConns = 16
	}
	// A 2xx answer means committed and flushed: never let a session turn
	// synchronous_commit off.
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pc.ConnConfig.RuntimeParams["application_name"] = "ica"
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	desc := describePG(&pc.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, &ConnConfigError{fmt.Sprintf("database %s: %s", desc, redactErr(err))}
	}
	e := &pgEngine{pool: pool, desc: desc}
	if err := e.checkServer(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := e.migrate(ctx, cfg.Logger, cfg.NoMigrate); err != nil {
		pool.Close()
		return nil, err
	}
	return e, nil
}

// classifyConnErr says whether a connection failure is one retrying fixes
// (the server is down or starting) or a setting to correct.
func classifyConnErr(desc string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000":
			return &ConnConfigError{fmt.Sprintf("database %s: authentication failed for user (check ICA_DATABASE_URL / ICA_DATABASE_PASSWORD)", desc)}
		case "3D000":
			return &ConnConfigError{fmt.Sprintf("database %s does not exist: create it first (CREATE DATABASE)", desc)}
		case "42501":
			return &ConnConfigError{fmt.Sprintf("database %s: permission denied: %s", desc, pe.Message)}
		}
	}
	return fmt.Errorf("database %s is not reachable: %s", desc, redactErr(err))
}

func (e *pgEngine) checkServer(ctx context.Context) error {
	var v string
	if err := e.pool.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		return classifyConnErr(e.desc, err)
	}
	return checkServerVersion(e.desc, v)
}

// checkServerVersion refuses a server older than minPostgresVersion, given
// its server_version_num.
func checkServerVersion(desc, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return &ConnConfigError{fmt.Sprintf("database %s reports server_version_num %q, not a number", desc, v)}
	}
	if n < minPostgresVersion {
		return &ConnConfigError{fmt.Sprintf("database %s runs PostgreSQL %d.%d; ICA needs 13 or newer", desc, n/10000, n%10000)}
	}
	return nil
}

type pgMigration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]pgMigration, error) {
	files, err := fs.Glob(pgMigrations, "migrations/postgres/*.sql")
	if err != nil {
		return nil, err
	}
	var out []pgMigration
	for _, f := range files {
		base := f[strings.LastIndex(f, "/")+1:]
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: the name must start with its version number", base)
		}
		b, err := pgMigrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, pgMigration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have the same version number", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// PostgresSchemaVersion is the newest migration this binary carries.
func PostgresSchemaVersion() int {
	ms, _ := loadMigrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the migrations the database lacks, in order, each in a
// transaction, under a session advisory lock. A database migrated by a newer
// binary is refused: its schema may hold what this one does not know.
func (e *pgEngine) migrate(ctx context.Context, log *slog.Logger, checkOnly bool) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return classifyConnErr(e.desc, err)
	}
	defer conn.Release()
	newest := 0
	if len(ms) > 0 {
		newest = ms[len(ms)-1].version
	}
	if checkOnly {
		cur := -1
		var exists bool
		err := conn.QueryRow(ctx, "SELECT to_regclass('ica_schema_migrations') IS NOT NULL").Scan(&exists)
		if err == nil && exists {
			err = conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM ica_schema_migrations").Scan(&cur)
		}
		switch {
		case err != nil:
			return classifyConnErr(e.desc, err)
		case cur < 0:
			return &ConnConfigError{fmt.Sprintf("database %s holds no ICA ledger (no schema): start ica serve or run ica migrate against it first", e.desc)}
		case cur < newest:
			return &ConnConfigError{fmt.Sprintf("database %s has schema version %d, older than this ica needs (%d); this command never changes the schema: upgrade the replicas (ica serve migrates) or run ica migrate first", e.desc, cur, newest)}
		case cur > newest:
			return &ConnConfigError{fmt.Sprintf("database %s has schema version %d, newer than this ica knows (%d): use the ica of the running replicas", e.desc, cur, newest)}
		}
		return nil
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", pgLockMigrate); err != nil {
		return classifyConnErr(e.desc, err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", pgLockMigrate) //nolint:errcheck
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS ica_schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return classifyConnErr(e.desc, err)
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM ica_schema_migrations").Scan(&cur); err != nil {
		return classifyConnErr(e.desc, err)
	}
	if cur > newest {
		return &ConnConfigError{fmt.Sprintf("database %s has schema version %d, newer than this ica knows (%d): upgrade ica, or point it at another database", e.desc, cur, newest)}
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return classifyConnErr(e.desc, err)
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("database %s: migration %s: %w", e.desc, m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO ica_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("database %s: migration %s: %w", e.desc, m.name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("database %s: migration %s: %w", e.desc, m.name, err)
		}
		if log != nil {
			log.Info("database migrated", "database", e.desc, "migration", m.name)
		}
	}
	return nil
}

// OpenPostgres opens the ledger kept in PostgreSQL, migrating its schema
// first. A new database gets an empty ledger with its own id.
func OpenPostgres(ctx context.Context, cfg PostgresConfig, opt Options) (*Store, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	eng, err := openPgEngine(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return start(eng, opt)
}

// MigratePostgres applies the schema migrations and returns the version the
// database is at (ica migrate, for a job that runs before the replicas).
func MigratePostgres(ctx context.Context, cfg PostgresConfig) (int, error) {
	eng, err := openPgEngine(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	var v int
	err = eng.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM ica_schema_migrations").Scan(&v)
	return v, err
}
