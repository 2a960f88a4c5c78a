#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer + AddressSanitizer) of what reads untrusted
# input in pg_mask_core: token decoding (`token`) and login validation (`login`, with
# serde_json's own reading as the oracle). Runs each target for FUZZ_SECONDS (default 60); a
# crash stops with the input saved under pg_mask_core/fuzz/artifacts/. Not part of `make test`,
# which runs the proptest versions (pg_mask_core/tests/fuzz.rs).
#   scripts/fuzz.sh [target ...]
source "$(dirname "$0")/lib.sh"
CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token login)

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (a few minutes)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
cd "$ROOT/pg_mask_core"
# The sample messages seed the login corpus, so the fuzzer starts from real events.
corpus=fuzz/corpus/login
if [ ! -d "$corpus" ]; then
  mkdir -p "$corpus"
  n=0
  while IFS= read -r line; do n=$((n + 1)); printf '%s' "$line" > "$corpus/sample-$n"; done < "$ROOT/data/sample_messages.jsonl"
fi
# AddressSanitizer is a -Z flag; RUSTC_BOOTSTRAP lets the stable toolchain (the only one these
# machines have) accept it.
export RUSTC_BOOTSTRAP=1
mkdir -p "$RUN_DIR"
for t in "${targets[@]}"; do
  out="$RUN_DIR/fuzz-$t.log"
  log "fuzzing $t for $seconds s (log: $out)"
  status=0
  cargo fuzz run -O "$t" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$out" 2>&1 || status=$?
  grep -E '^(Done|stat::peak_rss_mb)|panicked at|SUMMARY|Test unit written' "$out" || true
  [ "$status" -eq 0 ] || die "fuzz target $t failed; the input is under pg_mask_core/fuzz/artifacts/$t/"
done
log "no failures"
