package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ica-governance/ica/store"
)

// cmdRestore replaces the ledger of a data directory with a backup. It
// refuses while a server uses the directory, refuses to replace an existing
// ledger without --force (and then keeps it beside the new one), and changes
// nothing unless the backup's whole chain, checkpoints and indexes verify.
func cmdRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	force := fs.Bool("force", false, "replace an existing ledger (kept as ica.db.before-restore-<time>)")
	blobName := fs.String("blob", "", "restore this blob of the backup container instead of a FILE (ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL)")
	container := fs.String("blob-container", backupContainer(getenv), "blob container of the backups (ICA_BACKUP_CONTAINER)")
	if err := fs.Parse(reorderWithBools(args, "force")); err != nil {
		return usageErrorf("%v", err)
	}
	if (fs.NArg() == 1) == (*blobName != "") {
		return usageErrorf("ica restore FILE [--data-dir DIR] [--force]   or   ica restore --blob NAME [--data-dir DIR] [--force]")
	}
	loc, err := locate()
	if err != nil {
		return err
	}
	dir := &loc.Dir
	if loc.shared() {
		return restoreDatabase(ctx, loc, fs.Arg(0), *blobName, *container, *force, getenv, stdout)
	}
	if socketClient(socketPath(*dir)) != nil {
		return fmt.Errorf("a server is running on %s (its admin socket answers): stop it before restoring", *dir)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	dst := ledgerPath(*dir)
	exists := false
	if _, err := os.Stat(dst); err == nil {
		exists = true
		unlock, err := lockLedger(dst)
		if err != nil {
			return err
		}
		defer unlock()
		if !*force {
			return fmt.Errorf("%s exists: pass --force to replace it (the current file is kept as %s.before-restore-<time>)", dst, filepath.Base(dst))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key, err := restoreKey(loc)
	if err != nil {
		return err
	}

	// Copy first: verifying opens the file, and the backup itself must stay
	// exactly as it was.
	var src io.ReadCloser
	what := ""
	if *blobName != "" {
		a, err := backupArchive(getenv, *container)
		if err != nil {
			return err
		}
		if src, err = a.Download(ctx, *blobName); err != nil {
			return err
		}
		what = "blob " + *container + "/" + *blobName
	} else {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		src, what = f, fs.Arg(0)
	}
	tmp, n, err := copyToTemp(src, *dir, ".ica-restore-*")
	src.Close()
	if err != nil {
		return fmt.Errorf("copy %s: %w", what, err)
	}
	defer os.Remove(tmp)

	if err := store.CheckSize(tmp); err != nil {
		return fmt.Errorf("%s does not verify, nothing was changed: it is truncated", what)
	}
	if err := store.VerifyBackup(tmp); err != nil {
		return fmt.Errorf("%s does not verify, nothing was changed: %w", what, err)
	}
	if rep, err := checkLedgerFile(tmp, key); err != nil {
		return fmt.Errorf("%s: %w; nothing was changed", what, err)
	} else if !rep.OK() {
		printReport(stdout, rep)
		return fmt.Errorf("%s is not consistent (see above), nothing was changed", what)
	}

	if exists {
		aside := dst + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		// A hard link keeps the old ledger while the rename below replaces
		// ica.db in one step; without links, move it aside first.
		if err := os.Link(dst, aside); err != nil {
			if err := os.Rename(dst, aside); err != nil {
				return fmt.Errorf("keep the current ledger as %s: %w", aside, err)
			}
		}
		fmt.Fprintf(stdout, "the previous ledger is kept as %s\n", aside)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install the restored ledger: %w", err)
	}
	if d, err := os.Open(*dir); err == nil {
		_ = d.Sync()
		d.Close()
	}

	rep, err := checkLedgerFile(dst, key)
	if err != nil {
		return fmt.Errorf("check the restored ledger: %w", err)
	}
	printReport(stdout, rep)
	if !rep.OK() {
		return errors.New("the restored ledger does not check; the previous one is kept beside it")
	}
	fmt.Fprintf(stdout, "restored %s (%d bytes) to %s\n", what, n, dst)
	return nil
}

// restoreKey returns the signing key the restored ledger will be served
// with. Restore never generates one: a new key would make every checkpoint
// in the backup "signed by another key".
func restoreKey(loc ledgerLocation) (ed25519.PrivateKey, error) {
	cfg := loc.signingConfig()
	dir := loc.Dir
	if cfg.SigningKey == "" {
		if _, err := os.Stat(filepath.Join(dir, "signing.key")); err != nil {
			return nil, fmt.Errorf("no signing key: set ICA_SIGNING_KEY or put the original signing.key into %s, so the backup's checkpoints can be checked and later ones are signed by the same key", dir)
		}
	}
	return loadSigningKey(cfg)
}

// checkLedgerFile runs the full consistency check on a ledger no server has open.
func checkLedgerFile(path string, key ed25519.PrivateKey) (*store.CheckReport, error) {
	if err := store.CheckSize(path); err != nil {
		return nil, err
	}
	st, err := store.Open(path, store.Options{Key: key})
	if err != nil {
		return nil, err
	}
	rep, err := st.Check()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return rep, err
}

func printReport(w io.Writer, rep *store.CheckReport) { printCheck(w, rep) }

// copyToTemp copies r into a new file in dir (mode 0600), synced to disk,
// and returns its path.
func copyToTemp(r io.Reader, dir, pattern string) (string, int64, error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", 0, err
	}
	fail := func(err error) (string, int64, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", 0, err
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	n, err := io.Copy(bw, r)
	if err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", 0, err
	}
	return tmp.Name(), n, nil
}

// restoreDatabase restores a verified backup file into the ledger database:
// into an empty one, or with --force into one whose current ledger is first
// kept as a backup file beside (in the data directory) and then erased.
// Stop every replica first: restoring under a running replica would mix two
// ledgers.
func restoreDatabase(ctx context.Context, loc ledgerLocation, file, blobName, container string, force bool, getenv func(string) string, stdout io.Writer) error {
	if err := os.MkdirAll(loc.Dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	var src io.ReadCloser
	what := file
	if blobName != "" {
		a, err := backupArchive(getenv, container)
		if err != nil {
			return err
		}
		if src, err = a.Download(ctx, blobName); err != nil {
			return err
		}
		what = "blob " + container + "/" + blobName
	} else {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		src = f
	}
	tmp, n, err := copyToTemp(src, loc.Dir, ".ica-restore-*")
	src.Close()
	if err != nil {
		return fmt.Errorf("copy %s: %w", what, err)
	}
	defer os.Remove(tmp)
	if err := store.CheckSize(tmp); err != nil {
		return fmt.Errorf("%s does not verify, nothing was changed: it is truncated", what)
	}
	if err := store.VerifyBackup(tmp); err != nil {
		return fmt.Errorf("%s does not verify, nothing was changed: %w", what, err)
	}
	loc.Migrate = true // the ledger is replaced: its schema may be brought up to date
	db, key, err := loc.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if rep, err := checkLedgerFile(tmp, key); err != nil {
		return fmt.Errorf("%s: %w; nothing was changed", what, err)
	} else if !rep.OK() {
		printReport(stdout, rep)
		return fmt.Errorf("%s is not consistent (see above), nothing was changed", what)
	}
	if db.LedgerEntries() > 0 {
		if !force {
			return fmt.Errorf("the database %s holds a ledger (%d entries): pass --force to replace it (it is kept as a backup file first)", db.Describe(), db.LedgerEntries())
		}
		aside := filepath.Join(loc.Dir, "ica-before-restore-"+time.Now().UTC().Format("20060102T150405Z")+".db")
		f, err := os.OpenFile(aside, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("keep the current ledger: %w", err)
		}
		if _, err := db.WriteBackup(f); err != nil {
			f.Close()
			return fmt.Errorf("keep the current ledger as %s: %w", aside, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := store.VerifyBackup(aside); err != nil {
			return fmt.Errorf("the copy of the current ledger (%s) does not verify, nothing was changed: %w", aside, err)
		}
		fmt.Fprintf(stdout, "the previous ledger is kept as %s\n", aside)
		if err := db.Erase(ctx); err != nil {
			return err
		}
	}
	b, err := store.Open(tmp, store.Options{Key: key})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := db.CopyFrom(ctx, b, nil); err != nil {
		return err
	}
	rep, err := db.Check()
	if err != nil {
		return fmt.Errorf("check the restored ledger: %w", err)
	}
	printReport(stdout, rep)
	if !rep.OK() {
		return errors.New("the restored ledger does not check")
	}
	fmt.Fprintf(stdout, "restored %s (%d bytes) into %s\n", what, n, db.Describe())
	return nil
}
