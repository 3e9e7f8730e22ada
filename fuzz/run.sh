#!/usr/bin/env bash
# Runs every fuzz target for a while (default 600 s each, two at a time), then minimises each
# corpus and prints libFuzzer's final figures. Needs the nightly toolchain and cargo-fuzz:
#
#   rustup toolchain install nightly && cargo install cargo-fuzz
#   fuzz/run.sh            # 10 minutes per target
#   fuzz/run.sh 60         # 1 minute per target
#
# A crash stops nothing else: its input is in fuzz/artifacts/<target>/ and the script exits 1.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-600}"
PARALLEL="${FUZZ_PARALLEL:-2}"
TARGETS=(jwt csrf_token api_key cookie etag forwarded json_bodies)
mkdir -p logs
cargo +nightly fuzz build -O >/dev/null || exit 1

run_one() {
  local t="$1"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -print_final_stats=1 \
    >"logs/$t.log" 2>&1
  echo $? >"logs/$t.status"
}

running=0
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
printf '| target | result | runs | exec/s | coverage (edges) | corpus files |\n|---|---|---|---|---|---|\n'
for t in "${TARGETS[@]}"; do
  status=$(cat "logs/$t.status" 2>/dev/null || echo 1)
  # Keep the committed corpus small: only inputs that add coverage.
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >"logs/$t.cmin.log" 2>&1
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*')
  files=$(find "corpus/$t" -type f | wc -l)
  if [ "$status" = 0 ]; then result="no crash (${SECONDS_PER_TARGET} s)"; else result="FAILED (exit $status, see fuzz/logs/$t.log)"; failed=1; fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$result" "${runs:-?}" "${speed:-?}" "${cov:-?}" "$files"
done
exit "$failed"
