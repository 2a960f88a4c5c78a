#!/usr/bin/env bash
# Runs every test suite against the real PostgreSQL (started by `make db`) and real SQS
# emulators (each suite starts its own on a free port). Suites run one after another: some
# change server-wide key settings or restart the server. Ends with one "N passed, N failed" line.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$RUN_DIR"
OUT="$RUN_DIR/test-output.txt"
: > "$OUT"
log "Docker files and Kubernetes manifests (static checks; no engine or cluster on this machine)"
bash scripts/check-docker.sh
bash scripts/check-pg-versions.sh
log "the cargo-fuzz targets compile (make fuzz runs them)"
cargo check -q --manifest-path pg_mask_core/fuzz/Cargo.toml --bins
log "rustfmt and clippy (-D warnings), pg_mask with its pg15 feature too"
cargo fmt --all --check
cargo clippy -q -p pg_mask_core -p feeder -p integration --all-targets -- -D warnings
(cd pg_mask && cargo clippy -q --lib -- -D warnings)
log "unit and property tests (pg_mask_core, feeder)"
cargo test -q -p pg_mask_core -p feeder --tests 2>&1 | tee -a "$OUT"
log "integration suites (real PostgreSQL 15 + pg_mask, real SQS emulators)"
cargo build -q --release -p feeder
FEEDER_BIN="$ROOT/target/release/feeder" cargo test -q -p integration --tests -- --test-threads=4 2>&1 | tee -a "$OUT"
log "upgrade tier: the extension and adversary suites on databases updated in place from 0.1.0"
bash scripts/test-upgrade.sh 2>&1 | tee -a "$OUT"
bash scripts/test-citus.sh 2>&1 | tee -a "$OUT"
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
  END { print p + 0, f + 0 }' "$OUT")
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ] && ! grep -q "^error: test failed" "$OUT"
