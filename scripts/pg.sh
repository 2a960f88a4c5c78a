#!/usr/bin/env bash
# Manages the local PostgreSQL 15 cluster (Debian's 15/main) for pg_mask.
#   pg.sh install   build pg_mask (release) and install it with cargo pgrx install
#   pg.sh start     configure (pg_mask preloaded, key file, password) and start or restart
#   pg.sh stop      stop the cluster
#   pg.sh schema    apply sql/ to the database (idempotent)
# The key file is created once with a random key, owned by postgres with mode 0600: only the
# server can read it.
source "$(dirname "$0")/lib.sh"

install_ext() {
  log "building and installing pg_mask into PostgreSQL $PG_VERSION (cargo pgrx install --release)"
  local sudo_flag=()
  [ -n "$SUDO" ] && sudo_flag=(--sudo)
  (cd "$ROOT/pg_mask" && cargo pgrx install --release --pg-config /usr/bin/pg_config "${sudo_flag[@]}" >/dev/null)
}

configure() {
  if ! [ -d "$PG_CONF_DIR" ]; then
    log "creating cluster $PG_VERSION/$PG_CLUSTER"
    $SUDO pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >/dev/null
  fi
  if ! $SUDO test -s "$PG_KEY_FILE"; then
    log "generating a pg_mask key in $PG_KEY_FILE (readable by the server only)"
    local key
    key="k1:$(head -c 32 /dev/urandom | base64)"
    printf '# pg_mask key ring: key_id:base64_key, the first entry masks\n%s\n' "$key" \
      | $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$PG_KEY_FILE"
  fi
  $SUDO install -o postgres -g postgres -m 0644 /dev/stdin "$PG_CONF_DIR/conf.d/pg_mask.conf" <<CONF
# Written by pg_mask's scripts/pg.sh.
# pg_mask must be preloaded: before the library is loaded, a pg_mask.* setting would be a plain
# placeholder that any role can read. pg_stat_statements, as most production servers have it,
# so that the tests can check that no key ever reaches it.
shared_preload_libraries = 'pg_mask, pg_stat_statements'
# The key ring lives in a file outside the data directory (never in postgresql.auto.conf).
pg_mask.key_file = '$PG_KEY_FILE'
port = $PG_PORT
listen_addresses = 'localhost'
# Bulk loading: fewer checkpoints during a big COPY.
max_wal_size = '4GB'
CONF
}

start() {
  configure
  if $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; then
    log "restarting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart
  else
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
  fi
  for _ in $(seq 50); do psql_su -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  # The reference setup's credentials (postgres/postgres over TCP on localhost).
  psql_su -c "ALTER USER postgres PASSWORD 'postgres'"
}

stop() {
  $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop 2>/dev/null || true
}

schema() {
  log "applying sql/ to ${PGDATABASE:-postgres}"
  for f in "$ROOT"/sql/*.sql; do
    psql_su -d "${PGDATABASE:-postgres}" -f - < "$f" >/dev/null
  done
}

case "${1:-}" in
  install) install_ext ;;
  start) start ;;
  stop) stop ;;
  schema) schema ;;
  *) die "usage: scripts/pg.sh install|start|stop|schema" ;;
esac
