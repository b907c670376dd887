#!/usr/bin/env bash
# deploy_under_load.sh -- a rolling deploy of 4 `hscale app` instances
# behind `hscale gateway`, driven by `hscale control`, at a steady offered
# load (`hscale bench --rate`, open model: latency counts from the
# scheduled send time, so a stall shows up instead of hiding). Prints the
# requests, failures and p50/p99 before, during and after the deploy.
#
#   bench/deploy_under_load.sh        RATE=500 BEFORE=10 AFTER=10 INSTANCES=4 PATH_=/health
#
# Target (issue 6): zero failures, p99 during within 2x of before.
# Everything runs on loopback from a temp dir; every process is stopped by
# its PID at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSCALE=${HSCALE_BIN:-$ROOT/build/hscale}
RATE=${RATE:-500}
BEFORE=${BEFORE:-10}
AFTER=${AFTER:-10}
INSTANCES=${INSTANCES:-4}
URL_PATH=${PATH_:-/health}

[ -x "$HSCALE" ] || { echo "deploy_under_load: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/deploy_under_load.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW=$(port); ADMIN=$(port); CTL=$(port)
PIDS=()
cleanup() {
  # Control first: it drains its instances through the gateway.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill "${PIDS[$i]}" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

cat > "$TMP/gw.yaml" <<EOF
gateway:
  pools:
    - name: app
      backends: []
      health: {interval: 1s, timeout: 500ms, rise: 1, fall: 2}
    - name: app-next
      backends: []
  routes: [{prefix: /, pool: app}]
EOF

"$HSCALE" gateway -c "$TMP/gw.yaml" --listen "127.0.0.1:$GW" --admin "127.0.0.1:$ADMIN" \
  > "$TMP/gateway.log" 2>&1 &
PIDS+=($!)
(cd "$TMP" && exec "$HSCALE" control --listen "127.0.0.1:$CTL" --gateway "http://127.0.0.1:$ADMIN" \
  --pool app --instances "$INSTANCES" --version v1 --drain-timeout 10s \
  --state-dir "$TMP/control") > "$TMP/control.log" 2>&1 &
PIDS+=($!)

registered() {
  curl -s "http://127.0.0.1:$ADMIN/api/v1/pools/app" |
    python3 -c 'import json,sys; print(sum(m["state"]=="ready" and m["healthy"] for m in json.load(sys.stdin)["members"]))' 2>/dev/null || echo 0
}
for _ in $(seq 300); do [ "$(registered)" = "$INSTANCES" ] && break; sleep 0.1; done
[ "$(registered)" = "$INSTANCES" ] || { echo "deploy_under_load: instances did not register" >&2; tail "$TMP/control.log" >&2; exit 1; }

bench() {  # bench NAME DURATION
  "$HSCALE" bench "http://127.0.0.1:$GW$URL_PATH" -c 32 -t 2 --rate "$RATE" -d "$2" \
    --timeout 5s --json "$TMP/$1.json" -q > "$TMP/$1.log" 2>&1
}

echo "deploy_under_load: $INSTANCES x hscale app, $RATE req/s offered on GET $URL_PATH"
bench before "${BEFORE}s"

# During: load until the deploy has ended, then SIGINT (the report is
# still written).
"$HSCALE" bench "http://127.0.0.1:$GW$URL_PATH" -c 32 -t 2 --rate "$RATE" -d 600s \
  --timeout 5s --json "$TMP/during.json" -q > "$TMP/during.log" 2>&1 &
LOAD=$!
PIDS+=($LOAD)
sleep 1
t0=$(date +%s.%N)
"$HSCALE" deploy rolling --version v2 --control "127.0.0.1:$CTL" > "$TMP/deploy.log" 2>&1 \
  || { cat "$TMP/deploy.log"; echo "deploy_under_load: the deploy failed" >&2; exit 1; }
t1=$(date +%s.%N)
sleep 1
kill -INT "$LOAD"
wait "$LOAD" || true

bench after "${AFTER}s"
sed 's/^/  /' "$TMP/deploy.log"

python3 - "$TMP" "$t0" "$t1" <<'EOF'
import json, sys
tmp, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = []
for phase in ("before", "during", "after"):
    t = json.load(open(f"{tmp}/{phase}.json"))["total"]
    rows.append((phase, t["count"], t["failures"], t["latency_ms"]["p50"], t["latency_ms"]["p99"], t["latency_ms"]["max"]))
print(f"deploy took {t1 - t0:.1f} s")
print(f"{'phase':8} {'requests':>9} {'failures':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
for r in rows:
    print(f"{r[0]:8} {r[1]:9d} {r[2]:9d} {r[3]:8.2f} {r[4]:8.2f} {r[5]:8.2f}")
total = sum(r[1] for r in rows)
fails = sum(r[2] for r in rows)
ratio = rows[1][4] / rows[0][4] if rows[0][4] > 0 else float("inf")
print(f"total {total} requests, {fails} failed; p99 during / before = {ratio:.2f}x")
ok = fails == 0 and ratio <= 2.0
print("target (0 failures, p99 during <= 2x before):", "met" if ok else "NOT met")
sys.exit(0 if ok else 1)
EOF
