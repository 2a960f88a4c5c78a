#!/usr/bin/env bash
# Real PostgreSQL 17 and 18 servers for pg_mask's test suites, each in a Debian chroot: their
# packages need a newer glibc than this Debian 12 host has. Needs root (or sudo).
#   pg-chroot.sh setup N     create (once) /var/lib/pg_mask-chroots/pgN with debootstrap, mount
#                            /proc, /sys, /dev, the Rust toolchain and the repository into it,
#                            install postgresql-N and what pgrx needs, and run cargo pgrx init
#                            --pgN in it (the chroot's own ~/.pgrx: see pgrx_init)
#   pg-chroot.sh start N     create (once) and start cluster N/main on 127.0.0.1:54NN
#                            (postgres/postgres over TCP); pg_mask is preloaded once installed
#   pg-chroot.sh stop N      stop it
#   pg-chroot.sh install N   build pg_mask for PostgreSQL N inside the chroot (target/pgN),
#                            install it there and restart the cluster with pg_mask preloaded
#   pg-chroot.sh check N     cargo check pg_mask for PostgreSQL N inside the chroot (target/pgN)
#   pg-chroot.sh env N       print the export lines a test run against that server needs
#   pg-chroot.sh shell N     a root shell inside the chroot (with the toolchain on PATH)
#   pg-chroot.sh unmount N   stop the cluster and unmount everything mounted into the chroot
# N is 17 (Debian 13, trixie) or 18 (Debian unstable, sid).
# The chroot's postgres user gets the host's postgres uid and gid, so a file the host installs
# under the chroot "owned by postgres" is owned by the server's user inside.
# Never delete a chroot while it is mounted: $HOME/.cargo, $HOME/.rustup and the repository
# are bind-mounted read-write into it. `unmount N` first.
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

CHROOTS=/var/lib/pg_mask-chroots
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES_BASE=(postgresql-common)
HOST_CA=/etc/ssl/host-ca-certificates.crt   # inside the chroot: a copy of the host's CA bundle

version() {
  case "${1:-}" in
    17) SUITE=trixie ;;
    18) SUITE=sid ;;
    *) die "PostgreSQL major version must be 17 or 18, not '${1:-}'" ;;
  esac
  N="$1"
  DIR="$CHROOTS/pg$N"
  PORT=$((5400 + N))
  CONF_DIR="/etc/postgresql/$N/main"   # paths inside the chroot
  KEY_FILE="$CONF_DIR/pg_mask.keys"
  LOG_FILE="/var/log/postgresql/postgresql-$N-main.log"
  PG_CONFIG="/usr/lib/postgresql/$N/bin/pg_config"
}

# Runs a command inside the chroot as root, with a clean environment (nothing of the host's
# PG*, DATABASE_URL or locale leaks in) and the host's Rust toolchain on PATH.
in_chroot() {
  local ca="$HOST_CA"
  [ -s "$DIR$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
  $SUDO chroot "$DIR" /usr/bin/env -i HOME="$HOME" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    DEBIAN_FRONTEND=noninteractive RUSTUP_AUTO_INSTALL=0 \
    SSL_CERT_FILE="$ca" CARGO_HTTP_CAINFO="$ca" "$@"
}
psql_chroot() {
  in_chroot runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" \
    psql -X -v ON_ERROR_STOP=1 -q -p "$PORT" "$@"
}

bind() { # bind SRC: mount SRC at the same path inside the chroot, once
  local src="$1" dst="$DIR$1"
  $SUDO mkdir -p "$dst"
  mountpoint -q "$dst" || $SUDO mount --bind "$src" "$dst"
}

mount_all() {
  [ -x "$DIR/usr/bin/env" ] || die "$DIR is not set up: run scripts/pg-chroot.sh setup $N"
  mountpoint -q "$DIR/proc" || $SUDO mount -t proc proc "$DIR/proc"
  mountpoint -q "$DIR/sys" || $SUDO mount -t sysfs sysfs "$DIR/sys"
  bind /dev
  bind /dev/pts
  # PostgreSQL's dynamic shared memory is POSIX shm: the chroot needs a /dev/shm.
  if mountpoint -q /dev/shm; then bind /dev/shm; fi
  # Not $HOME/.pgrx: see pgrx_init.
  bind "$HOME/.cargo"
  bind "$HOME/.rustup"
  bind "$ROOT"
  $SUDO cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
  # cargo inside trusts what the host trusts (the host's bundle may hold a local CA that
  # Debian's ca-certificates in the chroot does not).
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    $SUDO cp -L /etc/ssl/certs/ca-certificates.crt "$DIR$HOST_CA"
  fi
}

unmount_all() {
  local m
  # Deepest first.
  for m in "$ROOT" "$HOME/.pgrx" "$HOME/.rustup" "$HOME/.cargo" /dev/shm /dev/pts /dev /sys /proc; do
    if mountpoint -q "$DIR$m"; then $SUDO umount "$DIR$m"; fi
  done
}

setup() {
  if ! [ -e "$DIR/.debootstrap-done" ]; then
    command -v debootstrap >/dev/null || $SUDO apt-get install -y -qq debootstrap >/dev/null
    log "debootstrap $SUITE (minbase) into $DIR"
    $SUDO mkdir -p "$CHROOTS"
    $SUDO debootstrap --variant=minbase --include=ca-certificates,passwd \
      "$SUITE" "$DIR" "$MIRROR" >/dev/null
    $SUDO touch "$DIR/.debootstrap-done"
  fi
  mount_all
  # sid's Release file is valid for a week only: an archive mirror or a snapshot that lags
  # (or a clock that runs ahead) makes apt refuse it. Packages are still signature-checked.
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' |
    $SUDO install -m 0644 /dev/stdin "$DIR/etc/apt/apt.conf.d/99pg-mask-chroot"
  # No service is started by a package's postinst inside the chroot.
  printf '#!/bin/sh\nexit 101\n' | $SUDO install -m 0755 /dev/stdin "$DIR/usr/sbin/policy-rc.d"
  # The host's postgres uid/gid, so that host-side file ownership means the same inside.
  if ! in_chroot getent passwd postgres >/dev/null; then
    local uid gid
    uid="$(id -u postgres)" gid="$(id -g postgres)"
    in_chroot getent group "$gid" >/dev/null && die "gid $gid is taken in $DIR"
    in_chroot getent passwd "$uid" >/dev/null && die "uid $uid is taken in $DIR"
    in_chroot groupadd --system --gid "$gid" postgres
    in_chroot useradd --system --uid "$uid" --gid "$gid" --home-dir /var/lib/postgresql \
      --no-create-home --shell /bin/bash --comment "PostgreSQL administrator" postgres
  fi
  local packages=("postgresql-$N" "postgresql-server-dev-$N" clang libclang-dev pkg-config gcc make
                  libc6-dev ca-certificates)
  if ! in_chroot dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    log "installing PostgreSQL $N and the build tools into $DIR"
    in_chroot apt-get update -qq
    in_chroot apt-get install -y -qq --no-install-recommends "${PACKAGES_BASE[@]}" >/dev/null
    # The clusters are made by `start` (port 54NN), not by the package's postinst.
    in_chroot sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf
    in_chroot apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
  pgrx_init
  log "chroot $DIR ready: PostgreSQL $N ($(in_chroot "$PG_CONFIG" --version))"
}

# cargo pgrx init --pgN inside the chroot. Its ~/.pgrx/config.toml is the chroot's own and
# holds only pgN, on purpose: pgrx-pg-sys's build script looks a version up by running
# `pg_config --version` for every entry in turn until one matches, so an entry whose pg_config
# does not exist where the build runs (the chroot's in the host's file, or the host's
# /usr/bin/pg_config inside the chroot, which there is PostgreSQL N's) makes the build fail or
# pick the wrong version. The host's ~/.pgrx/config.toml (pg15) is neither read nor written.
pgrx_init() {
  local cfg="$DIR$HOME/.pgrx/config.toml"
  if [ -f "$cfg" ] && grep -qx "pg$N = \"$PG_CONFIG\"" "$cfg"; then return; fi
  log "cargo pgrx init --pg$N $PG_CONFIG (inside the chroot: its own ~/.pgrx)"
  in_chroot cargo pgrx init "--pg$N" "$PG_CONFIG" >/dev/null
}

installed() { [ -e "$DIR/usr/lib/postgresql/$N/lib/pg_mask.so" ] &&
              [ -e "$DIR/usr/share/postgresql/$N/extension/pg_mask.control" ]; }
running() { in_chroot pg_ctlcluster "$N" main status >/dev/null 2>&1; }

configure() {
  if ! [ -d "$DIR$CONF_DIR" ]; then
    log "creating cluster $N/main in $DIR (port $PORT)"
    in_chroot pg_createcluster "$N" main --port "$PORT" --locale C.UTF-8 >/dev/null
  fi
  if ! $SUDO test -s "$DIR$KEY_FILE"; then
    log "generating a pg_mask key in $DIR$KEY_FILE"
    printf '# pg_mask key ring: key_id:base64_key, the first entry masks\nk1:%s\n' \
      "$(head -c 32 /dev/urandom | base64)" |
      $SUDO install -o postgres -g postgres -m 0600 /dev/stdin "$DIR$KEY_FILE"
  fi
  local preload
  if installed; then
    preload="shared_preload_libraries = 'pg_mask, pg_stat_statements'
pg_mask.key_file = '$KEY_FILE'"
  else
    preload="# pg_mask is not installed in this chroot yet (scripts/pg-chroot.sh install $N):
# until then the server runs without it."
  fi
  local conf="$DIR$CONF_DIR/conf.d/pg_mask.conf" new
  new="# Written by pg_mask's scripts/pg-chroot.sh.
$preload
port = $PORT
listen_addresses = '127.0.0.1'
max_wal_size = '4GB'
"
  if [ "$(cat "$conf" 2>/dev/null)" != "${new%$'\n'}" ]; then
    printf '%s' "$new" | $SUDO install -o postgres -g postgres -m 0644 /dev/stdin "$conf"
    CHANGED=1
  fi
}

start() {
  mount_all
  [ -x "$DIR/usr/lib/postgresql/$N/bin/postgres" ] || die "PostgreSQL $N is not installed: scripts/pg-chroot.sh setup $N"
  CHANGED=0
  configure
  if running; then
    if [ "$CHANGED" = 1 ]; then
      log "restarting PostgreSQL $N/main (configuration changed)"
      in_chroot pg_ctlcluster "$N" main restart
    fi
  else
    log "starting PostgreSQL $N/main on 127.0.0.1:$PORT"
    in_chroot pg_ctlcluster "$N" main start
  fi
  local ok=""
  for _ in $(seq 100); do psql_chroot -c 'select 1' >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
  [ -n "$ok" ] || die "PostgreSQL $N did not come up: see $DIR$LOG_FILE"
  psql_chroot -c "ALTER USER postgres PASSWORD 'postgres'"
  if installed; then
    log "PostgreSQL $N/main up on 127.0.0.1:$PORT, pg_mask preloaded"
  else
    log "PostgreSQL $N/main up on 127.0.0.1:$PORT, WITHOUT pg_mask (not installed yet: scripts/pg-chroot.sh install $N)"
  fi
}

stop() {
  [ -x "$DIR/usr/bin/env" ] || return 0
  if [ -d "$DIR$CONF_DIR" ] && mountpoint -q "$DIR/proc" && running; then
    log "stopping PostgreSQL $N/main"
    in_chroot pg_ctlcluster "$N" main stop
  fi
}

install_ext() {
  mount_all
  pgrx_init
  log "building pg_mask for PostgreSQL $N inside $DIR (target/pg$N) and installing it there"
  # shellcheck disable=SC2016 # expanded by the inner bash
  in_chroot bash -c 'cd "$1/pg_mask" && CARGO_TARGET_DIR="$1/target/pg$2" nice -n 10 \
      cargo pgrx install --release --pg-config "$3" --no-default-features --features "pg$2"' \
    _ "$ROOT" "$N" "$PG_CONFIG"
  start
}

# cargo check pg_mask against the chroot's PostgreSQL N headers (real bindgen, target/pgN).
check() {
  mount_all
  pgrx_init
  log "cargo check -p pg_mask --no-default-features --features pg$N (inside $DIR)"
  # shellcheck disable=SC2016 # expanded by the inner bash
  in_chroot bash -c 'cd "$1" && CARGO_TARGET_DIR="$1/target/pg$2" nice -n 10 \
      cargo check -p pg_mask --no-default-features --features "pg$2"' _ "$ROOT" "$N"
}

env_lines() {
  cat <<ENV
export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:$PORT/postgres
export PG_MASK_TEST_SERVER_ROOT=$DIR
export PG_MASK_TEST_PG_MAJOR=$N
export PG_MASK_TEST_SERVER_CONF_DIR=$CONF_DIR
export PG_MASK_TEST_SERVER_LOG=$LOG_FILE
export PG_MASK_TEST_PG_CTL="chroot $DIR pg_ctlcluster $N main"
ENV
}

cmd="${1:-}"
[ $# -ge 2 ] || die "usage: scripts/pg-chroot.sh setup|start|stop|install|check|env|shell|unmount 17|18"
version "$2"
case "$cmd" in
  setup) setup ;;
  start) start ;;
  stop) stop ;;
  install) install_ext ;;
  check) check ;;
  env) env_lines ;;
  shell) mount_all; in_chroot bash ;;
  unmount) stop; unmount_all ;;
  *) die "usage: scripts/pg-chroot.sh setup|start|stop|install|check|env|shell|unmount 17|18" ;;
esac
