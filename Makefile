# pg_mask: the two commands are `make demo` (run the whole pipeline locally) and `make test`.
# Both install what is missing first (scripts/deps.sh) and work as root or as a user with sudo.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: help deps install db schema sqs feeder demo test test-citus test-pg bench bench-citus fuzz docker-key check-versions docker-check stop fmt lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-14s %s\n", $$1, $$2 }'

deps: ## install apt packages, cargo-pgrx 0.18, fauxqs and moto (idempotent)
	@bash scripts/deps.sh

install: deps ## build pg_mask (release) and install it into PostgreSQL 15
	@bash scripts/pg.sh install

db: install ## start PostgreSQL 15 with pg_mask preloaded and a key file
	@bash scripts/pg.sh start

schema: db ## apply sql/ (idempotent)
	@bash scripts/pg.sh schema

sqs: deps ## start the fauxqs SQS emulator on 127.0.0.1:4566
	@bash scripts/sqs.sh start

feeder: ## build the feeder (release)
	@cargo build --release -q -p feeder

demo: schema sqs feeder ## the whole pipeline: seed login-queue, drain it into Postgres, show the result
	@bash scripts/demo.sh

test: db ## every test: static checks, unit, extension, ingest, adversary, feeder, reliability, upgrade and (when installed) Citus suites
	@bash scripts/test.sh

test-citus: db ## the Citus tier: a coordinator and two workers on loopback (skipped if Citus is not installed)
	@bash scripts/test-citus.sh

test-pg: ## the extension, ingest and adversary suites on a real PostgreSQL $(PG) (17 or 18) in a Debian chroot
	@bash scripts/test-pg.sh $(PG)

bench: schema feeder ## benchmarks (not pass/fail): masking, COPY, ingest, feeder vs baseline
	@bash bench/run.sh

bench-citus: db ## Citus vs single-node ingest rates (not pass/fail; needs Citus installed)
	@bash bench/citus.sh

fuzz: ## cargo-fuzz the token decoding and the login validation (FUZZ_SECONDS each, default 60; not pass/fail of make test)
	@bash scripts/fuzz.sh

docker-key: ## create docker/secrets/pg_mask.keys (once) for docker compose
	@mkdir -p docker/secrets && umask 077 && test -s docker/secrets/pg_mask.keys || \
	  echo "k1:$$(head -c 32 /dev/urandom | base64)" > docker/secrets/pg_mask.keys

check-versions: ## type-check pg_mask for PostgreSQL 13-18 (pgrx's pre-generated bindings; part of make test)
	@bash scripts/check-pg-versions.sh

docker-check: deps ## static checks of the Docker files (hadolint, compose-spec, the pgrx package layout); no engine needed
	@bash scripts/check-docker.sh

stop: ## stop the emulator and PostgreSQL
	@bash scripts/sqs.sh stop; bash scripts/pg.sh stop

fmt: ## rustfmt
	@cargo fmt --all

lint: ## clippy (-D warnings) on every crate, as make test runs it
	@cargo clippy -p pg_mask_core -p feeder -p integration --all-targets -- -D warnings
	@cd pg_mask && cargo clippy --lib -- -D warnings
