package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/store"
)

// defaultBackupContainer keeps backups apart from the exports archive.
const defaultBackupContainer = "ica-backups"

func backupContainer(getenv func(string) string) string {
	if c := getenv("ICA_BACKUP_CONTAINER"); c != "" {
		return c
	}
	return defaultBackupContainer
}

// backupArchive connects to the backup container with the export archive's
// credentials (a connection string, or the account URL with a managed identity).
func backupArchive(getenv func(string) string, container string) (*archive.Archive, error) {
	cs, account := getenv("ICA_BLOB_CONNECTION_STRING"), getenv("ICA_BLOB_ACCOUNT_URL")
	if cs == "" && account == "" {
		return nil, errors.New("blob storage is not configured: set ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL")
	}
	if cs != "" {
		account = ""
	}
	return archive.New(archive.Config{ConnectionString: cs, AccountURL: account, Container: container}, nil)
}

// cmdBackupAny is `ica backup`: the local forms (admin socket or file) are
// cmdBackup's; --url downloads from a server over HTTP with an admin token,
// and --blob uploads the verified copy to Azure Blob Storage.
func cmdBackupAny(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	url := fs.String("url", "", "download from this ICA server (GET /api/v1/admin/backup) with ICA_ADMIN_TOKEN (or the first secret of ICA_ADMIN_TOKENS)")
	toBlob := fs.Bool("blob", false, "upload the verified backup to Azure Blob Storage (ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL)")
	blobName := fs.String("blob-name", "", "blob name (default ica-<UTC time>.db)")
	container := fs.String("blob-container", backupContainer(getenv), "blob container (ICA_BACKUP_CONTAINER)")
	if err := fs.Parse(reorderWithBools(args, "blob")); err != nil {
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 1 || (fs.NArg() == 0 && !*toBlob) {
		return usageErrorf("ica backup FILE [--data-dir DIR | --url URL] [--blob [--blob-name NAME] [--blob-container C]]   (FILE may be left out with --blob)")
	}
	loc, err := locate()
	if err != nil {
		return err
	}
	if *url == "" && !*toBlob {
		return backupLocal(ctx, loc, fs.Arg(0), stdout)
	}
	dst := fs.Arg(0)
	if dst == "" {
		tmpDir, err := os.MkdirTemp("", "ica-backup-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmpDir)
		dst = filepath.Join(tmpDir, "ica.db")
	}
	if *url != "" {
		if err := downloadBackup(ctx, strings.TrimRight(*url, "/")+"/api/v1/admin/backup", adminToken(getenv), dst, stdout); err != nil {
			return err
		}
	} else if err := backupLocal(ctx, loc, dst, stdout); err != nil {
		return err
	}
	if !*toBlob {
		return nil
	}
	a, err := backupArchive(getenv, *container)
	if err != nil {
		return err
	}
	name := *blobName
	if name == "" {
		name = "ica-" + time.Now().UTC().Format("20060102T150405Z") + ".db"
	}
	f, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	u, err := a.Upload(ctx, name, f, "application/octet-stream", map[string]string{"ica_kind": "ledger_backup"})
	if err != nil {
		return fmt.Errorf("upload the backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup uploaded to %s\n", u)
	return nil
}

// adminToken is the bearer token for the admin API: ICA_ADMIN_TOKEN, or the
// secret of the first name=secret pair of ICA_ADMIN_TOKENS (so a backup job
// can share the server's secret).
func adminToken(getenv func(string) string) string {
	if t := getenv("ICA_ADMIN_TOKEN"); t != "" {
		return t
	}
	if toks, err := parseTokenList("ICA_ADMIN_TOKENS", getenv("ICA_ADMIN_TOKENS")); err == nil && len(toks) > 0 {
		return toks[0].Token
	}
	return ""
}

// downloadBackup fetches a hot backup over HTTP and keeps it at dst only
// when its whole chain verifies.
func downloadBackup(ctx context.Context, url, token, dst string, stdout io.Writer) error {
	if token == "" {
		return errors.New("no admin token: set ICA_ADMIN_TOKEN (or ICA_ADMIN_TOKENS)")
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("%s exists; choose a new file name", dst)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("backup from %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("backup from %s: %s %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	tmp, n, err := copyToTemp(resp.Body, filepath.Dir(dst), ".ica-backup-*")
	if err != nil {
		return fmt.Errorf("backup from %s: %w", url, err)
	}
	defer os.Remove(tmp)
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("backup from %s: got %d of %d bytes", url, n, resp.ContentLength)
	}
	if err := store.CheckSize(tmp); err != nil {
		return fmt.Errorf("backup from %s: %s", url, strings.ReplaceAll(err.Error(), tmp, dst))
	}
	if err := store.VerifyBackup(tmp); err != nil {
		return fmt.Errorf("the backup does not verify, so it was not kept: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes)\n", dst, n)
	return nil
}

// reorderWithBools is reorder for flag sets with boolean flags: a boolean
// flag does not take the next argument as its value.
func reorderWithBools(args []string, bools ...string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		isBool := false
		for _, b := range bools {
			isBool = isBool || name == b
		}
		if !isBool && !strings.Contains(a, "=") && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, pos...)
}
