// Command ica is the ICA service and its tools: `ica serve` runs the
// service; the other subcommands operate on a ledger or talk to a server.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ica-governance/ica/pipelines"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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
  ica check [--data-dir DIR]         prove the ledger against itself, its state and its witness
                                     (exit 0 consistent, 1 tampered or inconsistent, 3 witness unreadable)
  ica backup FILE [--data-dir DIR]   hot, consistent copy of the ledger (also while serving)
  ica backup [FILE] --url URL [--blob]
                                     download a backup over HTTP (admin token); --blob uploads it to Azure Blob
  ica restore FILE|--blob NAME [--data-dir DIR] [--force]
                                     replace the ledger with a verified backup (server stopped)
  ica health [--url URL]             exit 0 when the server's /healthz answers (container health check)
  ica export --out FILE [--from D] [--to D] [--format csv|json|pdf] [--pipeline P]
                                     signed audit export (works while serving)
  ica verify FILE [--public-key HEX] check an export offline; names the first bad record
  ica proof APPROVAL_ID | --seq N [--out FILE]
                                     inclusion proof of an approval's latest decision (or an entry)
  ica verify-proof FILE --public-key HEX
                                     check a proof bundle offline
  ica token hash [TOKEN]             print the SHA-256 of a token for the YAML config
  ica version                        print the version

Pipeline client (in Azure Pipelines steps; ICA_URL and ICA_TOKEN or a managed identity):
  ica run start|event|finish         record the run (reads the predefined variables)
  ica approval request|wait          ask for approval, wait for the decision

Every setting can come from the environment (ICA_…); see ica config example.
`

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[1], args[2:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, getenv, stdout, stderr)
	case "config":
		if len(rest) == 1 && rest[0] == "example" {
			fmt.Fprint(stdout, exampleConfig)
			return 0
		}
		fmt.Fprintln(stderr, "usage: ica config example")
		return 2
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
	case "health":
		return cmdHealth(ctx, rest, getenv, stdout, stderr)
	case "token":
		err = cmdToken(rest, os.Stdin, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "ica", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ica: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ica:", err)
		return 1
	}
	return 0
}
