#!/usr/bin/env bash
# Type-checks pg_mask against every PostgreSQL major version pgrx 0.18 supports (13-18), using
# the bindings pgrx ships pre-generated (its docs.rs mode), so no other PostgreSQL needs to be
# installed. Only PostgreSQL 15 is built, installed and tested (`make test`); this catches
# version-specific signatures (`#[cfg(feature = "pgNN")]`) that no test here compiles.
source "$(dirname "$0")/lib.sh"
target="$ROOT/target/pg-versions"
bindings="$(cargo metadata --format-version 1 --manifest-path "$ROOT/Cargo.toml" |
  python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "pgrx-pg-sys").rsplit("/", 1)[0])')/src/include"
check() { (cd "$ROOT/pg_mask" && DOCS_RS=1 CARGO_TARGET_DIR="$target" cargo check -q --no-default-features --features "pg$1"); }
for v in 13 14 15 16 17 18; do
  log "cargo check pg_mask --features pg$v (pre-generated bindings)"
  # In docs.rs mode pgrx-pg-sys reads its bindings from OUT_DIR without writing them: the first
  # run creates that directory and fails, then the shipped files are put there.
  if ! check "$v" 2>/dev/null; then
    for out in "$target"/debug/build/pgrx-pg-sys-*/out; do cp "$bindings"/pg1[3-8]*.rs "$out"/; done
    check "$v"
  fi
done
log "pg_mask type-checks on PostgreSQL 13-18"
