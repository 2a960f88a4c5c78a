#!/usr/bin/env bash
# Starts or stops the local SQS emulator (fauxqs, from tools/) on 127.0.0.1:$SQS_PORT.
#   sqs.sh start     start it in the background (no-op when already answering)
#   sqs.sh stop      stop it (also a fauxqs left on the port without its pid file)
#   sqs.sh restart   stop, then start a fresh one with no queues
source "$(dirname "$0")/lib.sh"
mkdir -p "$RUN_DIR"
PID_FILE="$RUN_DIR/fauxqs.pid"

answering() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$SQS_PORT/" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/"$SQS_PORT") 2>/dev/null; }

case "${1:-}" in
  start)
    if answering; then log "SQS emulator already answering on 127.0.0.1:$SQS_PORT"; exit 0; fi
    log "starting fauxqs on 127.0.0.1:$SQS_PORT (log: $RUN_DIR/fauxqs.log)"
    # tools/loopback.cjs keeps it on 127.0.0.1: fauxqs itself listens on every interface.
    FAUXQS_HOST=127.0.0.1 FAUXQS_PORT="$SQS_PORT" FAUXQS_LOGGER=false \
      NODE_OPTIONS="--require \"$ROOT/tools/loopback.cjs\"" nohup "$ROOT/tools/node_modules/.bin/fauxqs" >"$RUN_DIR/fauxqs.log" 2>&1 &
    echo $! > "$PID_FILE"
    for _ in $(seq 50); do answering && exit 0; sleep 0.2; done
    die "fauxqs did not start; see $RUN_DIR/fauxqs.log"
    ;;
  stop)
    [ -f "$PID_FILE" ] && kill "$(cat "$PID_FILE")" 2>/dev/null || true
    rm -f "$PID_FILE"
    # A fauxqs whose pid file is lost (or another checkout's) would keep the port and its queues.
    for pid in $($SUDO ss -ltnpH "sport = :$SQS_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
      if $SUDO cat "/proc/$pid/cmdline" 2>/dev/null | tr '\0' ' ' | grep -q fauxqs; then
        $SUDO kill "$pid" 2>/dev/null || true
      fi
    done
    for _ in $(seq 50); do answering || exit 0; sleep 0.1; done
    ;;
  restart)
    # A fresh emulator with no queues (the demo starts from an empty login-queue).
    bash "$0" stop
    if answering; then
      die "127.0.0.1:$SQS_PORT is taken by another program (LocalStack?); stop it or choose another port: SQS_PORT=4567 make demo"
    fi
    bash "$0" start
    ;;
  *) die "usage: scripts/sqs.sh start|stop|restart" ;;
esac
