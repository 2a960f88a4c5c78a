#!/usr/bin/env bash
# make test-pg PG=17 (or 18): the extension, ingest and adversary suites against a real
# PostgreSQL of that major, which Debian 12 does not ship: it runs in a Debian chroot
# (scripts/pg-chroot.sh: trixie for 17, sid for 18, from Debian's archive), with pg_mask built
# there for that major. The first run creates the chroot (a few minutes) and builds pg_mask
# (about 5 minutes on 2 cores); later runs reuse both.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
major="${1:-}"
case "$major" in
  17|18) ;;
  *) die "usage: make test-pg PG=17 (or PG=18)" ;;
esac
bash scripts/pg-chroot.sh setup "$major"
bash scripts/pg-chroot.sh install "$major"
eval "$(bash scripts/pg-chroot.sh env "$major")"
log "extension, ingest and adversary suites on PostgreSQL $major ($DATABASE_URL)"
cargo test -q -p integration --test extension --test ingest --test adversary -- --test-threads=3
