#!/usr/bin/env bash
# cache_vs_peers.sh -- the hscale gateway's shared cache against HAProxy's
# cache, nginx proxy_cache and Varnish, one run, same origin, same object.
#
# The origin is nginx serving a 20 KB JSON with Cache-Control: max-age=60
# (bench/peers/cache_origin.conf). Each cache runs one worker (hscale
# --workers 1, nginx worker_processes 1, HAProxy nbthread 1, Varnish one
# thread pool) in front of it.
#
#  1. cache hits: each cache is warmed with one request, then wrk (-t1,
#     CONNS connections, DURATION s) runs against it in ROUNDS interleaved
#     rounds (drift hits every target alike); median req/s and p99, the
#     origin served directly as a reference, and the ratios hscale/peer.
#  2. cold-key stampede: STAMPEDE connections open at once and each asks
#     for the same key that no cache holds yet (under /slow/, whose
#     response head the origin sends after 500 ms, so every other request
#     arrives while the first fetch waits); the origin's access log says how
#     many reached it (target for hscale: exactly 1).
#
# Every process is started with its own config under a temp dir and stopped
# by PID; each run is bounded by its duration. Env: HSCALE_BIN (default
# build/hscale), DURATION (s, 8), ROUNDS (3), CONNS (50), STAMPEDE (1000).
set -u
cd "$(dirname "$0")/.."
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
STAMPEDE=${STAMPEDE:-1000}
DIR=$(mktemp -d /tmp/cachebench.XXXXXX)
chmod 755 "$DIR"
PIDS=()
ORIGIN=19201; SLOW=19202; P_HS=19210; P_NG=19211; P_HA=19212; P_VA=19213

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for f in "$DIR"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.5
    rm -rf "$DIR"
}
trap cleanup EXIT

fill() {  # template port -> config path
    local out="$DIR/$(basename "$1")"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$2|g" -e "s|@BACKEND@|$ORIGIN|g" -e "s|@SLOW@|$SLOW|g" "$1" > "$out"
    echo "$out"
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

ulimit -n 20000 2>/dev/null || true
mkdir -p "$DIR/www"
/usr/bin/python3 -c 'import json; print(json.dumps({"items": [{"id": i, "name": "item %05d" % i, "ok": True} for i in range(500)]})[:20479])' > "$DIR/www/obj.json"
echo "object: $(stat -c %s "$DIR/www/obj.json") bytes, Cache-Control: max-age=60"

/usr/bin/python3 tests/e2e/cache_origin.py $SLOW > "$DIR/slow.log" 2>&1 &
PIDS+=($!)
nginx -c "$(fill bench/peers/cache_origin.conf $ORIGIN)" -p "$DIR" || exit 1
wait_port $ORIGIN || { echo "origin did not start"; exit 1; }
nginx -c "$(fill bench/peers/cache_nginx.conf $P_NG)" -p "$DIR" && wait_port $P_NG
haproxy -D -f "$(fill bench/peers/cache_haproxy.cfg $P_HA)" && wait_port $P_HA
VA=""
if command -v varnishd > /dev/null; then
    varnishd -F -a 127.0.0.1:$P_VA -f "$(fill bench/peers/cache_varnish.vcl $P_VA)" -n "$DIR/varnish" \
        -s malloc,64m -p thread_pools=1 -p thread_pool_min=10 > "$DIR/varnish.log" 2>&1 &
    VA=$!; PIDS+=("$VA")
    wait_port $P_VA || { echo "varnish did not start: $(tail -2 "$DIR/varnish.log")"; VA=""; }
else
    echo "varnishd not installed (apt-get install varnish): Varnish left out"
fi
HS=""
if [ -x "$HSCALE_BIN" ]; then
    "$HSCALE_BIN" gateway -c "$(fill bench/peers/cache_hscale.yaml $P_HS)" > "$DIR/hscale.log" 2>&1 &
    HS=$!; PIDS+=("$HS")
    wait_port $P_HS || { echo "hscale gateway did not start: $(tail -1 "$DIR/hscale.log")"; HS=""; }
else
    echo "hscale binary $HSCALE_BIN not found"
fi

TARGETS="origin:$ORIGIN nginx:$P_NG haproxy:$P_HA"
[ -n "$VA" ] && TARGETS="$TARGETS varnish:$P_VA"
[ -n "$HS" ] && TARGETS="hscale:$P_HS $TARGETS"

# wrk_run PORT -> "rps p99_ms"
wrk_run() {
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/obj.json" 2>/dev/null > "$DIR/wrk.out"
    awk 'function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
         /Requests\/sec/ { rps = $2 } /^ +99%/ { p99 = ms($2) } / Non-2xx/ { bad = $NF }
         END { printf "%d %.2f %d\n", rps, p99, bad }' "$DIR/wrk.out"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }'; }
origin_hits() { grep -cF " $1 " "$DIR/origin.access.log" 2>/dev/null || echo 0; }

echo "== cache hits: wrk -t1 -c$CONNS, ${DURATION}s x $ROUNDS interleaved rounds, 1 worker each"
for t in $TARGETS; do curl -s -o /dev/null "http://127.0.0.1:${t#*:}/obj.json"; done
for t in $TARGETS; do curl -s -o /dev/null "http://127.0.0.1:${t#*:}/obj.json"; done
before=$(origin_hits /obj.json)
for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
        echo "$(wrk_run "${t#*:}")" >> "$DIR/res.${t%%:*}"
    done
done
printf "%-8s %10s %9s %9s\n" target req/s p99_ms non2xx
for t in $TARGETS; do
    n=${t%%:*}; f="$DIR/res.$n"
    rps=$(cut -d' ' -f1 "$f" | median); p99=$(cut -d' ' -f2 "$f" | median); bad=$(cut -d' ' -f3 "$f" | median)
    printf "%-8s %10s %9s %9s\n" "$n" "$rps" "$p99" "$bad"
    eval "RPS_$n=$rps; P99_$n=$p99"
done
echo "origin requests during the hit runs (all caches): $(( $(origin_hits /obj.json) - before ))"
if [ -n "$HS" ]; then
    per=$(paste -d' ' "$DIR/res.hscale" "$DIR/res.haproxy" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $4 }')
    echo "per-round hscale/haproxy: $per"
    awk -v h="$RPS_hscale" -v a="$RPS_haproxy" -v n="$RPS_nginx" -v v="${RPS_varnish:-0}" -v o="$RPS_origin" \
        -v hp="$P99_hscale" -v ap="$P99_haproxy" -v np="$P99_nginx" -v vp="${P99_varnish:-0}" \
        'BEGIN { printf "ratio hscale/haproxy %.2f (target >= 1.2)  hscale/varnish %s (target >= 1.5)  hscale/nginx %.2f  hscale/origin-direct %.2f\n",
                        h/a, v ? sprintf("%.2f", h/v) : "n/a", h/n, h/o
                 printf "p99 ms: hscale %.2f  haproxy %.2f  nginx %.2f  varnish %.2f\n", hp, ap, np, vp }'
fi

wait_port $SLOW || echo "slow origin helper did not start"
echo "== cold-key stampede: $STAMPEDE connections at once, one GET each, the origin's head after 500 ms"
printf "%-8s %8s %8s %9s %16s\n" target ok failed seconds origin_requests
for t in $TARGETS; do
    n=${t%%:*}; [ "$n" = origin ] && continue
    key="/slow/$n-$RANDOM$RANDOM?cc=max-age%3D60&ms=500&size=20000"
    out=$(timeout 60 /usr/bin/python3 bench/peers/cache_stampede.py "${t#*:}" "$key" "$STAMPEDE")
    sleep 0.5
    read -r ok bad secs <<< "$out"
    printf "%-8s %8s %8s %9s %16s\n" "$n" "${ok:-?}" "${bad:-?}" "${secs:-?}" "$(origin_hits "$key")"
done
