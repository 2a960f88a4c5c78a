#!/usr/bin/env bash
# A local Citus cluster on loopback for tests: a coordinator and two workers, PostgreSQL 15 with
# citus and pg_mask preloaded. It does not build or install Citus: it uses the one installed
# for PostgreSQL 15, if any.
#   citus.sh available      exit 0 if Citus is installed for PostgreSQL 15, else say so, exit 1
#   citus.sh start          create (once) and start the three nodes, add the workers (idempotent)
#   citus.sh stop           stop them
#   citus.sh schema DBNAME  create DBNAME (propagated), apply sql/ and distribute user_logins and
#                           user_login_rejects by message_id; login_ingest exists on every node
#   citus.sh drop DBNAME    drop DBNAME on every node
#   citus.sh urls [DBNAME]  print the connection URLs
# Nodes: coordinator 127.0.0.1:5441, workers 5442 and 5443, each its own initdb'd data
# directory under $CITUS_DIR, run by the postgres OS user with pg_ctl (not Debian's
# pg_ctlcluster: these are not Debian clusters). CITUS_DIR is .run/citus when the postgres user
# can reach .run, otherwise /var/lib/postgresql/pg_mask-citus.
# Authentication: role postgres has password 'postgres'; TCP from 127.0.0.1 is scram-sha-256
# (initdb --auth-host), the local socket peer. The nodes connect to each other over TCP with
# the password from $CITUS_DIR/pgpass (mode 0600, owner postgres), which each postmaster gets
# as PGPASSFILE in its environment: nothing is written to the postgres user's home.
# Every node reads the same pg_mask key file, $CITUS_DIR/pg_mask.keys (a copy, made once, of
# PostgreSQL 15/main's key file, or a fresh key), so a value masked on one node unmasks on any.
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

PGBIN="$(pg_config --bindir 2>/dev/null || echo "/usr/lib/postgresql/$PG_VERSION/bin")"
NODES=(coordinator worker1 worker2)
declare -A PORTS=([coordinator]=5441 [worker1]=5442 [worker2]=5443)
SOCKET_DIR=/var/run/postgresql

available() {
  local lib
  lib="$(pg_config --pkglibdir 2>/dev/null)/citus.so"
  [ -e "$lib" ] || { echo "skipped: Citus not installed"; exit 1; }
}

citus_dir() {
  $SUDO mkdir -p "$RUN_DIR"
  if as_postgres test -x "$RUN_DIR" 2>/dev/null; then CITUS_DIR="$RUN_DIR/citus"
  else CITUS_DIR=/var/lib/postgresql/pg_mask-citus; fi
}

# psql as the postgres OS user over the local socket (peer): q NODE DB [psql args...]
q() {
  local node="$1" db="$2"; shift 2
  as_postgres env PGOPTIONS="${Q_OPTIONS:-} -c client_min_messages=warning" \
    psql -X -v ON_ERROR_STOP=1 -q -At -h "$SOCKET_DIR" -p "${PORTS[$node]}" -d "$db" "$@"
}

running() { as_postgres "$PGBIN/pg_ctl" -D "$CITUS_DIR/$1" status >/dev/null 2>&1; }

pg_ctl_node() { # pg_ctl_node NODE start|restart|stop
  local node="$1" action="$2"
  as_postgres env PGPASSFILE="$CITUS_DIR/pgpass" "$PGBIN/pg_ctl" -D "$CITUS_DIR/$node" \
    -l "$CITUS_DIR/$node.log" -w -t 120 -m fast "$action" >/dev/null
}

prepare() {
  $SUDO install -d -o postgres -g postgres -m 0700 "$CITUS_DIR"
  $SUDO install -d -o postgres -g postgres -m 2775 "$SOCKET_DIR"
  local keys="$CITUS_DIR/pg_mask.keys"
  if ! $SUDO test -s "$keys"; then
    if $SUDO test -s "$PG_KEY_FILE"; then
      log "copying $PG_KEY_FILE to $keys (one key file for every node)"
      $SUDO cat "$PG_KEY_FILE" | $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$keys"
    else
      log "generating a pg_mask key in $keys (one key file for every node)"
      printf '# pg_mask key ring: key_id:base64_key, the first entry masks\nk1:%s\n' \
        "$(head -c 32 /dev/urandom | base64)" |
        $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$keys"
    fi
  fi
  printf '127.0.0.1:*:*:postgres:postgres\nlocalhost:*:*:postgres:postgres\n' |
    $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$CITUS_DIR/pgpass"
}

configure_node() { # sets CHANGED=1 when the node's settings changed
  local node="$1" dir="$CITUS_DIR/$1"
  if ! $SUDO test -s "$dir/PG_VERSION"; then
    log "initdb $node ($dir)"
    as_postgres "$PGBIN/initdb" -D "$dir" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    echo "include 'pg_mask_citus.conf'" | as_postgres tee -a "$dir/postgresql.conf" >/dev/null
  fi
  local new
  new="# Written by pg_mask's scripts/citus.sh. citus must come first.
shared_preload_libraries = 'citus,pg_mask'
pg_mask.key_file = '$CITUS_DIR/pg_mask.keys'
port = ${PORTS[$node]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKET_DIR'
max_wal_size = '4GB'"
  if [ "$($SUDO cat "$dir/pg_mask_citus.conf" 2>/dev/null)" != "$new" ]; then
    printf '%s\n' "$new" | $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$dir/pg_mask_citus.conf"
    CHANGED=1
  fi
}

wait_ready() {
  for _ in $(seq 150); do q "$1" postgres -c 'select 1' >/dev/null 2>&1 && return; sleep 0.2; done
  die "Citus node $1 did not come up: see $CITUS_DIR/$1.log"
}

# Citus in database DB on every node, the workers registered on the coordinator, metadata synced
# to them (so that a client connected to a worker can read and write the distributed tables).
join_nodes() {
  local db="$1" node
  for node in "${NODES[@]}"; do q "$node" "$db" -c 'CREATE EXTENSION IF NOT EXISTS citus'; done
  if [ "$(q coordinator "$db" -c 'SELECT count(*) FROM pg_dist_node WHERE groupid = 0')" = 0 ]; then
    q coordinator "$db" -c "SELECT citus_set_coordinator_host('127.0.0.1', ${PORTS[coordinator]})" >/dev/null
  fi
  for node in worker1 worker2; do
    if [ "$(q coordinator "$db" -c "SELECT count(*) FROM pg_dist_node WHERE nodeport = ${PORTS[$node]}")" = 0 ]; then
      log "adding $node (127.0.0.1:${PORTS[$node]}) to the coordinator of $db"
      q coordinator "$db" -c "SELECT citus_add_node('127.0.0.1', ${PORTS[$node]})" >/dev/null
    fi
  done
  # Citus 11+ syncs metadata when a node is added; done again for a node that lost it.
  q coordinator "$db" -c "SELECT start_metadata_sync_to_node(nodename, nodeport) FROM pg_dist_node
    WHERE groupid <> 0 AND noderole = 'primary' AND NOT hasmetadata" >/dev/null
}

start() {
  available
  prepare
  local node
  for node in "${NODES[@]}"; do
    CHANGED=0
    configure_node "$node"
    if running "$node"; then
      if [ "$CHANGED" = 1 ]; then log "restarting $node (settings changed)"; pg_ctl_node "$node" restart; fi
    else
      log "starting $node on 127.0.0.1:${PORTS[$node]}"
      pg_ctl_node "$node" start
    fi
  done
  for node in "${NODES[@]}"; do
    wait_ready "$node"
    if [ "$(q "$node" postgres -c "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'postgres'")" = t ]; then
      q "$node" postgres -c "ALTER USER postgres PASSWORD 'postgres'"
    fi
  done
  join_nodes postgres
  log "Citus cluster up ($CITUS_DIR)"
  urls postgres
}

stop() {
  local node
  for node in worker2 worker1 coordinator; do
    if [ -d "$CITUS_DIR/$node" ] && running "$node"; then log "stopping $node"; pg_ctl_node "$node" stop; fi
  done
}

urls() {
  local db="${1:-postgres}"
  echo "coordinator: postgres://postgres:postgres@127.0.0.1:${PORTS[coordinator]}/$db"
  echo "worker1:     postgres://postgres:postgres@127.0.0.1:${PORTS[worker1]}/$db"
  echo "worker2:     postgres://postgres:postgres@127.0.0.1:${PORTS[worker2]}/$db"
}

drop_db() {
  local db="${1:-}"
  [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "usage: scripts/citus.sh drop DBNAME"
  Q_OPTIONS="-c citus.enable_create_database_propagation=on" \
    q coordinator postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}

distributed() { # distributed DB TABLE: is TABLE a distributed table in DB on the coordinator
  [ "$(q coordinator "$1" -c "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = '$2'::regclass")" = 1 ]
}

schema() {
  local db="${1:-}" node f
  [ -n "$db" ] || die "usage: scripts/citus.sh schema DBNAME"
  [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DBNAME must be a plain lower-case identifier"
  available
  for node in "${NODES[@]}"; do running "$node" || die "$node is not running: scripts/citus.sh start"; done
  if [ "$(q coordinator postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
    log "CREATE DATABASE $db (propagated to the workers)"
    q coordinator postgres -c 'SET citus.enable_create_database_propagation = on' -c "CREATE DATABASE $db"
  fi
  join_nodes "$db"
  # Triggers on distributed tables (pg_mask's mask_columns) need this, for every session.
  q coordinator "$db" -c "ALTER DATABASE $db SET citus.enable_unsafe_triggers = on"
  export Q_OPTIONS="-c citus.enable_unsafe_triggers=on"
  log "applying sql/ to $db on the coordinator"
  # The tables first, distributed before anything else refers to them.
  q coordinator "$db" -f - < "$ROOT/sql/01_user_logins.sql" >/dev/null
  for t in user_logins user_login_rejects; do
    if ! distributed "$db" "$t"; then
      log "create_distributed_table('$t', 'message_id')"
      q coordinator "$db" -c "SELECT create_distributed_table('$t', 'message_id')" >/dev/null
    fi
  done
  for f in "$ROOT"/sql/*.sql; do
    [ "$(basename "$f")" = 01_user_logins.sql ] && continue
    q coordinator "$db" -f - < "$f" >/dev/null
  done
  # login_ingest reaches the workers as a distributed view, but Citus does not propagate
  # triggers on views: without its INSTEAD OF trigger a worker's login_ingest is a plain empty
  # view ("cannot insert into view"). The triggers are created on each worker locally, from
  # the same file (CREATE OR REPLACE: the view is the same), with DDL propagation off.
  export Q_OPTIONS="-c citus.enable_ddl_propagation=off"
  for node in worker1 worker2; do
    log "login_ingest's triggers on $node"
    q "$node" "$db" -f - < "$ROOT/sql/02_ingest.sql" >/dev/null
  done
  unset Q_OPTIONS
  log "schema applied to $db"
  urls "$db"
}

[ "${1:-}" = available ] || citus_dir
case "${1:-}" in
  available) available ;;
  start) start ;;
  stop) stop ;;
  schema) schema "${2:-}" ;;
  drop) drop_db "${2:-}" ;;
  urls) urls "${2:-}" ;;
  *) die "usage: scripts/citus.sh available|start|stop|schema DBNAME|drop DBNAME|urls [DBNAME]" ;;
esac
