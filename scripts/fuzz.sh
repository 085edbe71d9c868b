#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for SECONDS each (default 10), one
# after the other, on the stable toolchain without a sanitizer. New corpus
# entries go to a scratch directory, so the committed seeds stay as they are.
# Prints one summary line per target; exits non-zero on the first crash (the
# crashing input is left under fuzz/artifacts/<target>/).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
shift || true
scripts/setup-fuzz.sh >/dev/null
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
fi
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
(cd fuzz && cargo fuzz build -s none) >"$SCRATCH/build.log" 2>&1 || { cat "$SCRATCH/build.log" >&2; exit 1; }
for t in "${TARGETS[@]}"; do
  mkdir -p "$SCRATCH/$t"
  log="$SCRATCH/$t.log"
  if ! (cd fuzz && cargo fuzz run -s none "$t" "$SCRATCH/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -print_final_stats=1) >"$log" 2>&1; then
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 >&2
    echo "fuzz $t: CRASH (see fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  done_line="$(grep -E '^#[0-9]+.*DONE' "$log" | tail -1)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  secs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  echo "fuzz $t: ${runs:-?} runs in ${SECS}s (${secs:-?} exec/s), $(sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [0-9]+\/[0-9a-zA-Z]+).*/\1/' <<<"$done_line"), 0 crashes"
done
