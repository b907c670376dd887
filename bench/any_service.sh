#!/usr/bin/env bash
# any_service.sh -- hscale with a service that is not its own: the SurgiCase
# FastAPI example (examples/surgicase, uvicorn, no /metrics), in one run:
#
#  1. the gateway's overhead on a real app: `hscale up -c
#     examples/surgicase/hscale.yaml` (3 instances) against nginx proxying
#     the very same 3 instances (upstream keep-alive, round robin), wrk on
#     /casefilter, rounds interleaved; req/s and p99 per round and the
#     median ratio hscale/nginx;
#  2. seconds from a CPU step to an added instance serving, with a 1 s
#     check interval (target < 5 s): two instances, target CPU 50 %
#     measured from /proc (the service exports nothing), CPU-bound load on
#     /reports/digest, time until a third instance is ready and registered;
#  3. the worker fleet (bench/queue_workers.sh, when present): first task
#     started after an enqueue at zero workers, and tasks lost or run twice.
#
#   bench/any_service.sh          D=6 ROUNDS=3 C=32
#
# Every process is started here and stopped by PID at exit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh                 # HSCALE (HSCALE_BIN), PY, free_port, ready_registered, median
D=${D:-6}
ROUNDS=${ROUNDS:-3}
C=${C:-32}
DIR=$(mktemp -d /tmp/any_service.XXXXXX)
PIDS=()

command -v wrk >/dev/null || { echo "any_service: wrk not found (scripts/deps.sh)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "any_service: nginx not found (scripts/deps.sh)" >&2; exit 1; }
[ -x "$HSCALE" ] || { echo "any_service: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }
"$PY" -c 'import fastapi, uvicorn' 2>/dev/null ||
  { echo "any_service: $PY lacks fastapi/uvicorn (scripts/deps.sh)" >&2; exit 1; }

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT
now() { date +%s.%N; }
wait_registered() {  # control service n timeout_s
  local deadline=$(( $(date +%s) + $4 ))
  while [ "$(ready_registered "$1" "$2")" -lt "$3" ]; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "any_service: $2 never reached $3 instances" >&2; return 1; }
    sleep 0.1
  done
}
# wrk -> "req/s p99_ms"
wrk_run() {
  wrk -t2 -c"$C" -d"${D}s" --latency "$1" 2>/dev/null | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) }
               else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } p99 = v }
    END { printf "%s %s\n", rps, p99 }'
}

# ---- 1. gateway overhead on the FastAPI service ---------------------------
P_GW=$(free_port); P_AD=$(free_port); P_CT=$(free_port); P_NG=$(free_port)
"$HSCALE" up -c examples/surgicase/hscale.yaml --data "$DIR/up1" --listen "127.0.0.1:$P_GW" \
  --admin "127.0.0.1:$P_AD" --control "127.0.0.1:$P_CT" > "$DIR/up1.log" 2>&1 &
PIDS+=($!)
UP1=$!
wait_registered "$P_CT" api 3 90 || { tail -20 "$DIR/up1.log"; exit 1; }
ADDRS=$(curl -sf "http://127.0.0.1:$P_CT/api/v1/services/api/instances" |
        "$PY" -c 'import json,sys; print(" ".join(i["address"] for i in json.load(sys.stdin)["instances"]))')
{
  echo "worker_processes 1; pid $DIR/nginx.pid; error_log $DIR/nginx.err warn;"
  echo "events { worker_connections 4096; }"
  echo "http { access_log off; upstream api {"
  for a in $ADDRS; do echo "  server $a;"; done
  echo "  keepalive 64; }"
  echo "  server { listen 127.0.0.1:$P_NG; location / { proxy_pass http://api;"
  echo "    proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
} > "$DIR/nginx.conf"
nginx -c "$DIR/nginx.conf" -p "$DIR" || exit 1
PATH_Q="/casefilter?user_id=3&status=10"
wrk -t2 -c8 -d2s "http://127.0.0.1:$P_GW$PATH_Q" >/dev/null 2>&1   # warm both paths
wrk -t2 -c8 -d2s "http://127.0.0.1:$P_NG$PATH_Q" >/dev/null 2>&1
echo "== 1. FastAPI (3 uvicorn instances) behind hscale up vs behind nginx: $C connections, ${D}s x $ROUNDS rounds"
printf "%-6s %12s %10s %12s %10s %8s\n" round "hscale rps" "p99 ms" "nginx rps" "p99 ms" ratio
: > "$DIR/ratios"
for r in $(seq "$ROUNDS"); do
  read -r HR HP < <(wrk_run "http://127.0.0.1:$P_GW$PATH_Q")
  read -r NR NP < <(wrk_run "http://127.0.0.1:$P_NG$PATH_Q")
  RATIO=$(awk -v h="$HR" -v n="$NR" 'BEGIN { printf "%.2f", (n > 0) ? h / n : 0 }')
  echo "$RATIO" >> "$DIR/ratios"
  printf "%-6s %12s %10s %12s %10s %8s\n" "$r" "$HR" "$HP" "$NR" "$NP" "$RATIO"
done
echo "median hscale/nginx req/s: $(median < "$DIR/ratios")"
kill "$(cat "$DIR/nginx.pid")" 2>/dev/null; rm -f "$DIR/nginx.pid"
kill "$UP1" 2>/dev/null; wait "$UP1" 2>/dev/null

# ---- 2. CPU step to an added instance serving -----------------------------
P_GW=$(free_port); P_AD=$(free_port); P_CT=$(free_port)
cat > "$DIR/step.yaml" <<EOF
services:
  - name: api
    command: "/usr/bin/python3 -m uvicorn main:app --host {host} --port {port} --no-access-log"
    workdir: examples/surgicase
    env: ["INSTANCE_ID={id}"]
    ready_path: /health/ready
    instances: 2
    check_interval: 1s
    health: {interval: 1s, timeout: 500ms}
    autoscaling:
      check_interval: 1s
      min_instances: 2
      max_instances: 4
      warmup: 1s
      scale_out_cooldown: 0s
      target: {cpu: 50, memory: 0}
EOF
"$HSCALE" up -c "$DIR/step.yaml" --data "$DIR/up2" --listen "127.0.0.1:$P_GW" \
  --admin "127.0.0.1:$P_AD" --control "127.0.0.1:$P_CT" > "$DIR/up2.log" 2>&1 &
PIDS+=($!)
UP2=$!
wait_registered "$P_CT" api 2 90 || { tail -20 "$DIR/up2.log"; exit 1; }
sleep 3   # a few idle samples: the step starts from a measured baseline
echo
echo "== 2. CPU step: 2 instances, target CPU 50 % from /proc, 1 s checks"
T0=$(now)
"$HSCALE" bench "http://127.0.0.1:$P_GW/reports/digest?ms=40" -c 8 -t 2 -d 25s --timeout 10s -q \
  > "$DIR/step_bench.log" 2>&1 &
PIDS+=($!)
LOAD=$!
if wait_registered "$P_CT" api 3 25; then
  T1=$(now)
  awk -v a="$T0" -v b="$T1" 'BEGIN { printf "seconds from CPU step to a third instance serving: %.2f (target < 5)\n", b - a }'
else
  echo "seconds from CPU step to a third instance serving: none within 25 s"
fi
curl -sf "http://127.0.0.1:$P_CT/api/v1/services/api/scaling/metrics" > "$DIR/metrics.json"
"$PY" - "$DIR/metrics.json" <<'PY'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
for i in m["instances"]:
    print("  %s: cpu %s %%, memory %s %% (source: %s)" % (i["id"], i.get("cpu_percent"),
          i.get("memory_percent"), i.get("cpu_source", "?")))
PY
kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null
kill "$UP2" 2>/dev/null; wait "$UP2" 2>/dev/null

# ---- 3. workers on a queue ------------------------------------------------
if [ -f bench/queue_workers.sh ]; then
  echo
  echo "== 3. Celery workers on a Redis queue"
  HSCALE_BIN="$HSCALE" bash bench/queue_workers.sh
fi
