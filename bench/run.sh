#!/usr/bin/env bash
# Every benchmark, each against a baseline measured in the same run; prints ratios.
# Not a pass/fail test (`make bench`; CI does not run it). Synthetic data only; a scratch
# database pg_mask_bench is created and dropped.
#   1. masking.sql  mask_pii vs pgcrypto per call; COPY with vs without mask_columns
#   2. ingest.sql   1M raw messages through login_ingest vs plain COPY of the flattened rows
#   3. feeder       20k messages drained by the feeder at its defaults and tuned, vs the
#                   classic boto3 consumer, beside the emulator's own receive+delete ceiling;
#                   the feeder's peak RSS; how long a drain of 100 messages runs on after its
#                   last commit; feeder load of a 1M-line file (peak RSS)
# BENCH_ONLY=feeder runs part 3 alone (no SQL benchmarks).
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
if [ -z "${SKIP_SQL:-}" ] && [ "${BENCH_ONLY:-}" != feeder ]; then
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
# CPU accounting, to show what bounds the feeder here: the emulator (one Node process), the
# client and PostgreSQL share the machine's cores. Jiffies (1/100 s) of the emulator, and of
# the whole machine (user+nice+system+irq+softirq from /proc/stat); the client's from time(1).
fauxqs_cpu() { awk '{print $14 + $15}' "/proc/$fauxqs_pid/stat"; }
machine_cpu() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# EMULATOR_JIFFIES MACHINE_JIFFIES SECONDS CLIENT_CPU_SECONDS: writes the CPU note (seconds of
# CPU by the emulator, the client, and PostgreSQL with everything else) to $RUN_DIR/cpu_note
# and the emulator's and the machine's CPU seconds to $RUN_DIR/cpu_emulator and cpu_total.
cpu_note() {
  python3 - "$@" "$(nproc)" "$RUN_DIR/cpu_total" "$RUN_DIR/cpu_emulator" > "$RUN_DIR/cpu_note" <<'PY'
import sys
e, m, s, c, n = (float(x) for x in sys.argv[1:6])
e, m = e / 100, m / 100
open(sys.argv[6], "w").write(f"{m}")
open(sys.argv[7], "w").write(f"{e}")
print(f"CPU s: emulator {e:.2f} + client {c:.2f} + PostgreSQL and the rest {max(m - e - c, 0):.2f}"
      f" = {m:.2f}, {m / s:.1f} of {n:.0f} cores busy")
PY
}
client_cpu() { awk '{print $1 + $2}' "$RUN_DIR/client_time.txt"; }
ceiling_run() {  # TASKS: prints "<messages> <seconds>"; the CPU note goes to $RUN_DIR/cpu_note
  seed "ceiling$RANDOM" > "$RUN_DIR/ceiling_queue"
  local e0 m0 out
  e0=$(fauxqs_cpu); m0=$(machine_cpu)
  out=$(/usr/bin/time -o "$RUN_DIR/client_time.txt" -f '%U %S' \
        ./target/release/sqs_ceiling "$AWS_ENDPOINT_URL" "$(basename "$(cat "$RUN_DIR/ceiling_queue")")" "$1")
  cpu_note $(($(fauxqs_cpu) - e0)) $(($(machine_cpu) - m0)) "$(echo "$out" | cut -d' ' -f2)" "$(client_cpu)"
  echo "$out"
}
for tasks in 8 16 32; do
  read -r n s < <(ceiling_run "$tasks")
  echo "  emulator, $tasks Rust tasks (receive+delete, no DB): $n messages, $s s, $(rate "$n" "$s") msg/s"
done
seed boto3 >/dev/null; read -r n s < <("$VENV_PY" bench/sqs_consumers.py ceiling boto3 8)
echo "  (the same with 8 boto3 threads: $n messages, $s s, $(rate "$n" "$s") msg/s)"

psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
seed baseline >/dev/null; read -r n s < <("$VENV_PY" bench/sqs_consumers.py baseline baseline "$BENCH_URL")
base=$(rate "$n" "$s"); echo "baseline consumer (boto3, 10/receive, INSERT+COMMIT per receive): $n messages, $s s, $base msg/s"

# One drain of a fresh queue: prints "<messages> <seconds> <peak RSS KiB>" (a drain ends as soon
# as a receive finds the queue empty: no final long poll to leave out).
drain_run() {
  psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
  local q out n s
  q=$(seed "$1"); shift
  local e0 m0
  e0=$(fauxqs_cpu); m0=$(machine_cpu)
  out=$(/usr/bin/time -o "$RUN_DIR/client_time.txt" -f '%U %S %M' env DATABASE_URL="$BENCH_URL" SQS_QUEUE_URL="$q" \
        FEEDER_WAIT_SECONDS=1 ./target/release/feeder drain "$@" 2>/dev/null)
  n=$(echo "$out" | sed -n 's/.*received \([0-9]*\),.*/\1/p')
  s=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) s, .*/\1/p')
  cpu_note $(($(fauxqs_cpu) - e0)) $(($(machine_cpu) - m0)) "$s" "$(client_cpu)"
  echo "$n $s $(awk '{print $3}' "$RUN_DIR/client_time.txt")"
}
# Interleaved rounds of the ceiling (16 tasks), the defaults and the tuned flags. This machine's
# timings are noisy (the emulator alone varies by half from one run to the next), so each round
# compares runs made side by side: the ratio reported is the median of the rounds' own ratios,
# with their range, and the rates are medians too.
ROUNDS="${ROUNDS:-5}"
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
spread() { python3 -c "import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.2f} (rounds {min(v):.2f}-{max(v):.2f})')" "$@"; }
c_rates=() d_rates=() t_rates=() d_ratios=() t_ratios=() e_ratios=() d_rss=0 t_rss=0
for round in $(seq "$ROUNDS"); do
  read -r n s < <(ceiling_run 16); c_rates+=("$(rate "$n" "$s")"); c_cpu=$(cat "$RUN_DIR/cpu_note"); c_emu=$(cat "$RUN_DIR/cpu_emulator")
  read -r n s rss < <(drain_run "defaults$round"); d_rates+=("$(rate "$n" "$s")"); d_rss=$((rss > d_rss ? rss : d_rss)); d_cpu=$(cat "$RUN_DIR/cpu_note")
  # The emulator (one Node thread) is busy through both runs: the CPU it spends per message on
  # each consumer bounds that consumer's rate, so this ratio caps defaults / ceiling.
  e_ratios+=("$(python3 -c "print($c_emu / $(cat "$RUN_DIR/cpu_emulator"))")")
  # "Tuned": twice the receivers and batches, the hand-tuning a user might try.
  read -r n s rss < <(drain_run "tuned$round" --batch-size 5000 --receivers 16); t_rates+=("$(rate "$n" "$s")"); t_rss=$((rss > t_rss ? rss : t_rss))
  d_ratios+=("$(python3 -c "print(${d_rates[-1]} / ${c_rates[-1]})")"); t_ratios+=("$(python3 -c "print(${t_rates[-1]} / ${c_rates[-1]})")")
  echo "  round $round: ceiling ${c_rates[-1]}, defaults ${d_rates[-1]}, tuned ${t_rates[-1]} msg/s"
  echo "    ceiling $c_cpu"
  echo "    defaults $d_cpu"
done
ceiling=$(median "${c_rates[@]}"); defaults=$(median "${d_rates[@]}"); feeder=$(median "${t_rates[@]}")
echo "emulator ceiling (16 Rust tasks, receive+delete, no DB), median: $ceiling msg/s"
echo "feeder drain at its defaults (at most 8 receivers, batches of at most 2000), median: $defaults msg/s, peak RSS $((d_rss / 1024)) MiB"
echo "feeder drain tuned (16 receivers, batches of 5000), median: $feeder msg/s, peak RSS $((t_rss / 1024)) MiB"
rows=$(psql_su -d $BENCH_DB -Atc "SELECT count(*) FROM user_logins")
echo "feeder loaded $rows rows (last run)"
echo "emulator CPU for the same $N_MESSAGES messages, ceiling / defaults = $(spread "${e_ratios[@]}") (what caps defaults / ceiling)"
echo "defaults / ceiling = $(spread "${d_ratios[@]}"); tuned / ceiling = $(spread "${t_ratios[@]}"); defaults / baseline = $(python3 -c "print(f'{$defaults / $base:.1f}')")x"

# A drain of 100 messages: how long the process runs on after its last commit (the debug log
# line of each commit carries a timestamp; the exit is taken right after the process returns).
psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
head -100 "$RUN_DIR/bench_messages.jsonl" > "$RUN_DIR/bench_100.jsonl"
q="$AWS_ENDPOINT_URL/000000000000/hundred"
SQS_QUEUE_URL="$q" ./target/release/feeder seed "$RUN_DIR/bench_100.jsonl" >/dev/null 2>&1
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" SQS_QUEUE_URL="$q" FEEDER_LOG=feeder=debug FEEDER_LOG_FORMAT=json \
  ./target/release/feeder drain > /dev/null 2> "$RUN_DIR/drain100.log"
end=$(date +%s.%N)
python3 - "$RUN_DIR/drain100.log" "$start" "$end" <<'PY'
import json, sys, datetime
commits = [json.loads(l)["timestamp"] for l in open(sys.argv[1]) if '"batch committed"' in l]
last = datetime.datetime.fromisoformat(commits[-1].replace("Z", "+00:00")).timestamp()
start, end = float(sys.argv[2]), float(sys.argv[3])
print(f"feeder drain of 100 messages: {end - start:.2f} s in all, exit {end - last:.3f} s after the last commit ({len(commits)} commits)")
PY

# feeder load streams: 1M lines (about 140 MB), peak RSS.
python3 - 1000000 > "$RUN_DIR/bench_load.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"user_id": f"u{i}", "app_version": "1.2.3", "device_type": "android",
                      "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "locale": "en", "device_id": f"{i:09d}"}))
PY
psql_su -d $BENCH_DB -c "TRUNCATE user_logins, user_login_rejects"
size=$(du -m "$RUN_DIR/bench_load.jsonl" | cut -f1)
out=$(/usr/bin/time -o "$RUN_DIR/feeder_time.txt" -f 'RSS_KB %M' env DATABASE_URL="$BENCH_URL" \
      ./target/release/feeder load "$RUN_DIR/bench_load.jsonl" 2>/dev/null)
rss_kb=$(sed -n 's/RSS_KB \([0-9]*\)/\1/p' "$RUN_DIR/feeder_time.txt")
echo "feeder load of 1M lines ($size MB): $(echo "$out" | sed -n 's/.*, \([0-9.]*\) s, \([0-9]*\) messages.*/\1 s, \2 lines\/s/p'), peak RSS $((rss_kb / 1024)) MiB"
rm -f "$RUN_DIR/bench_load.jsonl"
psql_su -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
