# Shared helpers for the project's scripts: `source scripts/lib.sh`.
# Everything here works as root and as a normal user with sudo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_VERSION=15
PG_CLUSTER=main
PG_CONF_DIR="/etc/postgresql/$PG_VERSION/$PG_CLUSTER"
PG_DATA="/var/lib/postgresql/$PG_VERSION/$PG_CLUSTER"
PG_LOG="/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
PG_KEY_FILE="$PG_CONF_DIR/pg_mask.keys"
PG_PORT="${PG_PORT:-5432}"
SQS_PORT="${SQS_PORT:-4566}"
RUN_DIR="$ROOT/.run"
VENV_PY="$RUN_DIR/venv/bin/python"
PGRX_VERSION=0.18.0
export PATH="$HOME/.cargo/bin:$PATH"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$SQS_PORT}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the postgres OS user (psql over the local socket, peer auth).
as_postgres() { if [ -z "$SUDO" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
psql_su() { as_postgres env PGOPTIONS="-c client_min_messages=warning" psql -X -v ON_ERROR_STOP=1 -q -p "$PG_PORT" "$@"; }
