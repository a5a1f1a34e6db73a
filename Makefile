# ICA developer targets. `make bench` runs the load scenarios of DESIGN.md
# "Targets" against the real server; later scenarios are appended to it.

GO ?= go
BENCH_FLAGS ?=
# Per-scenario flags (e.g. CLICKS_FLAGS='-approvals 500' for a short run).
# clicks runs 1,000 approvals (and a 1-clicker baseline of 1,000) here: every
# card render decodes every pending approval (the budget line), so a click
# costs O(pending) and 10,000 would take hours; `icabench clicks` alone
# defaults to the target's 10,000.
CLICKS_FLAGS ?= -approvals 1000 -baseline-approvals 1000
ALERTS_FLAGS ?=
EXPORT_FLAGS ?=

.PHONY: run test bench lint build

run:
	$(GO) run ./cmd/ica serve

test:
	$(GO) test -race -count=1 ./...

build:
	$(GO) build -o bin/ica ./cmd/ica
	$(GO) build -o bin/icabench ./bench/cmd/icabench

# The scenario builds its own ica binary from this tree into a temporary
# directory (beside the temporary ledger), so it measures the code as it is.
# Scenarios run one after another; a MISS does not stop the next one, and
# make fails at the end if any scenario missed or failed.
bench:
	@rc=0; \
	$(GO) run ./bench/cmd/icabench ingest $(BENCH_FLAGS) || rc=1; \
	$(GO) run ./bench/cmd/icabench clicks $(CLICKS_FLAGS) || rc=1; \
	$(GO) run ./bench/cmd/icabench alerts $(ALERTS_FLAGS) || rc=1; \
	$(GO) run ./bench/cmd/icabench export $(EXPORT_FLAGS) || rc=1; \
	exit $$rc

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
