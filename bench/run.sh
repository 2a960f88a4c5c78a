#!/usr/bin/env bash
# Every benchmark, each against a baseline measured in the same run; prints ratios.
# Not a pass/fail test (`make bench`; CI does not run it). Synthetic data only; a scratch
# database pg_mask_bench is created and dropped.
#   1. masking.sql  mask_pii vs pgcrypto per call; COPY with vs without mask_columns
#   2. ingest.sql   1M raw messages through login_ingest vs plain COPY of the flattened rows
#   3. feeder       20k messages drained by the feeder vs the classic boto3 consumer, beside
#                   the emulator's own receive+delete ceiling; the feeder's peak RSS
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
N_MESSAGES="${N_MESSAGES:-20000}"
BENCH_DB=pg_mask_bench
BENCH_URL="postgres://postgres:postgres@127.0.0.1:$PG_PORT/$BENCH_DB"
bash scripts/deps.sh >/dev/null

echo "# pg_mask benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# PostgreSQL: $(psql_su -Atc 'show server_version')"
fresh_db() {
  psql_su -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
  PGDATABASE=$BENCH_DB bash scripts/pg.sh schema 2>/dev/null
}
fresh_db
if [ -z "${SKIP_SQL:-}" ]; then
  psql_su -d $BENCH_DB -f bench/masking.sql | grep -v '^$'
  psql_su -d $BENCH_DB -f bench/ingest.sql | grep -v '^$'
fi

echo "== feeder: $N_MESSAGES messages from fauxqs (fresh queue each run)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FAUXQS_PORT=$port FAUXQS_LOGGER=false NODE_OPTIONS="--require \"$ROOT/tools/loopback.cjs\"" \
  "$ROOT/tools/node_modules/.bin/fauxqs" >/dev/null 2>&1 &
fauxqs_pid=$!
trap 'kill $fauxqs_pid 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
python3 - "$N_MESSAGES" > "$RUN_DIR/bench_messages.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"user_id": f"u{i}", "app_version": f"{i % 10}.{i % 7}.{i % 13}", "device_type": "ios",
                      "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "locale": None, "device_id": f"{i:09d}"}))
PY
seed() { SQS_QUEUE_URL="$AWS_ENDPOINT_URL/000000000000/$1" ./target/release/feeder seed "$RUN_DIR/bench_messages.jsonl" >/dev/null 2>&1; echo "$AWS_ENDPOINT_URL/000000000000/$1"; }
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
rate() { python3 -c "import sys; n, s = float(sys.argv[1]), float(sys.argv[2]); print(round(n / s))" "$@"; }

cargo build --release -q -p integration --bin sqs_ceiling
seed ceiling >/dev/null; read -r n s < <(./target/release/sqs_ceiling "$AWS_ENDPOINT_URL" ceiling 8)
ceiling=$(rate "$n" "$s"); echo "emulator ceiling (8 Rust tasks, receive+delete, no DB): $n messages, $s s, $ceiling msg/s"
seed boto3 >/dev/null; read -r n s < <("$VENV_PY" bench/sqs_consumers.py ceiling boto3 8)
echo "  (the same with 8 boto3 threads: $n messages, $s s, $(rate "$n" "$s") msg/s)"

psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
seed baseline >/dev/null; read -r n s < <("$VENV_PY" bench/sqs_consumers.py baseline baseline "$BENCH_URL")
base=$(rate "$n" "$s"); echo "baseline consumer (boto3, 10/receive, INSERT+COMMIT per receive): $n messages, $s s, $base msg/s"

psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
q=$(seed feeder)
out=$(/usr/bin/time -o "$RUN_DIR/feeder_time.txt" -f 'RSS_KB %M' env DATABASE_URL="$BENCH_URL" SQS_QUEUE_URL="$q" \
      FEEDER_WAIT_SECONDS=1 ./target/release/feeder drain --batch-size 2000 --receivers 8 2>/dev/null)
feeder_n=$(echo "$out" | sed -n 's/.*received \([0-9]*\),.*/\1/p')
feeder_s=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) s, .*/\1/p')
rss_kb=$(sed -n 's/RSS_KB \([0-9]*\)/\1/p' "$RUN_DIR/feeder_time.txt")
# Like the consumers above, leave out the final empty 1 s long poll.
feeder_s=$(python3 -c "print(round(max(float('$feeder_s') - 1.0, 0.001), 3))")
feeder=$(rate "$feeder_n" "$feeder_s")
echo "feeder drain (8 receivers, batches of 2000): $feeder_n messages, $feeder_s s, $feeder msg/s, peak RSS $((rss_kb / 1024)) MiB"
rows=$(psql_su -d $BENCH_DB -Atc "SELECT count(*) FROM user_logins")
echo "feeder loaded $rows rows"
python3 -c "print(f'feeder / baseline = {$feeder / $base:.1f}x; feeder / emulator ceiling = {$feeder / $ceiling:.2f}')"
psql_su -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
