package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ica-governance/ica/store"
	"gopkg.in/yaml.v3"
)

// ledgerLocation is where a tool looks for the ledger, found the way
// `ica serve` finds it, and where that answer came from (for messages).
type ledgerLocation struct {
	Dir  string
	From string // "--data-dir", "ICA_DATA_DIR", "data_dir in FILE", "the default ./data"
	// SigningKey is ICA_SIGNING_KEY, or signing_key from the configuration file.
	SigningKey string
	// ConfigPath is the configuration file (--config or ICA_CONFIG), if any.
	ConfigPath string
	// Database is the shared ledger (ICA_DATABASE_URL or database.url of
	// the configuration file); an explicit --data-dir overrides it.
	Database DatabaseConfig
	// Migrate lets the tool bring the database's schema up to date (a
	// restore, which replaces the ledger); the others never change it.
	Migrate bool
}

// locationFlags registers --data-dir and --config on fs. The returned
// function resolves, after fs.Parse, the data directory as serve does:
// --data-dir, then ICA_DATA_DIR, then data_dir in the configuration file
// (--config or ICA_CONFIG), then ./data.
func locationFlags(fs *flag.FlagSet, getenv func(string) string) func() (ledgerLocation, error) {
	dir := fs.String("data-dir", "", "ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)")
	config := fs.String("config", getenv("ICA_CONFIG"), "configuration file whose data_dir and signing_key to use (ICA_CONFIG)")
	return func() (ledgerLocation, error) {
		loc := ledgerLocation{SigningKey: getenv("ICA_SIGNING_KEY"), ConfigPath: *config}
		var file struct {
			DataDir    string         `yaml:"data_dir"`
			SigningKey string         `yaml:"signing_key"`
			Database   DatabaseConfig `yaml:"database"`
		}
		if *config != "" {
			raw, err := os.ReadFile(*config)
			if err != nil {
				return loc, fmt.Errorf("read the configuration file (--config or ICA_CONFIG): %w", err)
			}
			if err := yaml.Unmarshal(raw, &file); err != nil {
				return loc, fmt.Errorf("configuration file %s: %w", *config, err)
			}
			if loc.SigningKey == "" {
				loc.SigningKey = file.SigningKey
			}
		}
		loc.Database = file.Database
		if err := loc.Database.applyEnv(getenv); err != nil {
			return loc, err
		}
		switch {
		case *dir != "":
			loc.Dir, loc.From = *dir, "--data-dir"
			loc.Database = DatabaseConfig{}
		case getenv("ICA_DATA_DIR") != "":
			loc.Dir, loc.From = getenv("ICA_DATA_DIR"), "ICA_DATA_DIR"
		case file.DataDir != "":
			loc.Dir, loc.From = file.DataDir, "data_dir in "+*config
		default:
			loc.Dir, loc.From = "./data", "the default ./data"
		}
		return loc, nil
	}
}

// ledger returns the ledger file's path.
func (l ledgerLocation) ledger() string { return ledgerPath(l.Dir) }

// missing says where the ledger was looked for, and how to point elsewhere.
func (l ledgerLocation) missing() error {
	abs, err := filepath.Abs(l.ledger())
	if err != nil {
		abs = l.ledger()
	}
	return fmt.Errorf("no ledger at %s (data directory from %s); pass --data-dir DIR, set ICA_DATA_DIR, or --config FILE with data_dir", abs, l.From)
}

// signingConfig is the configuration the offline tools load the signing key with.
func (l ledgerLocation) signingConfig() *Config {
	cfg := defaultConfig()
	cfg.DataDir, cfg.SigningKey = l.Dir, l.SigningKey
	return cfg
}

// shared reports whether the ledger is a database rather than a file.
func (l ledgerLocation) shared() bool { return l.Database.URL != "" }

// openStore opens the ledger the location names, for a tool that runs
// beside (or without) a server: the database, or the ledger file, which no
// server may hold then. It returns the signing key too.
func (l ledgerLocation) openStore(ctx context.Context) (*store.Store, ed25519.PrivateKey, error) {
	return l.openStoreWith(ctx, store.Options{})
}

// openStoreWith is openStore with more options (the key is set here).
func (l ledgerLocation) openStoreWith(ctx context.Context, opt store.Options) (*store.Store, ed25519.PrivateKey, error) {
	if l.shared() {
		if l.SigningKey == "" {
			return nil, nil, errors.New("ICA_SIGNING_KEY is required with ICA_DATABASE_URL (the key the replicas sign with)")
		}
		key, err := loadSigningKey(l.signingConfig())
		if err != nil {
			return nil, nil, err
		}
		pc, err := l.Database.postgresConfig(nil, nil)
		if err != nil {
			return nil, nil, err
		}
		pc.NoMigrate = !l.Migrate
		opt.Key = key
		st, err := store.OpenPostgres(ctx, pc, opt)
		return st, key, err
	}
	if _, err := os.Stat(l.ledger()); err != nil {
		return nil, nil, l.missing()
	}
	key, err := loadSigningKey(l.signingConfig())
	if err != nil {
		return nil, nil, err
	}
	if err := store.CheckSize(l.ledger()); err != nil {
		return nil, nil, err
	}
	opt.Key = key
	st, err := store.Open(l.ledger(), opt)
	return st, key, err
}
