#!/usr/bin/env bash
# cache_failover.sh -- `hscale app` with its Redis cache under load while
# the Redis master is killed (kill -9), side by side:
#   sentinel  the cache finds and follows the master through 3 redis-sentinel
#             (down-after 500 ms), the way issue 23 asks;
#   fixed     the same app pointed at the master's address (cache.redis), as
#             a client without Sentinel is: it can only fail open.
# Each variant gets its own fresh Redis master + replica + 3 sentinels and a
# SQLite store of 100 users / 10,000 cases. Load is `hscale bench` on
# /casefilter for a random user, in three bounded phases: before (BEFORE),
# the failover window right after the kill (DURING), and after (AFTER).
# Printed per variant and phase: req/s, p99, errors; the time from the kill
# until /health names the new master (sentinel only), and the cache hit ratio
# after. Ratios: after/before req/s per variant, and sentinel/fixed after.
#
#   bench/cache_failover.sh        C=20 BEFORE=4s DURING=3s AFTER=5s WORKERS=1
#
# Targets: 0 errors in every phase for both; the sentinel variant follows the
# new master within ~2 s of the kill (down-after 500 ms + election) and its
# req/s after the failover is back to its req/s before (the fixed one stays
# on the database). Everything started here is stopped by PID at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSCALE=${HSCALE_BIN:-$ROOT/build/hscale}
PY=${PYTHON:-/usr/bin/python3}
C=${C:-20}
BEFORE=${BEFORE:-4s}
DURING=${DURING:-3s}
AFTER=${AFTER:-5s}
WORKERS=${WORKERS:-1}

for t in redis-server redis-sentinel redis-cli curl; do
  command -v $t >/dev/null || { echo "cache_failover: $t not found (run scripts/deps.sh)" >&2; exit 1; }
done
[ -x "$HSCALE" ] || { echo "cache_failover: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/cache_failover.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
until_ok() {   # until_ok SECONDS CMD...: polls CMD every 50 ms, fails after SECONDS
  local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

"$HSCALE" app seed --db "sqlite:$TMP/app.db" --users 100 --cases 10000 --seed 1 >/dev/null

# A master, a replica and three sentinels; sets MASTER_PID, PM, PR, SPORTS.
redis_group() {
  local d=$TMP/$1; mkdir -p "$d"
  PM=$(port); PR=$(port)
  redis-server --port "$PM" --bind 127.0.0.1 --save "" --appendonly no --dir "$d" \
    > "$d/a.log" 2>&1 &
  MASTER_PID=$!; PIDS+=($!)
  redis-server --port "$PR" --bind 127.0.0.1 --save "" --appendonly no --dir "$d" \
    --replicaof 127.0.0.1 "$PM" > "$d/b.log" 2>&1 &
  PIDS+=($!)
  until_ok 10 sh -c "redis-cli -p $PR INFO replication | grep -q master_link_status:up"
  SPORTS=()
  for i in 0 1 2; do
    local sp; sp=$(port); SPORTS+=("$sp")
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 500\nsentinel failover-timeout mymaster 5000\n' \
      "$sp" "$d" "$PM" > "$d/s$i.conf"
    redis-sentinel "$d/s$i.conf" > "$d/s$i.log" 2>&1 &
    PIDS+=($!)
  done
  for sp in "${SPORTS[@]}"; do
    until_ok 20 sh -c "redis-cli -p $sp SENTINEL replicas mymaster | grep -q 127.0.0.1 &&
                       [ \$(redis-cli -p $sp SENTINEL sentinels mymaster | grep -c '^name') -ge 2 ]"
  done
}

# One bench phase: prints "rps p99_ms errors".
phase() {
  "$HSCALE" bench "http://127.0.0.1:$1/casefilter?user_id={rand:1:100}&limit=20" \
    -c "$C" -t 1 -d "$2" --timeout 5s -q --json "$TMP/b.json" >/dev/null 2>&1 || true
  "$PY" - "$TMP/b.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = d["total"]
rps, p99, err = t["rps"], t["latency_ms"]["p99"], t["failures"]
print(f"{rps:.0f} {p99:.2f} {err}")
EOF
}

hits() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk '/^hscale_cache_requests_total\{result="hit"\}/{h=$2} /^hscale_cache_requests_total\{result="miss"\}/{m=$2} END{printf "%d %d\n", h, m}'
}

declare -A R
for variant in sentinel fixed; do
  redis_group "$variant"
  P=$(port)
  if [ "$variant" = sentinel ]; then
    cache="kind: redis
      sentinels: [\"127.0.0.1:${SPORTS[0]}\", \"127.0.0.1:${SPORTS[1]}\", \"127.0.0.1:${SPORTS[2]}\"]"
  else
    cache="kind: redis
      redis: 127.0.0.1:$PM"
  fi
  cat > "$TMP/$variant.yaml" <<EOF
app:
  listen: 127.0.0.1:$P
  workers: $WORKERS
  store:
    url: sqlite:$TMP/app.db
    cache:
      $cache
      redis_timeout: 50ms
EOF
  "$HSCALE" app -c "$TMP/$variant.yaml" > "$TMP/$variant.log" 2>&1 &
  PIDS+=($!)
  until_ok 20 curl -sf "http://127.0.0.1:$P/health/ready"
  phase "$P" 2s >/dev/null            # warm the cache
  read -r rb pb eb < <(phase "$P" "$BEFORE")
  t0=$(date +%s%N)
  kill -9 "$MASTER_PID"; wait "$MASTER_PID" 2>/dev/null || true
  follow=none
  if [ "$variant" = sentinel ]; then
    ( until_ok 30 sh -c "curl -s http://127.0.0.1:$P/health | grep -q '\"cache_master\":\"127.0.0.1:$PR\",\"cache_master_state\":\"up\"'" &&
      echo $(( ($(date +%s%N) - t0) / 1000000 )) > "$TMP/follow_ms" ) &
    FPID=$!
  fi
  read -r rd pd ed < <(phase "$P" "$DURING")
  [ "$variant" = sentinel ] && { wait "$FPID" || true; follow="$(cat "$TMP/follow_ms" 2>/dev/null || echo none) ms"; }
  read -r h0 m0 < <(hits "$P")
  read -r ra pa ea < <(phase "$P" "$AFTER")
  read -r h1 m1 < <(hits "$P")
  ratio=$("$PY" -c "h=$h1-$h0; m=$m1-$m0; print(f'{100*h/max(1,h+m):.0f}%')")
  printf '%-8s before %6s req/s p99 %6s ms err %s | during %6s req/s p99 %6s ms err %s | after %6s req/s p99 %6s ms err %s | followed in %s | hits after %s\n' \
    "$variant" "$rb" "$pb" "$eb" "$rd" "$pd" "$ed" "$ra" "$pa" "$ea" "$follow" "$ratio"
  R[$variant.before]=$rb; R[$variant.after]=$ra
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  PIDS=()
done
"$PY" -c "
sb, sa, fb, fa = ${R[sentinel.before]}, ${R[sentinel.after]}, ${R[fixed.before]}, ${R[fixed.after]}
print(f'after/before req/s: sentinel {sa/max(1,sb):.2f}x, fixed {fa/max(1,fb):.2f}x; after the failover sentinel/fixed {sa/max(1,fa):.2f}x')"
