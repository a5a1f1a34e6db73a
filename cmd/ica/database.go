package main

// The ledger's engine: the embedded bbolt file in the data directory (the
// default), or PostgreSQL (ICA_DATABASE_URL) shared by replicas.

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// DatabaseConfig selects PostgreSQL instead of the embedded ledger.
type DatabaseConfig struct {
	// URL is a postgres:// URL or a key=value DSN (ICA_DATABASE_URL).
	URL string `yaml:"url"`
	// PasswordFile holds the password (ICA_DATABASE_PASSWORD_FILE); the
	// password itself belongs in the environment (ICA_DATABASE_PASSWORD).
	PasswordFile string `yaml:"password_file"`
	Password     string `yaml:"-"`
	// Entra uses an Entra ID access token as the password (Azure Database
	// for PostgreSQL with Microsoft Entra authentication; ICA_DATABASE_ENTRA).
	Entra bool `yaml:"entra"`
	// EntraClientID picks a user-assigned managed identity (ICA_DATABASE_ENTRA_CLIENT_ID).
	EntraClientID string `yaml:"entra_client_id"`
	// MaxConns bounds the connection pool (ICA_DATABASE_MAX_CONNS, default 16).
	MaxConns int `yaml:"max_conns"`
}

// pgEntraScope is the token audience of Azure Database for PostgreSQL.
const pgEntraScope = "https://ossrdbms-aad.database.windows.net/.default"

func (d *DatabaseConfig) applyEnv(getenv func(string) string) error {
	if v := getenv("ICA_DATABASE_URL"); v != "" {
		d.URL = v
	}
	if v := getenv("ICA_DATABASE_PASSWORD"); v != "" {
		d.Password = v
	}
	if v := getenv("ICA_DATABASE_PASSWORD_FILE"); v != "" {
		d.PasswordFile = v
	}
	if v := getenv("ICA_DATABASE_ENTRA"); v != "" {
		switch strings.ToLower(v) {
		case "true", "1", "yes":
			d.Entra = true
		case "false", "0", "no":
			d.Entra = false
		default:
			return fmt.Errorf("ICA_DATABASE_ENTRA=%q is not true or false", v)
		}
	}
	if v := getenv("ICA_DATABASE_ENTRA_CLIENT_ID"); v != "" {
		d.EntraClientID = v
	}
	if v := getenv("ICA_DATABASE_MAX_CONNS"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("ICA_DATABASE_MAX_CONNS=%q is not a number from 1 to 1000", v)
		}
		d.MaxConns = n
	}
	return nil
}

func (d *DatabaseConfig) validate() error {
	if d.URL == "" {
		if d.Entra || d.Password != "" || d.PasswordFile != "" {
			return errors.New("database settings are given but ICA_DATABASE_URL is not")
		}
		return nil
	}
	if _, err := store.ParsePostgres(d.URL); err != nil {
		return err
	}
	if d.Entra && (d.Password != "" || d.PasswordFile != "") {
		return errors.New("ICA_DATABASE_ENTRA takes its password from Entra ID: leave ICA_DATABASE_PASSWORD and ICA_DATABASE_PASSWORD_FILE unset")
	}
	return nil
}

// postgresConfig builds the store's connection settings: the password from
// the environment or its file, or an Entra ID token source.
func (d *DatabaseConfig) postgresConfig(log *slog.Logger, cred tokenCredential) (store.PostgresConfig, error) {
	pc := store.PostgresConfig{URL: d.URL, Password: d.Password, MaxConns: int32(d.MaxConns), Logger: log}
	if d.PasswordFile != "" {
		raw, err := os.ReadFile(d.PasswordFile)
		if err != nil {
			return pc, fmt.Errorf("ICA_DATABASE_PASSWORD_FILE: %w", err)
		}
		pc.Password = strings.TrimRight(string(raw), "\r\n")
	}
	if d.Entra {
		if cred == nil {
			var err error
			if d.EntraClientID != "" {
				cred, err = azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(d.EntraClientID)})
			} else {
				cred, err = azidentity.NewDefaultAzureCredential(nil)
			}
			if err != nil {
				return pc, fmt.Errorf("database Entra ID credential: %w", err)
			}
		}
		pc.Token = (&tokenCache{cred: cred, scope: pgEntraScope}).Token
	}
	return pc, nil
}

// tokenCredential is what azidentity credentials offer.
type tokenCredential interface {
	GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error)
}

// tokenCache hands out one access token until shortly before it expires,
// so every new database connection does not ask Entra ID for a token, and
// none gets a token about to expire.
type tokenCache struct {
	cred  tokenCredential
	scope string
	now   func() time.Time

	mu  sync.Mutex
	tok azcore.AccessToken
}

// tokenRefreshBefore is how long before its expiry a token is replaced.
const tokenRefreshBefore = 5 * time.Minute

func (c *tokenCache) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	if c.tok.Token != "" && now.Add(tokenRefreshBefore).Before(c.tok.ExpiresOn) {
		return c.tok.Token, nil
	}
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return "", err
	}
	c.tok = tok
	return tok.Token, nil
}

// openLedger opens the configured ledger: PostgreSQL when ICA_DATABASE_URL
// is set, else the bbolt file in the data directory.
func openLedger(ctx context.Context, cfg *Config, opt store.Options, log *slog.Logger) (*store.Store, error) {
	if cfg.Database.URL == "" {
		return store.Open(ledgerPath(cfg.DataDir), opt)
	}
	pc, err := cfg.Database.postgresConfig(log, nil)
	if err != nil {
		return nil, err
	}
	return store.OpenPostgres(ctx, pc, opt)
}

// connConfigError reports a database setting that retrying cannot fix.
func connConfigError(err error) bool {
	var ce *store.ConnConfigError
	return errors.As(err, &ce)
}

// keyFingerprints are the fingerprints replicas must agree on: the
// checkpoint signing key's, and the action secret's (a keyed hash, so the
// secret is not revealed).
func keyFingerprints(key ed25519.PrivateKey, actionSecret []byte) (fps, settings map[string]string) {
	pub := key.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(append([]byte("ica action secret fingerprint\x00"), actionSecret...))
	fps = map[string]string{
		"signing":       ica.KeyFingerprint(hex.EncodeToString(pub)),
		"action_secret": hex.EncodeToString(sum[:8]),
	}
	settings = map[string]string{"signing": "the signing key ICA_SIGNING_KEY", "action_secret": "the action secret ICA_ACTION_SECRET"}
	return fps, settings
}

// cmdMigrate applies the database migrations (a job before a rolling update).
func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("ICA_CONFIG"), "YAML configuration file (ICA_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ica migrate [--config FILE]\n\nApplies the PostgreSQL schema migrations of this version to ICA_DATABASE_URL and exits.\nica serve applies them too; run this as a job before a rolling update.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	if cfg.Database.URL == "" {
		return errors.New("ica migrate needs ICA_DATABASE_URL: the embedded ledger migrates itself when it opens")
	}
	log := newLogger(stderr, cfg.LogLevel)
	pc, err := cfg.Database.postgresConfig(log, nil)
	if err != nil {
		return err
	}
	v, err := store.MigratePostgres(ctx, pc)
	if err != nil {
		return err
	}
	desc, _ := store.ParsePostgres(cfg.Database.URL)
	fmt.Fprintf(stdout, "database %s is at schema version %d (this ica's newest: %d)\n", desc, v, store.PostgresSchemaVersion())
	return nil
}

// cmdKeyRotate adds the fingerprint of the configured signing key or action
// secret to those a shared ledger accepts, so replicas started with it are
// no longer refused (the old one stays accepted until the rollout is done).
func cmdKeyRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("ICA_CONFIG"), "YAML configuration file (ICA_CONFIG)")
	kind := fs.String("kind", "", "signing (ICA_SIGNING_KEY) or action_secret (ICA_ACTION_SECRET)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ica key rotate --kind signing|action_secret [--config FILE]\n\nAccepts the key now set in ICA_SIGNING_KEY or ICA_ACTION_SECRET for the shared ledger\n(ICA_DATABASE_URL), so replicas started with it are not refused; recorded in the ledger.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageErrorf("%v", err)
	}
	if *kind != "signing" && *kind != "action_secret" {
		return usageErrorf("--kind must be signing or action_secret")
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	if cfg.Database.URL == "" {
		return errors.New("ica key rotate is for a shared ledger (ICA_DATABASE_URL): an embedded ledger has one process and checks no fingerprints")
	}
	if cfg.SigningKey == "" || cfg.ActionSecret == "" {
		return errors.New("ICA_SIGNING_KEY and ICA_ACTION_SECRET must be set (the new one of the kind you rotate)")
	}
	key, err := loadSigningKey(cfg)
	if err != nil {
		return err
	}
	secret, err := loadSecret(cfg.ActionSecret, "ICA_ACTION_SECRET (action_secret)", cfg.DataDir, "action.secret", 32)
	if err != nil {
		return err
	}
	fps, _ := keyFingerprints(key, secret)
	pc, err := cfg.Database.postgresConfig(nil, nil)
	if err != nil {
		return err
	}
	pc.NoMigrate = true
	st, err := store.OpenPostgres(ctx, pc, store.Options{Key: key})
	if err != nil {
		return err
	}
	defer st.Close()
	added, err := st.AcceptKey(ctx, *kind, fps[*kind], "ica key rotate")
	if err != nil {
		return err
	}
	if !added {
		fmt.Fprintf(stdout, "the ledger already accepts %s %s\n", *kind, fps[*kind])
		return nil
	}
	all, _ := st.AcceptedKeys(*kind)
	fmt.Fprintf(stdout, "accepted %s %s (now: %s); recorded in the ledger\n", *kind, fps[*kind], strings.Join(all, ", "))
	return nil
}
