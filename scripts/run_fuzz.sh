#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time and reports executions and
# findings. Corpora persist under tests/fuzz/corpus-<target>/ (ignored by
# git), seeded from tests/fuzz/seeds/<target>/.
# usage: run_fuzz.sh SECONDS TARGET_BIN...
set -uo pipefail
secs=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$@"; do
  name=$(basename "$bin")
  corpus="$here/tests/fuzz/corpus-$name"
  seeds="$here/tests/fuzz/seeds/$name"
  mkdir -p "$corpus"
  log=$(mktemp)
  args=("$corpus")
  [ -d "$seeds" ] && args+=("$seeds")
  # findings go next to the binary (under the make BUILD directory)
  # -timeout: a unit that hangs (max_total_time is only checked between
  # units) is reported as a finding instead of stalling the run
  "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 -artifact_prefix="$(cd "$(dirname "$bin")" && pwd)/$name-" \
    "${args[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  if [ $rc -ne 0 ]; then
    status=1
    echo "fuzz $name: FINDING after ${execs:-?} executions"
    grep -E 'ERROR|SUMMARY|artifact' "$log" | head -n 20
  else
    echo "fuzz $name: ${execs:-?} executions in ${secs}s, no findings"
  fi
  rm -f "$log"
done
exit $status
