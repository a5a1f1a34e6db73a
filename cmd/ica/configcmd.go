package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ica-governance/ica"
)

// cmdConfig is `ica config example` and `ica config validate`.
func cmdConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandHelp["config"])
		return 2
	}
	switch args[0] {
	case "example":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "ica config example: unexpected argument %q\nRun 'ica config --help' for usage.\n", args[1])
			return 2
		}
		fmt.Fprint(stdout, exampleConfig)
		return 0
	case "validate":
		return cmdConfigValidate(args[1:], getenv, stdout, stderr)
	}
	fmt.Fprintf(stderr, "ica config: unknown subcommand %q\n\n%s", args[0], commandHelp["config"])
	return 2
}

// cmdConfigValidate loads the configuration as serve would and lists every
// problem: exit 0 valid, 1 problems, 2 bad usage.
func cmdConfigValidate(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv("ICA_CONFIG"), "YAML configuration file (ICA_CONFIG)")
	if err := fs.Parse(reorder(args)); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ica config validate: unexpected argument %q (the file goes after --config)\n", fs.Arg(0))
		return 2
	}
	what := "the environment and the defaults"
	if *path != "" {
		what = *path + " and the environment"
	}
	_, err := loadConfig(*path, getenv)
	var ce *ConfigError
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "ok: %s make a valid configuration\n", what)
		return 0
	case errors.As(err, &ce):
		fmt.Fprintf(stdout, "%s: %d problem(s):\n", what, len(ce.Problems))
		for _, p := range ce.Problems {
			fmt.Fprintln(stdout, "  -", p)
		}
		return 1
	}
	fmt.Fprintln(stdout, err)
	return 1
}

// cmdKey prints the signing public key and its fingerprint. It never
// creates a key: a missing one is an error saying where it looked.
func cmdKey(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rotate" {
		return cmdKeyRotate(context.Background(), args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	loc, err := locate()
	if err != nil {
		return err
	}
	if loc.SigningKey == "" {
		p := filepath.Join(loc.Dir, "signing.key")
		if _, err := os.Stat(p); err != nil {
			abs, _ := filepath.Abs(p)
			return fmt.Errorf("no signing key: ICA_SIGNING_KEY is not set and there is no %s (data directory from %s; ica serve creates it on first start)", abs, loc.From)
		}
	}
	key, err := loadSigningKey(loc.signingConfig())
	if err != nil {
		return err
	}
	pub := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	fmt.Fprintf(stdout, "public key:  %s\nfingerprint: %s\n", pub, ica.KeyFingerprint(pub))
	return nil
}
