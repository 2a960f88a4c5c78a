#!/usr/bin/env bash
# The Citus tier (make test-citus, and part of make test): starts a coordinator and two
# workers on loopback (scripts/citus.sh) and runs integration/tests/citus.rs against them.
# Citus is in no package registry, so this script never installs it: without it, it prints
# "skipped: Citus not installed" and succeeds.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bash scripts/citus.sh available || exit 0
log "Citus tier: a coordinator and two workers on loopback"
bash scripts/citus.sh start >/dev/null
trap 'bash scripts/citus.sh stop >/dev/null 2>&1 || true' EXIT
cargo build -q --release -p feeder
# sslmode=disable: the nodes serve TLS with a self-signed certificate Citus made for itself.
CITUS_COORDINATOR_URL="postgres://postgres:postgres@127.0.0.1:5441/postgres?sslmode=disable" \
CITUS_WORKER_URL="postgres://postgres:postgres@127.0.0.1:5442/postgres?sslmode=disable" \
FEEDER_BIN="$ROOT/target/release/feeder" \
  cargo test -q -p integration --test citus -- --ignored --test-threads=2
