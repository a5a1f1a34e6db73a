// Command icabench runs ICA's load scenarios against the real server and
// prints each figure beside its target (docs/design.md "Performance targets").
//
//	icabench <scenario> [flags]
//
// Scenarios are a table, so more can be added beside ingest.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// scenario is one subcommand. run returns the process exit code: 0 when
// every target was met, 1 when one was missed, 2 when the scenario failed.
type scenario struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var scenarios = map[string]scenario{
	"ingest": {"durable pipeline events over HTTP vs raw bbolt Batch (64 clients); -database-url -replicas 2: on PostgreSQL vs pgbench", runIngest},
	"clicks": {"10,000 pending approvals, 4 racing clickers each, vs 1 clicker (real server, fake Mattermost)", runClicks},
	"alerts": {"Azure Monitor alert -> PagerDuty event latency at 50/s and a 5,000 burst (fake PagerDuty)", runAlerts},
	"export": {"1,000,000 runs as CSV and JSON, ica verify, 10,000 runs as PDF vs a bbolt scan", runExport},
	"ledger": {"ica check (replay + Merkle + witness) of a 1,000,000-entry ledger vs a chain-only check; proof generation and verification", runLedger},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: icabench <scenario> [flags]   (icabench <scenario> -h for flags)")
	fmt.Fprintln(w, "\nscenarios:")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, scenarios[n].summary)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	sc, ok := scenarios[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "icabench: unknown scenario %q\n", args[0])
		usage(stderr)
		return 2
	}
	return sc.run(ctx, args[1:], stdout, stderr)
}
