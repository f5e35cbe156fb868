# The project's interface: CI (.ci/run) calls these same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The PostgreSQL server the tests use: #[sqlx::test] creates a fresh database per test in it.
# When none answers there, `make test` starts a throwaway cluster for the run (tests/e2e/with_postgres.py).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export TEST_DATABASE_URL
# The database `make db-prepare` migrates and reads the query metadata from.
PREPARE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/visitors_prepare

CARGO ?= cargo
NEXTEST_VERSION ?= 0.9.143
SQLX_CLI_VERSION ?= 0.8.6
MUTANTS_VERSION ?= 27.1.0

E2E := tests/e2e
E2E_PY := $(E2E)/.venv/bin/python

.PHONY: help run test test-rust lint layering openapi db-prepare db-check tools-nextest tools-sqlx \
	build-bin e2e e2e-zenpy e2e-schemathesis e2e-browser e2e-seed-curl e2e-db-faults e2e-soak \
	e2e-prometheus e2e-cluster e2e-pgbouncer e2e-transfer e2e-webhooks e2e-python e2e-node e2e-chromium debian-prometheus \
	debian-haproxy debian-pgbouncer debian-redis \
	check-postgres bench mutants mutants-changed tools-mutants publish-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## start the service on the in-memory store (set DATABASE_URL for Postgres)
	$(CARGO) run -p visitor-http --bin visitor-http

test: ## run every test: the Rust suites, then the end-to-end checks (on a throwaway PostgreSQL when none answers)
	@python3 $(E2E)/with_postgres.py $(MAKE) --no-print-directory test-rust e2e

check-postgres:
	@pg_isready -q -d "$(TEST_DATABASE_URL)" || { echo "no PostgreSQL answers at $(TEST_DATABASE_URL) (start it, set TEST_DATABASE_URL, or run make test, which starts a throwaway one)"; exit 1; }

build-bin:
	$(CARGO) build -p visitor-http --bin visitor-http

test-rust: tools-nextest check-postgres debian-redis ## the Rust unit, conformance and black-box tests
	DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) nextest run --workspace --no-fail-fast
	DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) test --workspace --doc

lint: layering ## fmt --check, clippy with warnings denied, the layering and import-cycle checks
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 tools/module_cycles.py

layering: ## the domain crate must not depend on sqlx, actix-web or tokio
	@for dep in sqlx actix-web tokio; do \
	  if $(CARGO) tree -p visitor-domain -e normal -i $$dep >/dev/null 2>&1; then \
	    echo "layering: visitor-domain depends on $$dep"; exit 1; fi; \
	done; echo "layering: visitor-domain is free of sqlx, actix-web and tokio"
	@if $(CARGO) tree -p visitor-store --no-default-features -e normal 2>/dev/null | grep -q ' sqlx v'; then \
	  echo "layering: visitor-store without its postgres feature still depends on sqlx"; exit 1; fi
	$(CARGO) check -q -p visitor-store --no-default-features --all-targets
	@echo "layering: visitor-store builds without sqlx (--no-default-features)"

publish-check: ## visitor-domain packages and builds as crates.io would take it
	$(CARGO) publish --dry-run -p visitor-domain

# End-to-end checks by outside tools, each runnable alone (see README). They start the built
# binary on free loopback ports; the Python venv and node_modules live under tests/e2e (ignored).
e2e: e2e-zenpy e2e-schemathesis e2e-seed-curl e2e-browser e2e-db-faults e2e-soak e2e-prometheus e2e-cluster e2e-pgbouncer e2e-transfer e2e-webhooks ## all end-to-end checks

e2e-zenpy: e2e-python build-bin check-postgres ## zenpy (a real Zendesk client) on both stores
	cd $(E2E) && .venv/bin/python zenpy_session.py

e2e-schemathesis: e2e-python build-bin check-postgres ## schemathesis fuzzing of openapi.yaml on both stores
	cd $(E2E) && .venv/bin/python schemathesis_run.py

e2e-seed-curl: e2e-python build-bin check-postgres ## the seed document's own curl commands
	cd $(E2E) && .venv/bin/python seed_curl.py

e2e-browser: e2e-python e2e-node e2e-chromium build-bin ## Swagger UI in headless chromium
	cd $(E2E) && .venv/bin/python browser.py

e2e-db-faults: e2e-python build-bin ## database faults on a throwaway PostgreSQL cluster
	cd $(E2E) && .venv/bin/python db_faults.py

e2e-soak: e2e-python build-bin check-postgres ## 60 s of mixed traffic on PostgreSQL
	cd $(E2E) && .venv/bin/python soak.py

e2e-prometheus: e2e-python debian-prometheus build-bin check-postgres ## /metrics scraped by a real Prometheus
	cd $(E2E) && .venv/bin/python prometheus_scrape.py

e2e-cluster: e2e-python debian-haproxy debian-redis build-bin check-postgres ## 3 instances behind haproxy, rolling restarts under traffic
	cd $(E2E) && .venv/bin/python cluster.py

e2e-pgbouncer: e2e-python debian-pgbouncer build-bin check-postgres ## the service through PgBouncer: session mode works, transaction mode (1.18) does not
	cd $(E2E) && .venv/bin/python pgbouncer_modes.py

e2e-transfer: e2e-python build-bin check-postgres ## export/import round trip of 1M visitors (killed and resumed), the create_or_update race on two instances, a 10,000-line bulk import
	cd $(E2E) && .venv/bin/python transfer.py

e2e-webhooks: e2e-python build-bin check-postgres ## change feed and webhooks: two instances, one killed, a standardwebhooks receiver
	cd $(E2E) && .venv/bin/python webhooks.py

debian-pgbouncer:
	@test -x /usr/sbin/pgbouncer || { \
	  echo "installing Debian's pgbouncer"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }

debian-prometheus:
	@command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }

debian-redis:
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

debian-haproxy:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { \
	  echo "installing Debian's haproxy"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }

e2e-python: $(E2E)/.venv/.installed
$(E2E)/.venv/.installed: $(E2E)/requirements.txt
	python3 -m venv $(E2E)/.venv
	$(E2E)/.venv/bin/pip install --quiet -r $(E2E)/requirements.txt
	touch $@

e2e-node: $(E2E)/node_modules/.installed
$(E2E)/node_modules/.installed: $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && npm ci --no-audit --no-fund
	touch $@

e2e-chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

bench: check-postgres debian-redis ## the benchmark against its ceilings (release build; installs wrk if missing)
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(CARGO) build --release -p visitor-http -p visitor-bench
	python3 bench/bench.py

# Mutation testing: every viable mutant of the domain and store crates must be caught by that
# crate's own tests (the store's with PostgreSQL); `.cargo/mutants.toml` lists what is not
# mutated and why. cargo-mutants exits non-zero and prints MISSED lines naming any survivor.
mutants: tools-mutants tools-nextest check-postgres ## mutation testing of visitor-domain and visitor-store (cargo-mutants)
	mkdir -p target/mutants
	$(CARGO) mutants --package visitor-domain --test-tool nextest --output target/mutants/domain
	DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) mutants --package visitor-store --test-tool nextest --jobs 2 \
	  --output target/mutants/store

# CI's share: the mutants of the lines changed since the last commit whose mutants are all known
# caught (the commit in .cargo/mutants-base, advanced after a passing `make mutants`, or after a
# `make mutants-changed` over everything since the previous base whose misses tests then catch).
# Nothing changed in the two crates: nothing to run. The base missing from the history: the full
# run.
MUTANTS_BASE := $(shell cat .cargo/mutants-base 2>/dev/null)
mutants-changed: check-postgres ## mutation testing of the domain and store lines changed since .cargo/mutants-base
	@mkdir -p target/mutants
	@if ! git cat-file -e "$(MUTANTS_BASE)^{commit}" 2>/dev/null; then \
	  echo "mutants: base $(MUTANTS_BASE) is not in this history; running the full set"; \
	  $(MAKE) --no-print-directory mutants; \
	elif git diff --quiet "$(MUTANTS_BASE)" -- crates/visitor-domain/src crates/visitor-store/src crates/visitor-store/migrations; then \
	  echo "mutants: nothing in visitor-domain or visitor-store changed since $(MUTANTS_BASE)"; \
	else \
	  git diff "$(MUTANTS_BASE)" -- crates/visitor-domain/src crates/visitor-store/src > target/mutants/changed.diff; \
	  $(MAKE) --no-print-directory tools-mutants tools-nextest; \
	  $(CARGO) mutants --in-diff target/mutants/changed.diff --package visitor-domain --test-tool nextest \
	    --output target/mutants/domain-changed && \
	  DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) mutants --in-diff target/mutants/changed.diff \
	    --package visitor-store --test-tool nextest --jobs 2 --output target/mutants/store-changed; \
	fi

tools-mutants:
	@$(CARGO) mutants --version 2>/dev/null | grep -q $(MUTANTS_VERSION) || $(CARGO) install cargo-mutants --version $(MUTANTS_VERSION) --locked

openapi: ## rewrite openapi.yaml from the code (a test fails when they differ)
	$(CARGO) run -q -p visitor-http --bin visitor-http -- --print-openapi > openapi.yaml.tmp
	mv openapi.yaml.tmp openapi.yaml

db-prepare: tools-sqlx ## refresh the committed .sqlx/ query data from a migrated database
	DATABASE_URL=$(PREPARE_DATABASE_URL) sqlx database reset -y --source crates/visitor-store/migrations
	DATABASE_URL=$(PREPARE_DATABASE_URL) $(CARGO) sqlx prepare --workspace

db-check: tools-sqlx ## fail when .sqlx/ is stale
	# reset, not setup: the scratch database is rebuilt from the committed migrations, so one
	# applied there by an uncommitted branch cannot fail the check
	DATABASE_URL=$(PREPARE_DATABASE_URL) sqlx database reset -y --source crates/visitor-store/migrations
	DATABASE_URL=$(PREPARE_DATABASE_URL) $(CARGO) sqlx prepare --workspace --check

tools-nextest:
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install cargo-nextest --version $(NEXTEST_VERSION) --locked

tools-sqlx:
	@sqlx --version 2>/dev/null | grep -q $(SQLX_CLI_VERSION) || $(CARGO) install sqlx-cli --version $(SQLX_CLI_VERSION) --locked --no-default-features --features postgres
