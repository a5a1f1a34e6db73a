# ICA developer targets. `make bench` runs the load scenarios of DESIGN.md
# "Targets" against the real server; later scenarios are appended to it.

GO ?= go
BENCH_FLAGS ?=
# Per-scenario flags for shorter runs, e.g. CLICKS_FLAGS='-approvals 500'
# EXPORT_FLAGS='-runs 100000'; empty flags run each target's full size.
CLICKS_FLAGS ?=
ALERTS_FLAGS ?=
EXPORT_FLAGS ?=
COLDSTART_FLAGS ?=
DASHBOARD_FLAGS ?=

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
	$(GO) run ./bench/cmd/icabench coldstart $(COLDSTART_FLAGS) || rc=1; \
	$(GO) run ./bench/cmd/icabench dashboard $(DASHBOARD_FLAGS) || rc=1; \
	exit $$rc

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
