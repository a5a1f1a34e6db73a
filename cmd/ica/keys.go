package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// loadSecret returns the configured secret (hex, from the setting named
// setting), or the one kept in the data directory, generating it there
// (mode 0600) on first start.
func loadSecret(configured, setting, dir, name string, size int) ([]byte, error) {
	if configured != "" {
		b, err := hex.DecodeString(strings.TrimSpace(configured))
		if err != nil || len(b) != size {
			return nil, fmt.Errorf("%s must be %d bytes in hex (%d hex digits)", setting, size, 2*size)
		}
		return b, nil
	}
	path := filepath.Join(dir, name)
	raw, err := os.ReadFile(path)
	if err == nil {
		b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(b) != size {
			return nil, fmt.Errorf("%s is damaged: expected %d bytes in hex", path, size)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.WriteString(hex.EncodeToString(b) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return b, f.Close()
}

func loadSigningKey(c *Config) (ed25519.PrivateKey, error) {
	seed, err := loadSecret(c.SigningKey, "ICA_SIGNING_KEY (signing_key)", c.DataDir, "signing.key", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
