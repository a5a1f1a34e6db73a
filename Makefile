# ICA developer targets. `make bench` runs the load scenarios of DESIGN.md
# "Targets" against the real server; later scenarios are appended to it.

GO ?= go
BENCH_FLAGS ?=

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
bench:
	$(GO) run ./bench/cmd/icabench ingest $(BENCH_FLAGS)

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
