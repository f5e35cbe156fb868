# The project's interface: CI (.ci/run) calls these same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The PostgreSQL server the tests use: #[sqlx::test] creates a fresh database per test in it.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
# The database `make db-prepare` migrates and reads the query metadata from.
PREPARE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/visitors_prepare

CARGO ?= cargo
NEXTEST_VERSION ?= 0.9.143
SQLX_CLI_VERSION ?= 0.8.6

.PHONY: help run test test-rust lint layering openapi db-prepare db-check tools-nextest tools-sqlx

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## start the service on the in-memory store (set DATABASE_URL for Postgres)
	$(CARGO) run -p visitor-http --bin visitor-http

test: test-rust ## run every test (needs PostgreSQL on 127.0.0.1:5432)

test-rust: tools-nextest
	@pg_isready -q -h 127.0.0.1 -p 5432 || { echo "make test: no PostgreSQL answers on 127.0.0.1:5432 (start it, or set TEST_DATABASE_URL)"; exit 1; }
	$(CARGO) build -p visitor-http --bin visitor-http
	DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) nextest run --workspace --no-fail-fast
	DATABASE_URL=$(TEST_DATABASE_URL) $(CARGO) test --workspace --doc

lint: layering ## fmt --check, clippy with warnings denied, the layering check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

layering: ## the domain crate must not depend on sqlx, actix-web or tokio
	@for dep in sqlx actix-web tokio; do \
	  if $(CARGO) tree -p visitor-domain -e normal -i $$dep >/dev/null 2>&1; then \
	    echo "layering: visitor-domain depends on $$dep"; exit 1; fi; \
	done; echo "layering: visitor-domain is free of sqlx, actix-web and tokio"

openapi: ## rewrite openapi.yaml from the code (a test fails when they differ)
	$(CARGO) run -q -p visitor-http --bin visitor-http -- --print-openapi > openapi.yaml.tmp
	mv openapi.yaml.tmp openapi.yaml

db-prepare: tools-sqlx ## refresh the committed .sqlx/ query data from a migrated database
	DATABASE_URL=$(PREPARE_DATABASE_URL) sqlx database setup --source crates/visitor-store/migrations
	DATABASE_URL=$(PREPARE_DATABASE_URL) $(CARGO) sqlx prepare --workspace

db-check: tools-sqlx ## fail when .sqlx/ is stale
	DATABASE_URL=$(PREPARE_DATABASE_URL) sqlx database setup --source crates/visitor-store/migrations
	DATABASE_URL=$(PREPARE_DATABASE_URL) $(CARGO) sqlx prepare --workspace --check

tools-nextest:
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install cargo-nextest --version $(NEXTEST_VERSION) --locked

tools-sqlx:
	@sqlx --version 2>/dev/null | grep -q $(SQLX_CLI_VERSION) || $(CARGO) install sqlx-cli --version $(SQLX_CLI_VERSION) --locked --no-default-features --features postgres
