#!/usr/bin/env bash
# pick_on_fastapi.sh -- which pool algorithm gives the lower tail on a real
# FastAPI service: the SurgiCase example (examples/surgicase, endpoints are
# sync `def`: FastAPI runs them in a thread pool under the GIL) and the same
# app with every endpoint made `async def` (run on the event loop), each
# behind `hscale up` with 3 uvicorn instances, for each algorithm in ALGOS.
# wrk -t2 -cC -dD on /casefilter; rounds interleave the algorithms so they
# share the machine's state; req/s and p50/p99 per run, then the median p99
# per app and algorithm.
#
#   bench/pick_on_fastapi.sh      D=6 ROUNDS=3 C=32 ALGOS="least_request round_robin p2c"
#
# Bounded: (apps x algorithms x rounds) runs of D s plus ~5 s of start-up
# each. Every process is started here and stopped by PID at exit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh                 # HSCALE (HSCALE_BIN), PY, free_port, ready_registered, median
D=${D:-6}
ROUNDS=${ROUNDS:-3}
C=${C:-32}
ALGOS=${ALGOS:-least_request round_robin p2c}
APPS=${APPS:-sync async}
DIR=$(mktemp -d /tmp/pick_on_fastapi.XXXXXX)
UP=

command -v wrk >/dev/null || { echo "pick_on_fastapi: wrk not found (scripts/deps.sh)" >&2; exit 1; }
[ -x "$HSCALE" ] || { echo "pick_on_fastapi: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }
"$PY" -c 'import fastapi, uvicorn' 2>/dev/null ||
  { echo "pick_on_fastapi: $PY lacks fastapi/uvicorn (scripts/deps.sh)" >&2; exit 1; }

stop_up() { [ -n "$UP" ] && { kill "$UP" 2>/dev/null; wait "$UP" 2>/dev/null; }; UP=; }
cleanup() { stop_up; rm -rf "$DIR"; }
trap cleanup EXIT
# wrk -> "req/s p50_ms p99_ms"
wrk_run() {
  wrk -t2 -c"$C" -d"${D}s" --latency "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) { sub(/us/, "", v); return v / 1000 }
                     if (v ~ /ms$/) { sub(/ms/, "", v); return v + 0 }
                     if (v ~ /s$/) { sub(/s/, "", v); return v * 1000 } return v }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    END { printf "%s %s %s\n", rps, p50, p99 }'
}

# The async twin: the same app with `def` endpoints made `async def`.
mkdir -p "$DIR/async"
sed 's/^def /async def /' examples/surgicase/main.py > "$DIR/async/main.py"

# one run: app algo -> prints "rps p50 p99"
one_run() {
  local app=$1 algo=$2 wd=examples/surgicase
  [ "$app" = async ] && wd="$DIR/async"
  sed -e "s|^      sticky_cookie: SURGICASE_LB|      algorithm: $algo\n      sticky_cookie: SURGICASE_LB|" \
      -e "s|workdir: examples/surgicase|workdir: $wd|" examples/surgicase/hscale.yaml > "$DIR/h.yaml"
  grep -q "algorithm: $algo" "$DIR/h.yaml" || { echo "pick_on_fastapi: could not set the algorithm" >&2; exit 1; }
  local gw ad ct
  gw=$(free_port); ad=$(free_port); ct=$(free_port)
  rm -rf "$DIR/up"
  "$HSCALE" up -c "$DIR/h.yaml" --data "$DIR/up" --listen "127.0.0.1:$gw" \
    --admin "127.0.0.1:$ad" --control "127.0.0.1:$ct" > "$DIR/up.log" 2>&1 &
  UP=$!
  local deadline=$(( $(date +%s) + 90 ))
  while [ "$(ready_registered "$ct" api)" -lt 3 ]; do
    [ "$(date +%s)" -ge "$deadline" ] && { tail -20 "$DIR/up.log" >&2; exit 1; }
    sleep 0.2
  done
  local url="http://127.0.0.1:$gw/casefilter?user_id=3&status=10"
  wrk -t2 -c8 -d2s "$url" >/dev/null 2>&1    # warm: connections, EWMA, p99 window
  wrk_run "$url"
  stop_up
}

echo "== pool algorithm on FastAPI (3 uvicorn instances behind hscale up): $C connections, ${D}s, $ROUNDS rounds"
echo "   load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-6s %-6s %-14s %10s %8s %8s\n" round app algorithm "req/s" "p50 ms" "p99 ms"
for r in $(seq "$ROUNDS"); do
  for app in $APPS; do
    for algo in $ALGOS; do
      one_run "$app" "$algo" > "$DIR/run"
      read -r RPS P50 P99 < "$DIR/run"
      printf "%-6s %-6s %-14s %10s %8s %8s\n" "$r" "$app" "$algo" "$RPS" "$P50" "$P99"
      echo "$P99" >> "$DIR/p99.$app.$algo"
      echo "$RPS" >> "$DIR/rps.$app.$algo"
    done
  done
done
echo "   load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median over $ROUNDS rounds:"
for app in $APPS; do
  for algo in $ALGOS; do
    printf "  %-6s %-14s req/s %8s  p99 %7s ms\n" "$app" "$algo" \
      "$(median < "$DIR/rps.$app.$algo")" "$(median < "$DIR/p99.$app.$algo")"
  done
done
