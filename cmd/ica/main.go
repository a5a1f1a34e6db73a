// Command ica is the ICA service and its tools: `ica serve` runs the
// service; the other subcommands operate on a ledger or talk to a server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/ica-governance/ica/pipelines"
)

// version and revision are set at build time: -ldflags "-X main.version=v1.2.3
// -X main.revision=<commit>". Builds with -buildvcs=false (these machines,
// the container image) carry no VCS data in their build info, so `make
// build` passes the revision here; otherwise the build info supplies both.
var (
	version  = ""
	revision = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `ica — Internal Control Architecture: deployment governance in Mattermost.

Usage:
  ica serve [--config FILE] [--accept-rollback REASON]
                                     run the service (defaults: ./data, 127.0.0.1:8080)
  ica config example                 print a complete, commented configuration
  ica config validate [--config FILE]
                                     check a configuration (file and ICA_… variables); list every problem
  ica check [--data-dir DIR]         prove the ledger against itself, its state and its witness
                                     (exit 0 consistent, 1 tampered or inconsistent, 3 witness unreadable)
  ica backup FILE [--data-dir DIR]   hot, consistent copy of the ledger (also while serving)
  ica backup [FILE] --url URL [--blob]
                                     download a backup over HTTP (admin token); --blob uploads it to Azure Blob
  ica restore FILE|--blob NAME [--data-dir DIR] [--force]
                                     replace the ledger with a verified backup (server stopped)
  ica health [--url URL]             exit 0 when the server's /healthz answers (container health check)
  ica approve ID [--reject --reason R]
                                     decide an approval as you, with your Entra ID token (ICA_USER_TOKEN)
  ica migrate                        apply the PostgreSQL schema migrations (ICA_DATABASE_URL) and exit
  ica copy-store --from SRC --to DST copy a ledger verbatim between a data directory or file and PostgreSQL
  ica export --out FILE [--force] [--from D] [--to D] [--format csv|json|pdf] [--pipeline P]
                                     signed audit export (works while serving)
  ica verify FILE [--public-key HEX] check an export offline; names the first bad record
  ica key [--data-dir DIR]           print the signing public key and its fingerprint (for auditors to pin)
  ica proof APPROVAL_ID | --seq N [--out FILE]
                                     inclusion proof of an approval's latest decision (or an entry)
  ica verify-proof FILE --public-key HEX
                                     check a proof bundle offline
  ica token hash [TOKEN]             print the SHA-256 of a token for the YAML config
  ica policy apply FILE|show|explain --run ID [--target T]
                                     record the deployment policy; print it; each rule's verdict for a run
  ica version                        print the version and the source revision

Pipeline client (in Azure Pipelines steps; ICA_URL and ICA_TOKEN or a managed identity):
  ica run start|event|finish         record the run (reads the predefined variables)
  ica approval request|wait|void     ask for approval; wait for the gate and use it; void it
  ica run deployed --target T        report a deployment (promotion evidence; releases the lock)

The tools that read a ledger (check, backup, export, restore, key) find it as
serve does: --data-dir, else ICA_DATA_DIR, else data_dir of --config (or
ICA_CONFIG), else ./data. Every setting can come from the environment
(ICA_…); see ica config example. 'ica COMMAND --help' describes one command.
`

// commandHelp is each subcommand's --help text.
var commandHelp = map[string]string{
	"serve": `Usage: ica serve [--config FILE] [--accept-rollback REASON]

Run the service. With no file and no environment it keeps its ledger in
./data and listens on 127.0.0.1:8080; every setting can also come from the
environment (ICA_…), which wins over the file.

Flags:
  --config FILE              YAML configuration file (default: ICA_CONFIG)
  --accept-rollback REASON   serve a ledger that is behind its newest witnessed
                             checkpoint (a restored backup); the reason is
                             recorded in the ledger
`,
	"config": `Usage: ica config example
       ica config validate [--config FILE]

example   print a complete, commented configuration; it starts as written
validate  check the configuration a server would start with (the file, then
          the ICA_… variables); exit 0 when it is valid, else exit 1 listing
          every problem, each naming its key and variable

Flags (validate):
  --config FILE   YAML configuration file (default: ICA_CONFIG)
`,
	"check": `Usage: ica check [--data-dir DIR] [--config FILE]

Recompute every hash of the chain and the Merkle log, check the
checkpoints' signatures and the witnessed copies (witness.container), and
derive the state (runs, approvals, incidents, costs, policies, budgets)
from the entries. Asks the running server through its admin socket, opens
the file when no server runs, or reads the database (ICA_DATABASE_URL)
while replicas serve. Exit 0 consistent, 1 a problem (named), 2 the ledger
could not be read, 3 the witness could not be read.

Flags:
  --data-dir DIR  ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE   configuration file whose data_dir and signing_key to use (default: ICA_CONFIG)
`,
	"backup": `Usage: ica backup FILE [--data-dir DIR] [--config FILE]
       ica backup [FILE] --url URL [--blob [--blob-name NAME] [--blob-container C]]

A hot, consistent copy of the ledger, kept only when its hash chain
verifies; FILE must not exist. Locally through the running server's admin
socket (or the file when no server runs); with --url over HTTP with an
admin token (ICA_ADMIN_TOKEN, or the first secret of ICA_ADMIN_TOKENS).

Flags:
  --data-dir DIR         ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE          configuration file whose data_dir to use (default: ICA_CONFIG)
  --url URL              download from this ICA server (GET /api/v1/admin/backup)
  --blob                 upload the verified backup to Azure Blob Storage
                         (ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL)
  --blob-name NAME       blob name (default ica-<UTC time>.db)
  --blob-container C     blob container (default: ICA_BACKUP_CONTAINER, else ica-backups)
`,
	"restore": `Usage: ica restore FILE [--data-dir DIR] [--force]
       ica restore --blob NAME [--blob-container C] [--data-dir DIR] [--force]

Replace the ledger with a verified backup while no server runs. Nothing is
changed unless the backup's chain, checkpoints and indexes verify; an
existing ledger is replaced only with --force, and kept beside the new one.
Needs the original signing key (ICA_SIGNING_KEY or signing.key).

Flags:
  --data-dir DIR         ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE          configuration file whose data_dir and signing_key to use (default: ICA_CONFIG)
  --force                replace an existing ledger (kept as ica.db.before-restore-<time>)
  --blob NAME            restore this blob of the backup container instead of a FILE
  --blob-container C     blob container of the backups (default: ICA_BACKUP_CONTAINER, else ica-backups)
`,
	"health": `Usage: ica health [--url URL] [--timeout D]

Exit 0 when the server's /healthz answers 200 (the container's health check).

Flags:
  --url URL      URL to probe (default: /healthz on ICA_ADDR, through loopback)
  --timeout D    give up after this long (default 3s)
`,
	"export": `Usage: ica export --out FILE [--force] [--from YYYY-MM-DD] [--to YYYY-MM-DD]
                  [--format csv|json|pdf] [--pipeline NAME] [--verify]

A signed audit export of a period (default: this month, UTC), through the
running server's admin socket or from the ledger file. FILE is not
overwritten unless --force is given.

Flags:
  --out FILE      output file (required)
  --force         replace FILE if it exists
  --from DATE     first day (default: the first day of this month, UTC)
  --to DATE       last day, inclusive (default: the last day of this month)
  --format F      csv, json (JSON Lines) or pdf (default csv)
  --pipeline P    only this pipeline's runs and approvals
  --verify        verify the written file (always done for an export streamed from a server)
  --data-dir DIR  ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE   configuration file whose data_dir and signing_key to use (default: ICA_CONFIG)
`,
	"verify": `Usage: ica verify FILE [--public-key HEX | --data-dir DIR]

Check an export offline: every record's hash, the chain links, the digest
and the signatures. Names the first edited, missing or reordered record
(exit 1). Pin the key your ICA operators publish (ica key prints it).

Flags:
  --public-key HEX  trust only this Ed25519 public key (hex)
  --data-dir DIR    trust the key of the ICA ledger in this directory (its signing.key)
`,
	"key": `Usage: ica key [--data-dir DIR] [--config FILE]

Print the Ed25519 public key that signs checkpoints and exports, in hex, and
its fingerprint. Auditors pin it: ica verify FILE --public-key HEX. The key
is ICA_SIGNING_KEY (or signing_key of --config), else DATA_DIR/signing.key;
this command never creates one.

Flags:
  --data-dir DIR  ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE   configuration file whose data_dir and signing_key to use (default: ICA_CONFIG)
`,
	"proof": `Usage: ica proof APPROVAL_ID | --seq N [--out FILE] [--data-dir DIR] [--config FILE]

Write the inclusion proof of an approval's latest decision (or of ledger
entry N) against a signed checkpoint: the entry, its audit path, the
checkpoint and, once it is witnessed, where. Signs a checkpoint of the head
first when none covers the entry yet. Check it offline with
ica verify-proof.

Flags:
  --seq N         the ledger entry to prove (instead of an approval id)
  --out FILE      where to write the bundle (default proof-<approval or seq>.json)
  --data-dir DIR  ledger directory (default: ICA_DATA_DIR, else data_dir of --config, else ./data)
  --config FILE   configuration file whose data_dir and signing_key to use (default: ICA_CONFIG)
`,
	"verify-proof": `Usage: ica verify-proof FILE --public-key HEX

Check a proof bundle offline: the entry's hash, its audit path to the
checkpoint's root, and the checkpoint's signature with the key you trust
(the bundle's own key proves nothing). Exit 0 proven, 1 not.

Flags:
  --public-key HEX  the ledger's Ed25519 public key (hex), from a source you trust
`,
	"token": `Usage: ica token hash [TOKEN]

Print the SHA-256 of a token, the form the YAML configuration keeps
(sha256: …) instead of the secret. Reads the token from standard input
when it is not given, so it stays out of the shell history:
  printf %s "$SECRET" | ica token hash
`,
	"version": `Usage: ica version   (or ica --version)

Print the version, the source revision and the Go version of this binary.
`,
}

// wantsHelp reports whether args ask for help anywhere: every subcommand
// answers -h and --help with its usage, before it reads anything else (so
// "ica token hash --help" is help, not the hash of "--help").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

// errUsage marks an error in how a command was called (exit 2).
var errUsage = errors.New("usage")

// usageErrorf returns an error whose message is shown with a pointer to
// the command's --help, and that exits 2.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[1], args[2:]
	if h, ok := commandHelp[cmd]; ok && wantsHelp(rest) {
		fmt.Fprint(stdout, h)
		return 0
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, getenv, stdout, stderr)
	case "config":
		return cmdConfig(rest, getenv, stdout, stderr)
	case "check":
		return cmdCheck(ctx, rest, getenv, stdout, stderr)
	case "export":
		err = cmdExport(ctx, rest, getenv, stdout, stderr)
	case "verify":
		return cmdVerify(rest, getenv, stdout, stderr)
	case "proof":
		return cmdProof(ctx, rest, getenv, stdout, stderr)
	case "verify-proof":
		return cmdVerifyProof(rest, stdout, stderr)
	case "run", "approval":
		// The pipeline client: what Azure Pipelines steps run.
		return pipelines.Main(ctx, args[1:], getenv, stdout, stderr)
	case "backup":
		err = cmdBackupAny(ctx, rest, getenv, stdout, stderr)
	case "restore":
		err = cmdRestore(ctx, rest, getenv, stdout, stderr)
	case "approve":
		err = cmdApprove(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, rest, getenv, stdout, stderr)
	case "copy-store":
		err = cmdCopyStore(ctx, rest, getenv, stdout, stderr)
	case "health":
		return cmdHealth(ctx, rest, getenv, stdout, stderr)
	case "key":
		err = cmdKey(rest, getenv, stdout, stderr)
	case "token":
		err = cmdToken(rest, os.Stdin, stdout)
	case "policy":
		err = cmdPolicy(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		if len(rest) > 0 {
			err = usageErrorf("ica version takes no arguments")
			break
		}
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help", "-help":
		if len(rest) == 1 {
			if h, ok := commandHelp[rest[0]]; ok {
				fmt.Fprint(stdout, h)
				return 0
			}
			if rest[0] == "run" || rest[0] == "approval" {
				return pipelines.Main(ctx, []string{rest[0], "--help"}, getenv, stdout, stderr)
			}
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ica: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ica %s: %s\nRun 'ica %s --help' for usage.\n", cmd, strings.TrimPrefix(err.Error(), errUsage.Error()+": "), cmd)
		return 2
	}
	fmt.Fprintln(stderr, "ica:", err)
	return 1
}

// versionString is what `ica version` prints: "ica v1.2.3 (revision
// 0123abcd…, modified; go1.26.0)". The -X values win; the build info fills
// in what they leave out.
func versionString() string {
	v, rev, modified := version, revision, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				modified = modified || s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if strings.HasSuffix(rev, "-modified") {
		rev, modified = strings.TrimSuffix(rev, "-modified"), true
	}
	if rev == "" {
		return "ica " + v
	}
	s := "ica " + v + " (revision " + rev
	if modified {
		s += ", modified"
	}
	return s + "; " + runtime.Version() + ")"
}
