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
# No sslmode: the feeder connects with libpq's default, prefer, so it speaks TLS to the nodes'
# self-signed X.509 v1 certificates that Citus made for itself.
CITUS_COORDINATOR_URL="postgres://postgres:postgres@127.0.0.1:5441/postgres" \
CITUS_WORKER_URL="postgres://postgres:postgres@127.0.0.1:5442/postgres" \
FEEDER_BIN="$ROOT/target/release/feeder" \
  cargo test -q -p integration --test citus -- --ignored --test-threads=2
