#!/usr/bin/env bash
# Runs the fuzz targets one after the other, each for a set time, and prints
# per target the executions and whether it crashed.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS (or FUZZ_SECONDS) is the time per target, 60 by default; without
# targets, all of them run. Each runs as one process (one core). Seeds are
# written into corpus/<target>/ first, and the corpus grows from run to
# run. Crash inputs land in artifacts/<target>/, full logs in
# target/fuzz-logs/. FUZZ_ARGS adds libFuzzer options.
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-${FUZZ_SECONDS:-60}}"
shift || true
case "$secs" in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building the targets"
cargo +nightly fuzz build
echo "== writing seeds"
cargo +nightly run --quiet --release --example make_seeds -- corpus

mkdir -p target/fuzz-logs
summary=()
failed=0
for t in "${targets[@]}"; do
  echo "== $t: ${secs} s"
  log="target/fuzz-logs/$t.log"
  mkdir -p "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  status=0
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
  cargo +nightly fuzz run "$t" -- \
    -max_total_time="$secs" -timeout=30 -print_final_stats=1 ${FUZZ_ARGS:-} \
    >"$log" 2>&1 || status=$?
  after=$(find "artifacts/$t" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  if [ "$status" -eq 0 ] && [ "$after" -eq "$before" ]; then
    result="no crash"
  else
    result="CRASH (exit $status, $((after - before)) new input(s) in artifacts/$t; see $log)"
    failed=1
  fi
  line="$(printf '%-16s %6s s %14s execs  %s' "$t" "${took:-?}" "${execs:-?}" "$result")"
  echo "$line"
  summary+=("$line")
done

echo
echo "== summary (target, seconds, executions, result)"
printf '%s\n' "${summary[@]}"
exit "$failed"
