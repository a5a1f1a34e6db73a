package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the variable the PostgreSQL scenarios read their
// server from: a superuser DSN (they create and drop databases of their own).
const PostgresEnv = "ICA_BENCH_POSTGRES"

// Postgres is the server the PostgreSQL scenarios run on.
type Postgres struct {
	cfg *pgx.ConnConfig
}

// OpenPostgres checks that dsn reaches a PostgreSQL server on which
// databases can be created, and says plainly what is wrong otherwise.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	if dsn == "" {
		return nil, fmt.Errorf("no PostgreSQL server: pass -database-url or set %s to a superuser DSN (e.g. host=127.0.0.1 port=5432 user=postgres sslmode=disable)", PostgresEnv)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("the PostgreSQL DSN does not parse: %w", err)
	}
	p := &Postgres{cfg: cfg}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s cannot be reached: %w", p.Describe(), err)
	}
	defer conn.Close(context.Background())
	var super string
	if err := conn.QueryRow(ctx, "SHOW is_superuser").Scan(&super); err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w", p.Describe(), err)
	}
	var createdb bool
	_ = conn.QueryRow(ctx, "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user").Scan(&createdb)
	if super != "on" && !createdb {
		return nil, fmt.Errorf("PostgreSQL at %s: user %s may not create databases (the scenarios need a superuser DSN)", p.Describe(), cfg.User)
	}
	return p, nil
}

// Describe names the server without its password.
func (p *Postgres) Describe() string {
	return fmt.Sprintf("postgres://%s@%s:%d", p.cfg.User, p.cfg.Host, p.cfg.Port)
}

// DSN returns a key=value DSN for database name on the server.
func (p *Postgres) DSN(name string) string {
	q := func(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", q(p.cfg.Host), p.cfg.Port, q(p.cfg.User), q(name))
	if p.cfg.Password != "" {
		dsn += " password=" + q(p.cfg.Password)
	}
	if p.cfg.TLSConfig == nil {
		dsn += " sslmode=disable"
	} else {
		dsn += " sslmode=require"
	}
	return dsn
}

// CreateDatabase creates an empty database named prefix_<random> and
// returns its DSN and a function that drops it.
func (p *Postgres) CreateDatabase(ctx context.Context, prefix string) (dsn string, drop func(), err error) {
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if err := p.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return p.DSN(name), drop, nil
}

func (p *Postgres) exec(ctx context.Context, sql string) error {
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Settings returns the server settings that decide what a durable commit
// costs, as "name=value" in a fixed order, for the report.
func (p *Postgres) Settings(ctx context.Context) string {
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return "settings unknown: " + err.Error()
	}
	defer conn.Close(context.Background())
	names := []string{"server_version", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers", "max_connections"}
	rows, err := conn.Query(ctx, "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)", names)
	if err != nil {
		return "settings unknown: " + err.Error()
	}
	got := map[string]string{}
	for rows.Next() {
		var n, v string
		if rows.Scan(&n, &v) == nil {
			got[n] = v
		}
	}
	rows.Close()
	var out []string
	for _, n := range names {
		out = append(out, n+"="+got[n])
	}
	return strings.Join(out, ", ")
}

// DataDirectory returns the server's data directory (superuser only), for
// the report: on this machine its filesystem says whether fsync costs
// anything.
func (p *Postgres) DataDirectory(ctx context.Context) string {
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return ""
	}
	defer conn.Close(context.Background())
	var dir string
	_ = conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir)
	return dir
}

// FindPgbench returns the pgbench to run: explicit when given, else the
// one on PATH, else the newest in Debian's /usr/lib/postgresql/*/bin.
func FindPgbench(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("pgbench %s: %w", explicit, err)
		}
		return explicit, nil
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(found) > 0 {
		slices.SortFunc(found, func(a, b string) int { return versionOf(b) - versionOf(a) })
		return found[0], nil
	}
	return "", errors.New("pgbench not found: install PostgreSQL (Debian: apt-get install postgresql; it ships pgbench) or pass -pgbench PATH")
}

func versionOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// PgbenchResult is one pgbench run of single-row inserts.
type PgbenchResult struct {
	TPS      float64 // transactions per second, without connection time
	Count    int64
	Failed   int64
	Duration time.Duration
	Latency  []time.Duration // sorted, every transaction
}

// PerSec returns the committed inserts per second.
func (r PgbenchResult) PerSec() float64 { return r.TPS }

// PgbenchInserts measures the raw engine: clients connections (threads
// pgbench threads) each committing one INSERT of a valueSize-byte row per
// transaction into a table of its own (bigserial primary key, as ICA's
// tables have a key index), for warmup (not counted) and then duration.
// dir receives the script and the per-transaction logs.
func PgbenchInserts(ctx context.Context, bin, dsn, dir string, clients, threads, valueSize int, warmup, duration time.Duration) (PgbenchResult, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return PgbenchResult{}, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return PgbenchResult{}, err
	}
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, v text NOT NULL)")
	conn.Close(context.Background())
	if err != nil {
		return PgbenchResult{}, fmt.Errorf("create the baseline table: %w", err)
	}
	script := filepath.Join(dir, "insert.sql")
	if err := os.WriteFile(script, []byte("INSERT INTO bench_rows (v) VALUES ('"+strings.Repeat("x", valueSize)+"');\n"), 0o600); err != nil {
		return PgbenchResult{}, err
	}
	run := func(d time.Duration, logPrefix string) (string, error) {
		args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
			"-T", strconv.Itoa(max(1, int(d.Round(time.Second).Seconds()))), "-f", script}
		if logPrefix != "" {
			args = append(args, "-l", "--log-prefix", logPrefix)
		}
		args = append(args, dsn)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		// The DSN carries everything: no PG* setting of the caller's may change it.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PG") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("pgbench: %w\n%s", err, out)
		}
		return string(out), nil
	}
	if warmup > 0 {
		if _, err := run(warmup, ""); err != nil {
			return PgbenchResult{}, err
		}
	}
	prefix := filepath.Join(dir, "pgbench_log")
	out, err := run(duration, prefix)
	if err != nil {
		return PgbenchResult{}, err
	}
	r := PgbenchResult{Duration: duration}
	if m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindStringSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	} else {
		return r, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	if m := regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`).FindStringSubmatch(out); m != nil {
		r.Count, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := regexp.MustCompile(`number of failed transactions: ([0-9]+)`).FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	// Per-transaction logs: "client_id transaction_no time script_no
	// time_epoch time_us", time in microseconds.
	logs, _ := filepath.Glob(prefix + ".*")
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			if us, err := strconv.ParseInt(fs[2], 10, 64); err == nil {
				r.Latency = append(r.Latency, time.Duration(us)*time.Microsecond)
			}
		}
		f.Close()
		os.Remove(l)
	}
	slices.Sort(r.Latency)
	return r, nil
}
