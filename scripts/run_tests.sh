#!/usr/bin/env bash
# Runs every test of `make test`: cppcheck, the C unit tests (Criterion,
# built with ASan+UBSan) and the end-to-end suite (pytest against the
# sanitized binary). Prints one closing line "tests: N passed, N failed"
# and exits non-zero when anything failed; pytest lists the 12 slowest
# tests, so a change that makes the suite slower shows in the CI log.
#
# usage: run_tests.sh HSCALE_BIN UNIT_BIN...
set -uo pipefail
hscale_bin=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/scripts/lsan.supp:print_suppressions=0}

passed=0; failed=0; failures=()

echo "== lint (cppcheck)"
if make --no-print-directory lint; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); failures+=("cppcheck")
fi

echo "== unit tests"
for t in "$@"; do
  out=$("$t" --jobs 2 2>&1); rc=$?
  echo "$out" | tail -n 3
  line=$(echo "$out" | grep 'Synthesis:' | tail -n1)
  p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  passed=$((passed + ${p:-0}))
  bad=$(( ${f:-0} + ${c:-0} ))
  if [ $rc -ne 0 ] && [ $bad -eq 0 ]; then bad=1; fi
  if [ $bad -gt 0 ]; then
    failed=$((failed + bad)); failures+=("$(basename "$t")")
    echo "$out" | grep -E '\[FAIL\]|CRASH|ERROR|runtime error' | head -n 40
  fi
done

echo "== end-to-end tests"
junit=$(mktemp /tmp/hscale-junit.XXXXXX.xml)
HSCALE_BIN="$hscale_bin" /usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=12 \
  --junitxml="$junit" tests/e2e; rc=$?
if [ -s "$junit" ]; then
  read -r ep ef < <(/usr/bin/python3 - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
PY
)
  passed=$((passed + ep)); failed=$((failed + ef))
fi
rm -f "$junit"
if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then
  failures+=("e2e (pytest exit $rc)")
  [ "${ef:-0}" -eq 0 ] && failed=$((failed + 1))
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
