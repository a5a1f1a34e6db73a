package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/export"
	"github.com/ica-governance/ica/slashcmds"
)

// parsePeriod reads --from/--to dates (to inclusive) into [from, to+1day);
// the default is the current month in UTC.
func parsePeriod(from, to string, now time.Time) (time.Time, time.Time, error) {
	f, t := ica.MonthStart(now), ica.MonthStart(now).AddDate(0, 1, 0)
	var err error
	if from != "" {
		if f, err = ica.ParseDay(from); err != nil {
			return f, t, fmt.Errorf("--from %q is not a date YYYY-MM-DD", from)
		}
	}
	if to != "" {
		d, err := ica.ParseDay(to)
		if err != nil {
			return f, t, fmt.Errorf("--to %q is not a date YYYY-MM-DD", to)
		}
		t = d.AddDate(0, 0, 1)
	}
	if !t.After(f) {
		return f, t, errors.New("--to is before --from")
	}
	return f, t, nil
}

// exportQuery handles "GET /export" on the admin socket: the same export a
// CLI would make, from the live ledger.
func (a *adminHandler) export(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, to, err := parsePeriod(q.Get("from"), q.Get("to"), a.exporter.clock.Now())
	if err != nil {
		return ica.Errorf(ica.EINVALID, "%v", err)
	}
	format := q.Get("format")
	if format == "" {
		format = export.FormatCSV
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = a.exporter.Export(r.Context(), slashcmds.ExportQuery{From: from, To: to, Format: format, Pipeline: q.Get("pipeline")}, w)
	if err != nil {
		a.log.Error("export failed", "err", err)
	}
	return nil
}

// cmdExport writes a signed export of a period to a file.
func cmdExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	from := fs.String("from", "", "first day YYYY-MM-DD (default: first day of this month, UTC)")
	to := fs.String("to", "", "last day YYYY-MM-DD, inclusive (default: last day of this month)")
	format := fs.String("format", "csv", "csv, json (JSON Lines) or pdf")
	pipeline := fs.String("pipeline", "", "only this pipeline's runs and approvals")
	out := fs.String("out", "", "output file (required)")
	verify := fs.Bool("verify", false, "verify the written file (always done for an export streamed from a running server)")
	force := fs.Bool("force", false, "replace the output file if it exists")
	if err := fs.Parse(reorderWithBools(args, "verify", "force")); err != nil {
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (the output file goes after --out)", fs.Arg(0))
	}
	if *out == "" {
		return usageErrorf("--out FILE is required")
	}
	switch *format {
	case export.FormatCSV, export.FormatJSON, export.FormatPDF:
	default:
		return usageErrorf("--format %q is not one of csv, json, pdf", *format)
	}
	f, t, err := parsePeriod(*from, *to, time.Now())
	if err != nil {
		return usageErrorf("%v", err)
	}
	if fi, err := os.Stat(*out); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory; --out names the file to write", *out)
		}
		if !*force {
			return fmt.Errorf("%s exists: pass --force to replace it, or choose a new file name", *out)
		}
	}
	loc, err := locate()
	if err != nil {
		return err
	}
	var c *http.Client
	if !loc.shared() {
		c = socketClient(socketPath(loc.Dir))
		if c == nil {
			if _, err := os.Stat(loc.ledger()); err != nil {
				return loc.missing()
			}
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".ica-export-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", *out, pathCause(err))
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var manifest *export.Manifest
	if c != nil {
		// Bytes that crossed a socket are checked before they are kept: a
		// server that failed half-way may have sent a short file.
		*verify = true
		q := url.Values{"from": {f.Format(time.DateOnly)}, "to": {t.AddDate(0, 0, -1).Format(time.DateOnly)}, "format": {*format}, "pipeline": {*pipeline}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ica/export?"+q.Encode(), nil)
		resp, err := c.Do(req)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("export from the running server: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			tmp.Close()
			return fmt.Errorf("export from the running server: %s", resp.Status)
		}
		if _, err := io.Copy(bw, resp.Body); err != nil {
			tmp.Close()
			return err
		}
	} else {
		st, key, err := loc.openStore(ctx)
		if err != nil {
			tmp.Close()
			return err
		}
		st.ReleasePagesWhileScanning() // a one-shot reader: stay small on a large ledger
		manifest, err = ledgerExporter{st: st, key: key, clock: ica.SystemClock{}}.Export(ctx,
			slashcmds.ExportQuery{From: f, To: t, Format: *format, Pipeline: *pipeline}, bw)
		st.Close()
		if err != nil {
			tmp.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("cannot write %s: %w", *out, pathCause(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", *out, pathCause(err))
	}
	records, fingerprint := uint64(0), ""
	if manifest != nil {
		records, fingerprint = manifest.Count, manifest.Fingerprint
	}
	if *verify {
		// Verified from the open file, so a failure names the export, not
		// the temporary file it was written to.
		vf, err := os.Open(tmp.Name())
		if err != nil {
			return fmt.Errorf("cannot verify %s: %w", *out, pathCause(err))
		}
		rep, err := export.VerifyWith(vf, export.VerifyOptions{})
		vf.Close()
		if err != nil {
			return fmt.Errorf("the export does not verify, so %s was not written: %w", *out, err)
		}
		records, fingerprint = uint64(rep.Records), rep.Fingerprint
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("cannot write %s: %w", *out, pathCause(err))
	}
	fmt.Fprintf(stdout, "export written to %s: %d records, signed by key %s\n", *out, records, fingerprint)
	return nil
}

// cmdVerify checks an export offline and names the first bad record.
func cmdVerify(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pub := fs.String("public-key", "", "trust only this Ed25519 public key (hex), as published by the ICA operators")
	keyDir := fs.String("data-dir", "", "trust the key of the ICA ledger in this directory (its signing.key)")
	if err := fs.Parse(reorder(args)); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: ica verify FILE [--public-key HEX | --data-dir DIR]")
		return 2
	}
	var opt export.VerifyOptions
	switch {
	case *pub != "":
		raw, err := hex.DecodeString(strings.TrimSpace(*pub))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			fmt.Fprintln(stderr, "ica verify: --public-key must be 32 bytes in hex")
			return 2
		}
		opt.PublicKey = raw
	case *keyDir != "":
		cfg := defaultConfig()
		cfg.DataDir = *keyDir
		if _, err := os.Stat(filepath.Join(*keyDir, "signing.key")); err != nil {
			fmt.Fprintf(stderr, "ica verify: no signing.key in %s\n", *keyDir)
			return 2
		}
		key, err := loadSigningKey(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "ica verify:", err)
			return 2
		}
		opt.PublicKey = key.Public().(ed25519.PublicKey)
	}
	rep, err := export.VerifyFileWith(fs.Arg(0), opt)
	if rep != nil {
		fmt.Fprint(stdout, rep.String())
		if opt.PublicKey == nil && rep.OK {
			fmt.Fprintln(stdout, "note: no key was pinned; compare the key fingerprint above with the one your ICA operators publish (or pass --public-key)")
		}
	}
	if err != nil {
		if rep == nil {
			fmt.Fprintln(stderr, "ica verify:", err)
		}
		return 1
	}
	return 0
}
