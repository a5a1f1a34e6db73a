package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// adminHandler serves operations on the live ledger: over a unix socket in
// the data directory (its file mode is the authentication) and, for admin
// tokens, over HTTP.
type adminHandler struct {
	store    *store.Store
	exporter ledgerExporter
	log      *slog.Logger
	witness  *archive.Archive // the checkpoint witness; nil when none is configured
}

// backup handles "GET /backup" and "GET /api/v1/admin/backup".
func (a *adminHandler) backup(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="ica.db"`)
	n, err := a.store.WriteBackup(w)
	if err != nil {
		// Headers are gone; the client sees a short body and fails its size check.
		a.log.Error("backup failed", "err", err, "bytes", n)
		return nil
	}
	a.log.Info("backup written", "bytes", n)
	return nil
}

// check handles "GET /check": the whole ledger, against its witness.
func (a *adminHandler) check(w http.ResponseWriter, r *http.Request) error {
	opt, _ := witnessCheckOptions(r.Context(), a.witness, a.store, 0)
	rep, err := a.store.CheckWith(opt)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(rep)
}

func (a *adminHandler) listen(path string) (*http.Server, error) {
	// We hold the ledger's lock, so a socket file left here is stale.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	wrap := func(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				webhooks.WriteError(w, r, a.log, err)
			}
		}
	}
	mux.HandleFunc("GET /backup", wrap(a.backup))
	mux.HandleFunc("GET /check", wrap(a.check))
	mux.HandleFunc("GET /export", wrap(a.export))
	mux.HandleFunc("POST /policy", wrap(a.policyApply))
	mux.HandleFunc("GET /policy", wrap(a.policyShow))
	mux.HandleFunc("GET /policy/explain", wrap(a.policyExplain))
	mux.HandleFunc("GET /proof", wrap(a.proof)) // proof.go
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

// socketClient returns an HTTP client for a running server's admin socket,
// or nil when no server answers there.
func socketClient(path string) *http.Client {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	conn.Close()
	return c
}

// backupLocal writes a consistent copy of the ledger at loc to dst: through
// the running server's admin socket when there is one, else from the file.
func backupLocal(ctx context.Context, loc ledgerLocation, dst string, stdout io.Writer) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("%s exists; choose a new file name", dst)
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
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ica-backup-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", dst, pathCause(err))
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var n int64
	if c != nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ica/backup", nil)
		resp, err := c.Do(req)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("backup from the running server: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			tmp.Close()
			return fmt.Errorf("backup from the running server: %s", resp.Status)
		}
		if n, err = io.Copy(bw, resp.Body); err != nil {
			tmp.Close()
			return fmt.Errorf("backup from the running server: %w", err)
		}
	} else if loc.shared() {
		// A database backs up into a bbolt ledger file: one snapshot,
		// restorable into either engine.
		st, _, err := loc.openStore(ctx)
		if err != nil {
			tmp.Close()
			return err
		}
		n, err = st.WriteBackup(bw)
		st.Close()
		if err != nil {
			tmp.Close()
			return err
		}
	} else {
		if n, err = store.BackupFile(loc.ledger(), bw); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	if err := store.VerifyBackup(tmp.Name()); err != nil {
		return fmt.Errorf("the backup does not verify, so %s was not written: %s", dst, strings.ReplaceAll(err.Error(), tmp.Name(), dst))
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("cannot write %s: %w", dst, pathCause(err))
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes)\n", dst, n)
	return nil
}

// cmdCheck proves the ledger against itself, its state and its witness. It
// exits 0 when consistent, 1 when tampered or inconsistent (naming what
// differs), 3 when the witness could not be read, 2 when it could not run.
func cmdCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ica check: unexpected argument %q\nRun 'ica check --help' for usage.\n", fs.Arg(0))
		return 2
	}
	loc, err := locate()
	if err != nil {
		fmt.Fprintln(stderr, "ica check:", err)
		return 2
	}
	var rep store.CheckReport
	if c := socketClient(socketPath(loc.Dir)); c != nil && !loc.shared() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ica/check", nil)
		resp, err := c.Do(req)
		if err != nil {
			fmt.Fprintln(stderr, "ica check: running server:", err)
			return 2
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			fmt.Fprintln(stderr, "ica check: running server:", err)
			return 2
		}
	} else {
		// A database is checked directly, also while replicas serve (the
		// check reads snapshots); a file only when no server holds it.
		cfg, err := loadConfig(loc.ConfigPath, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "ica check:", err)
			return 2
		}
		blobs, err := witnessBlobs(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "ica check:", err)
			return 2
		}
		st, _, err := loc.openStoreWith(ctx, store.Options{PublicHost: cfg.PublicURL})
		if err != nil {
			fmt.Fprintln(stderr, "ica check:", err)
			return 2
		}
		opt, _ := witnessCheckOptions(ctx, blobs, st, 0)
		r, err := st.CheckWith(opt)
		st.Close()
		if err != nil {
			fmt.Fprintln(stderr, "ica check:", err)
			return 2
		}
		rep = *r
	}
	return printCheck(stdout, &rep)
}

// cmdToken prints the SHA-256 of a token (argument or standard input).
func cmdToken(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 3 && args[0] == "hash" && args[1] == "--" {
		args = []string{"hash", args[2]} // ica token hash -- -token-that-starts-with-a-dash
	}
	if len(args) == 0 || args[0] != "hash" || len(args) > 2 {
		return usageErrorf("ica token hash [TOKEN]   (reads the token from standard input when not given)")
	}
	tok := ""
	if len(args) == 2 {
		tok = args[1]
	} else {
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return err
		}
		tok = strings.TrimRight(string(b), "\r\n")
	}
	if tok == "" {
		return usageErrorf("the token is empty")
	}
	fmt.Fprintln(stdout, webhooks.HashToken(tok))
	return nil
}

// pathCause strips the path from a file error: messages name the file the
// user gave, not a temporary file beside it.
func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// reorder moves flags before positional arguments, so `ica backup FILE
// --data-dir D` works as well as the flag-first form.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
