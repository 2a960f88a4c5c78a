#!/usr/bin/env bash
# Runs every test suite against the real PostgreSQL (started by `make db`) and real SQS
# emulators (each suite starts its own on a free port). Suites run one after another: some
# change server-wide key settings or restart the server.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
log "Docker files (static checks; no engine on this machine)"
bash scripts/check-docker.sh
log "unit tests (pg_mask_core, feeder)"
cargo test -q -p pg_mask_core -p feeder
log "integration suites (real PostgreSQL 15 + pg_mask, real SQS emulators)"
cargo build -q --release -p feeder
FEEDER_BIN="$ROOT/target/release/feeder" cargo test -q -p integration -- --test-threads=4
