#!/usr/bin/env bash
# The upgrade tier: every test database is set up as pg_mask 0.1.0 left it (extension script and
# schema of that release, kept in integration/fixtures/), updated in place with ALTER EXTENSION
# pg_mask UPDATE, then given sql/ again; the extension and adversary suites then run on it.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
sharedir="$(pg_config --sharedir)"
script="$sharedir/extension/pg_mask--0.1.0.sql"
installed=""
if ! [ -f "$script" ]; then
  $SUDO install -m 0644 integration/fixtures/pg_mask--0.1.0.sql "$script"
  installed=1
fi
cleanup() { [ -z "$installed" ] || $SUDO rm -f "$script"; }
trap cleanup EXIT
PG_MASK_TEST_UPGRADE_FROM=0.1.0 cargo test -q -p integration --test extension --test adversary -- --test-threads=3
