#!/usr/bin/env bash
# The ingest path on Citus against single-node PostgreSQL, on this machine: the same file of
# N_LINES messages (default 200,000) loaded with `feeder load` into
#   1. single-node PostgreSQL 15 (the baseline),
#   2. a Citus cluster through its coordinator,
#   3. the same cluster through a worker (metadata is synced, so workers route writes),
#   4. two loaders at once, one on the coordinator and one on a worker.
# Prints messages/s and the ratio to the baseline. Not pass/fail (make bench-citus; CI does not
# run it). Needs Citus installed for PostgreSQL 15 (scripts/citus.sh available).
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
bash scripts/citus.sh available || exit 0
N_LINES="${N_LINES:-200000}"
bash scripts/citus.sh start >/dev/null
cargo build -q --release -p feeder
file="$RUN_DIR/citus_bench.jsonl"
python3 - "$N_LINES" > "$file" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"user_id": f"u{i}", "app_version": "2.3.0", "device_type": "ios",
                      "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "locale": "RU",
                      "device_id": f"{i % 1000:03d}-{i // 1000 % 100:02d}-{i % 10000:04d}"}))
PY
echo "# Citus vs single-node PostgreSQL, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); all nodes on it"
echo "# $N_LINES messages, feeder load, batches of ${FEEDER_BATCH_SIZE:-its default}"
# The messages/s figure of a feeder summary line.
rate() { grep -o '[0-9.]* messages/s' | tail -1 | cut -d' ' -f1; }
load() { DATABASE_URL="$1" ./target/release/feeder load "$2" 2>/dev/null | rate; }
db=citus_bench_$$
psql_su -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
PGDATABASE=$db bash scripts/pg.sh schema 2>/dev/null
base=$(load "postgres://postgres:postgres@127.0.0.1:$PG_PORT/$db" "$file")
psql_su -c "DROP DATABASE $db WITH (FORCE)"
printf '%-46s %10s msg/s  %5s\n' "single-node PostgreSQL 15 (baseline)" "$base" "1.00"
for via in coordinator worker; do
  bash scripts/citus.sh schema "$db" >/dev/null 2>&1
  port=5441; [ "$via" = worker ] && port=5442
  r=$(load "postgres://postgres:postgres@127.0.0.1:$port/$db" "$file")
  printf '%-46s %10s msg/s  %5.2f\n' "Citus, 2 workers, through the $via" "$r" "$(echo "$r / $base" | bc -l)"
  bash scripts/citus.sh drop "$db" >/dev/null
done
bash scripts/citus.sh schema "$db" >/dev/null 2>&1
half="$RUN_DIR/citus_bench_half"
split -n l/2 -d "$file" "$half."
start=$(date +%s.%N)
DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5441/$db?sslmode=disable" ./target/release/feeder load "$half.00" >/dev/null 2>&1 &
DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5442/$db?sslmode=disable" ./target/release/feeder load "$half.01" >/dev/null 2>&1
wait
secs=$(echo "$(date +%s.%N) - $start" | bc -l)
r=$(echo "$N_LINES / $secs" | bc -l)
printf '%-46s %10.0f msg/s  %5.2f\n' "Citus, two loaders (coordinator + worker)" "$r" "$(echo "$r / $base" | bc -l)"
bash scripts/citus.sh drop "$db" >/dev/null
rm -f "$file" "$half".*
