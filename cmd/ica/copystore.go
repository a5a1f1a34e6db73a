package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ica-governance/ica/store"
)

// isDatabaseURL tells a PostgreSQL connection string from a path.
func isDatabaseURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") ||
		strings.Contains(s, "host=") || strings.Contains(s, "dbname=")
}

// openLedgerAt opens a ledger named on the command line: a PostgreSQL URL,
// a data directory (its ica.db) or a ledger file. A bbolt file must exist
// unless create is set.
func openLedgerAt(ctx context.Context, where string, create bool, cfg *Config, key ed25519.PrivateKey) (*store.Store, error) {
	opt := store.Options{Key: key}
	if isDatabaseURL(where) {
		dc := DatabaseConfig{URL: where, Password: cfg.Database.Password, PasswordFile: cfg.Database.PasswordFile,
			Entra: cfg.Database.Entra, EntraClientID: cfg.Database.EntraClientID}
		pc, err := dc.postgresConfig(nil, nil)
		if err != nil {
			return nil, err
		}
		pc.NoMigrate = !create // the source is read at the schema it has
		return store.OpenPostgres(ctx, pc, opt)
	}
	path := where
	if fi, err := os.Stat(where); err == nil && fi.IsDir() {
		path = ledgerPath(where)
	}
	if _, err := os.Stat(path); err != nil && !create {
		return nil, fmt.Errorf("no ledger at %s", path)
	} else if err == nil && create {
		return nil, fmt.Errorf("%s exists: copy-store writes only a new ledger file", path)
	}
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
	}
	return store.Open(path, opt)
}

// cmdCopyStore copies a ledger verbatim between engines and verifies the copy.
func cmdCopyStore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("copy-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the ledger to copy: a data directory, a ledger file or a PostgreSQL URL")
	to := fs.String("to", getenv("ICA_DATABASE_URL"), "where to copy it: an empty PostgreSQL database (default ICA_DATABASE_URL) or a new ledger file")
	configPath := fs.String("config", getenv("ICA_CONFIG"), "YAML configuration file (ICA_CONFIG), for database credentials")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: ica copy-store --from DATA_DIR|FILE|URL --to URL|FILE

Copies a ledger verbatim (same seqs, hashes, checkpoints, ledger id, queued
outbox messages) into an empty PostgreSQL database or a new ledger file, then
checks both and compares them. Stop the server that writes the source first
(a bbolt ledger in use is locked; a copy of a database is a snapshot).`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return errors.New("copy-store needs --from and --to")
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	// Copying signs nothing; the key only satisfies the store.
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	src, err := openLedgerAt(ctx, *from, false, cfg, key)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := openLedgerAt(ctx, *to, true, cfg, key)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer dst.Close()
	start := time.Now()
	fmt.Fprintf(stdout, "copying %s (%d entries, ledger %s) to %s\n", src.Describe(), src.LedgerEntries(), src.LedgerID(), dst.Describe())
	if err := dst.CopyFrom(ctx, src, func(bucket string, n int) {
		if n > 0 {
			fmt.Fprintf(stdout, "  %-28s %d keys\n", bucket, n)
		}
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied in %s; checking both\n", time.Since(start).Round(time.Millisecond))
	sr, err := src.Check()
	if err != nil {
		return fmt.Errorf("check the source: %w", err)
	}
	dr, err := dst.Check()
	if err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	if sr.Entries != dr.Entries || sr.Head != dr.Head || src.LedgerID() != dst.LedgerID() {
		return fmt.Errorf("the copy differs from the source: %d entries, head %s, ledger %s against %d, %s, %s",
			dr.Entries, dr.Head, dst.LedgerID(), sr.Entries, sr.Head, src.LedgerID())
	}
	if strings.Join(sr.Problems, "\n") != strings.Join(dr.Problems, "\n") {
		return fmt.Errorf("the copy checks differently from the source:\n  source: %v\n  copy:   %v", sr.Problems, dr.Problems)
	}
	fmt.Fprintf(stdout, "ok: %d entries, head %s, ledger %s, the same in both\n", dr.Entries, dr.Head, dst.LedgerID())
	return nil
}
