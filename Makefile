# ICA developer targets. `make bench` runs the load scenarios of
# docs/design.md "Performance targets" against the real server.

GO ?= go
BENCH_FLAGS ?=
# Per-scenario flags for shorter runs, e.g. CLICKS_FLAGS='-approvals 500'
# EXPORT_FLAGS='-runs 100000'; empty flags run each target's full size.
CLICKS_FLAGS ?=
ALERTS_FLAGS ?=
EXPORT_FLAGS ?=
COLDSTART_FLAGS ?=
DASHBOARD_FLAGS ?=
FLOOD_FLAGS ?=
# The PostgreSQL scenarios run on the server of ICA_BENCH_POSTGRES (a
# superuser DSN; each run creates and drops its own databases), e.g.
# PG_INGEST_FLAGS='-duration 5s -reps 1' FAILOVER_FLAGS='-after 5s'.
PG_INGEST_FLAGS ?=
FAILOVER_FLAGS ?=
LEDGER_FLAGS ?=

# Packages whose tests start their fake clocks at ICA_TEST_NOW when it is set
# (internal/testclock); `make test-dates` runs them at the awkward dates.
DATE_PKGS ?= . ./webhooks ./bot ./scheduler ./outbox ./pipelines ./dashboard
TEST_DATES ?= 2027-03-01T00:00:00Z 2027-02-28T12:00:00Z 2026-12-31T23:59:30Z 2027-01-31T23:59:59Z

# Packages whose tests open stores through store/storetest: `make test` runs
# them a second time on PostgreSQL (ICA_TEST_POSTGRES, a superuser DSN).
STORE_PKGS ?= ./store/... ./witness/... ./bot/... ./pipelines/... ./scheduler/... ./outbox/... ./webhooks/... ./dashboard/...

# The source revision `ica version` prints. Builds here use -buildvcs=false,
# which leaves no VCS data in the binary, so the revision is passed in.
REVISION ?= $(shell r=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || r=$$r-modified; echo $$r; })
TEST_FLAGS ?= -race -count=1 -timeout 25m

.PHONY: run test test-pg test-dates bench lint build tidy-check mattermost mattermost-stop postgres postgres-stop

run:
	$(GO) run ./cmd/ica serve

# go test through internal/cmd/testsummary: package lines, the output of
# every failed test, then the list of skipped tests and why; go test's exit
# status is kept.
test:
	$(GO) run ./internal/cmd/testsummary $(TEST_FLAGS) ./...
	@$(MAKE) --no-print-directory test-pg

# The store-using packages again, every ledger on PostgreSQL.
test-pg:
	@if [ -z "$$ICA_TEST_POSTGRES" ]; then \
	  echo "*** SKIPPED: the PostgreSQL run of the store tests: ICA_TEST_POSTGRES is not set (.ci/run starts a server; see the README)"; \
	  if [ "$$CI" = "true" ]; then exit 1; fi; \
	else \
	  echo "--- the store-using packages on PostgreSQL"; \
	  ICA_TEST_STORE=postgres $(GO) run ./internal/cmd/testsummary $(TEST_FLAGS) $(STORE_PKGS); \
	fi

build:
	$(GO) build -ldflags "-X main.revision=$(REVISION)" -o bin/ica ./cmd/ica
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
	$(GO) run ./bench/cmd/icabench flood $(FLOOD_FLAGS) || rc=1; \
	if [ -z "$$ICA_BENCH_POSTGRES" ]; then \
	  echo "*** SKIPPED: ingest on PostgreSQL (2 replicas) and failover: ICA_BENCH_POSTGRES is not set (a superuser DSN, e.g. host=127.0.0.1 port=5432 user=postgres sslmode=disable)"; \
	else \
	  $(GO) run ./bench/cmd/icabench ingest -database-url "$$ICA_BENCH_POSTGRES" -replicas 2 $(PG_INGEST_FLAGS) || rc=1; \
	  $(GO) run ./bench/cmd/icabench failover -database-url "$$ICA_BENCH_POSTGRES" $(FAILOVER_FLAGS) || rc=1; \
	fi; \
	$(GO) run ./bench/cmd/icabench ledger $(LEDGER_FLAGS) || rc=1; \
	exit $$rc

# A real Mattermost 6.7.2 on loopback for the tests that need one (built once
# into ~/.cache/ica, with a throwaway PostgreSQL unless ICA_TEST_POSTGRES is
# set). It prints the ICA_TEST_* exports; load them into your shell with
#   eval "$(scripts/mattermost.sh env)"
mattermost:
	@scripts/mattermost.sh start

mattermost-stop:
	@scripts/mattermost.sh stop

# A throwaway PostgreSQL cluster for the store tests; prints ICA_TEST_POSTGRES
# (eval "$(scripts/postgres-test.sh env)").
postgres:
	@scripts/postgres-test.sh start

postgres-stop:
	@scripts/postgres-test.sh stop

# The date-sensitive packages at the 1st, 28 February, the 31st and just
# before midnight UTC: a test that reads the real date fails here.
test-dates:
	@for d in $(TEST_DATES); do echo "--- ICA_TEST_NOW=$$d"; ICA_TEST_NOW=$$d $(GO) test -count=1 -timeout 10m $(DATE_PKGS) || exit 1; done

lint: tidy-check
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
