#!/usr/bin/env bash
# bench_vs_wrk.sh -- wrk and `hscale bench` in turn against the same static
# nginx backend (bench/peers/loadgen_backend.conf), same connections and
# threads, several interleaved rounds so drift hits both alike; prints the
# requests/s of each, the ratio and the peak RSS (GNU time). Then Locust with
# the SurgiCase locustfile against the same target, for scale.
#
#   bench/bench_vs_wrk.sh            C=100 T=2 D=5s ROUNDS=3 LOCUST_USERS=50 LOCUST_TIME=10s
#
# Targets (issue 7): hscale >= 1.0x wrk's req/s, peak RSS <= 2x wrk's.
# Everything runs on loopback from a temp dir; nginx is stopped by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSCALE=${HSCALE_BIN:-$ROOT/build/hscale}
C=${C:-100}
T=${T:-2}
D=${D:-5s}
ROUNDS=${ROUNDS:-3}
LOCUST_USERS=${LOCUST_USERS:-50}
LOCUST_TIME=${LOCUST_TIME:-10s}

for tool in wrk nginx /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench_vs_wrk: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done
[ -x "$HSCALE" ] || { echo "bench_vs_wrk: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/bench_vs_wrk.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NGINX_PID=
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|$PORT|g" "$ROOT/bench/peers/loadgen_backend.conf" > "$TMP/nginx.conf"
nginx -c "$TMP/nginx.conf" -p "$TMP" -g 'daemon on;'
for _ in $(seq 50); do [ -s "$TMP/backend.pid" ] && break; sleep 0.1; done
NGINX_PID=$(cat "$TMP/backend.pid")
URL="http://127.0.0.1:$PORT/"
curl -sf "$URL" >/dev/null || { echo "bench_vs_wrk: backend did not answer on $URL" >&2; exit 1; }

rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }

echo "target $URL  -c $C -t $T -d $D  rounds $ROUNDS"
printf '%-6s %14s %14s %8s %12s %12s\n' round wrk_req/s hscale_req/s ratio wrk_rss_kB hscale_rss_kB
W_ALL=() H_ALL=() WR_ALL=() HR_ALL=()
for r in $(seq "$ROUNDS"); do
  /usr/bin/time -v -o "$TMP/wrk.time" wrk -c "$C" -t "$T" -d "$D" "$URL" > "$TMP/wrk.out"
  w=$(awk '/Requests\/sec:/ {print $2}' "$TMP/wrk.out")
  /usr/bin/time -v -o "$TMP/h.time" "$HSCALE" bench "$URL" -c "$C" -t "$T" -d "$D" -q \
    --json "$TMP/h.json" > "$TMP/h.out"
  h=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["total"]["rps"])' "$TMP/h.json")
  wr=$(rss "$TMP/wrk.time"); hr=$(rss "$TMP/h.time")
  W_ALL+=("$w"); H_ALL+=("$h"); WR_ALL+=("$wr"); HR_ALL+=("$hr")
  printf '%-6s %14s %14s %8s %12s %12s\n' "$r" "$w" "$h" "$(python3 -c "print('%.3f' % ($h/$w))")" "$wr" "$hr"
done

python3 - "${W_ALL[*]}" "${H_ALL[*]}" "${WR_ALL[*]}" "${HR_ALL[*]}" <<'PY'
import statistics, sys
w, h, wr, hr = ([float(x) for x in a.split()] for a in sys.argv[1:5])
mw, mh = statistics.median(w), statistics.median(h)
mwr, mhr = max(wr), max(hr)
print(f"median  wrk {mw:.0f} req/s  hscale {mh:.0f} req/s  ratio {mh / mw:.3f}x (target >= 1.0x)")
print(f"peak RSS wrk {mwr:.0f} kB  hscale {mhr:.0f} kB  ratio {mhr / mwr:.2f}x (target <= 2x)")
PY

if command -v locust >/dev/null; then
  echo "locust: $LOCUST_USERS users, $LOCUST_TIME, $ROOT/bench/peers/loadgen_locustfile.py (SurgiCase)"
  (cd "$TMP" && timeout 120 locust -f "$ROOT/bench/peers/loadgen_locustfile.py" --headless \
      -u "$LOCUST_USERS" -r "$LOCUST_USERS" -t "$LOCUST_TIME" --host "${URL%/}" --only-summary \
      > "$TMP/locust.out" 2>&1) || true
  awk '/Aggregated/ {print "locust  aggregated req/s " $(NF-1); exit}' "$TMP/locust.out"
  # The same scenario in hscale bench, closed model with the locustfile's think time.
  cat > "$TMP/surgicase.yaml" <<'YAML'
think: 10ms-50ms
requests:
  - name: health_check
    weight: 3
    path: /health
  - name: get_cases
    weight: 2
    path: /casefilter?user_id=1&status=10
YAML
  "$HSCALE" bench "${URL%/}" --scenario "$TMP/surgicase.yaml" -c "$LOCUST_USERS" -t "$T" -d "$LOCUST_TIME" -q \
    --json "$TMP/s.json" > /dev/null
  python3 -c 'import json,sys; print("hscale  same scenario, same users: %.0f req/s" % json.load(open(sys.argv[1]))["total"]["rps"])' "$TMP/s.json"
  # And as fast as it goes (no think time), to compare per-core capacity.
  sed -i '/^think:/d' "$TMP/surgicase.yaml"
  "$HSCALE" bench "${URL%/}" --scenario "$TMP/surgicase.yaml" -c "$LOCUST_USERS" -t "$T" -d "$LOCUST_TIME" -q \
    --json "$TMP/s.json" > /dev/null
  python3 -c 'import json,sys; print("hscale  same scenario, no think time: %.0f req/s" % json.load(open(sys.argv[1]))["total"]["rps"])' "$TMP/s.json"
fi
