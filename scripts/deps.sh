#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine with Rust: PostgreSQL 15 and
# its server headers, clang for pgrx's bindgen, cargo-pgrx, and the SQS emulators (fauxqs from
# npm, moto from PyPI). Idempotent: each step is skipped when already done.
source "$(dirname "$0")/lib.sh"

# openssl: the TLS tests make an X.509 v1 certificate with it, as Citus and `openssl x509 -req` do.
apt_pkgs=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo nodejs npm openssl)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# Node may come from elsewhere than Debian (this machine kind ships it): keep it if it works.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "cargo install cargo-pgrx $PGRX_VERSION (about 10 minutes on 2 cores)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi
if ! grep -qs 'pg15' "$HOME/.pgrx/config.toml"; then
  log "cargo pgrx init --pg15 /usr/bin/pg_config"
  cargo pgrx init --pg15 /usr/bin/pg_config >/dev/null
fi

if [ ! -x "$ROOT/tools/node_modules/.bin/fauxqs" ]; then
  log "npm: installing the fauxqs SQS emulator into tools/"
  (cd "$ROOT/tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
# Python tools live in a venv of their own (Debian's system Python refuses global pip installs).
if ! "$VENV_PY" -c 'import moto.server, boto3, psycopg2' 2>/dev/null; then
  log "pip: installing moto[server], boto3 and psycopg2 into $RUN_DIR/venv"
  python3 -m venv --help >/dev/null 2>&1 || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null; }
  mkdir -p "$RUN_DIR"
  python3 -m venv "$RUN_DIR/venv"
  "$VENV_PY" -m pip install --quiet 'moto[server]==5.*' 'boto3==1.*' psycopg2-binary
fi
log "dependencies ready"
