#!/usr/bin/env bash
# Starts or stops the local SQS emulator (fauxqs, from tools/) on 127.0.0.1:$SQS_PORT.
#   sqs.sh start   start it in the background (no-op when already answering)
#   sqs.sh stop
source "$(dirname "$0")/lib.sh"
mkdir -p "$RUN_DIR"
PID_FILE="$RUN_DIR/fauxqs.pid"

answering() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$SQS_PORT/" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/"$SQS_PORT") 2>/dev/null; }

case "${1:-}" in
  start)
    if answering; then log "SQS emulator already answering on 127.0.0.1:$SQS_PORT"; exit 0; fi
    log "starting fauxqs on 127.0.0.1:$SQS_PORT (log: $RUN_DIR/fauxqs.log)"
    FAUXQS_HOST=127.0.0.1 FAUXQS_PORT="$SQS_PORT" FAUXQS_LOGGER=false \
      nohup "$ROOT/tools/node_modules/.bin/fauxqs" >"$RUN_DIR/fauxqs.log" 2>&1 &
    echo $! > "$PID_FILE"
    for _ in $(seq 50); do answering && exit 0; sleep 0.2; done
    die "fauxqs did not start; see $RUN_DIR/fauxqs.log"
    ;;
  stop)
    [ -f "$PID_FILE" ] && kill "$(cat "$PID_FILE")" 2>/dev/null || true
    rm -f "$PID_FILE"
    ;;
  *) die "usage: scripts/sqs.sh start|stop" ;;
esac
