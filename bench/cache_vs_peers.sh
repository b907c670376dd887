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
. bench/lib.sh
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
STAMPEDE=${STAMPEDE:-1000}
DIR=$(mktemp -d /tmp/cachebench.XXXXXX)
chmod 755 "$DIR"
PIDS=()
ORIGIN=19201; SLOW=19202; P_HS=19210; P_NG=19211; P_HA=19212; P_VA=19213

trap cleanup EXIT

fill() {  # template port -> config path
    local out="$DIR/$(basename "$1")"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$2|g" -e "s|@BACKEND@|$ORIGIN|g" -e "s|@SLOW@|$SLOW|g" "$1" > "$out"
    echo "$out"
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

# target:port:pid of the process that serves (nginx and Varnish: the child)
TARGETS="origin:$ORIGIN:$(pgrep -P "$(cat "$DIR/origin.pid")" | head -1)"
TARGETS="$TARGETS nginx:$P_NG:$(pgrep -P "$(cat "$DIR/nginx.pid")" -f 'worker process' | head -1)"
TARGETS="$TARGETS haproxy:$P_HA:$(cat "$DIR/haproxy.pid")"
[ -n "$VA" ] && TARGETS="$TARGETS varnish:$P_VA:$(pgrep -P "$VA" | head -1)"
[ -n "$HS" ] && TARGETS="hscale:$P_HS:$HS $TARGETS"
port_of() { local x=${1#*:}; echo "${x%%:*}"; }

# Each target's own CPU time per request (utime+stime of its serving
# process over the run, from /proc): on a shared 2-core machine req/s is
# the whole box, this is what the cache itself costs.

# wrk_run PORT PID -> "rps p99_ms non2xx cpu_us_per_request"
wrk_run() {
    local t0 t1
    t0=$(ticks "$2")
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/obj.json" 2>/dev/null > "$DIR/wrk.out"
    t1=$(ticks "$2")
    awk -v dt=$((t1 - t0)) -v hz="$HZ" '
         function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
         /requests in/ { n = $1 } /Requests\/sec/ { rps = $2 } /^ +99%/ { p99 = ms($2) } / Non-2xx/ { bad = $NF }
         END { printf "%d %.2f %d %.2f\n", rps, p99, bad, n ? dt * 1e6 / hz / n : 0 }' "$DIR/wrk.out"
}
origin_hits() { grep -cF " $1 " "$DIR/origin.access.log" 2>/dev/null || echo 0; }

echo "== cache hits: wrk -t1 -c$CONNS, ${DURATION}s x $ROUNDS interleaved rounds, 1 worker each"
for t in $TARGETS; do curl -s -o /dev/null "http://127.0.0.1:$(port_of "$t")/obj.json"; done
for t in $TARGETS; do curl -s -o /dev/null "http://127.0.0.1:$(port_of "$t")/obj.json"; done
# Origin requests while each target ran (a cache should send a handful:
# the object expires after 60 s, and the whole run is longer).
for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
        b=$(origin_hits /obj.json)
        echo "$(wrk_run "$(port_of "$t")" "${t##*:}") $(( $(origin_hits /obj.json) - b ))" >> "$DIR/res.${t%%:*}"
    done
done
printf "%-8s %10s %9s %9s %11s %12s\n" target req/s p99_ms non2xx cpu_us/req origin_reqs
for t in $TARGETS; do
    n=${t%%:*}; f="$DIR/res.$n"
    rps=$(cut -d' ' -f1 "$f" | median); p99=$(cut -d' ' -f2 "$f" | median); bad=$(cut -d' ' -f3 "$f" | median)
    cpu=$(cut -d' ' -f4 "$f" | median); up=$(awk '{ s += $5 } END { print s }' "$f")
    printf "%-8s %10s %9s %9s %11s %12s\n" "$n" "$rps" "$p99" "$bad" "$cpu" "$up"
    eval "RPS_$n=$rps; P99_$n=$p99; CPU_$n=$cpu"
done
if [ -n "$HS" ]; then
    per=$(paste -d' ' "$DIR/res.hscale" "$DIR/res.haproxy" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $6 }')
    echo "per-round hscale/haproxy: $per"
    awk -v h="$RPS_hscale" -v a="$RPS_haproxy" -v n="$RPS_nginx" -v v="${RPS_varnish:-0}" -v o="$RPS_origin" \
        -v hp="$P99_hscale" -v ap="$P99_haproxy" -v np="$P99_nginx" -v vp="${P99_varnish:-0}" \
        -v hc="$CPU_hscale" -v ac="$CPU_haproxy" -v nc="$CPU_nginx" -v vc="${CPU_varnish:-0}" \
        'BEGIN { printf "ratio hscale/haproxy %.2f (target >= 1.2)  hscale/varnish %s (target >= 1.5)  hscale/nginx %.2f  hscale/origin-direct %.2f\n",
                        h/a, v ? sprintf("%.2f", h/v) : "n/a", h/n, h/o
                 printf "p99 ms: hscale %.2f  haproxy %.2f  nginx %.2f  varnish %.2f\n", hp, ap, np, vp
                 printf "CPU per hit: hscale %.2f us  haproxy %.2f  nginx %.2f  varnish %.2f: haproxy/hscale %.2f  varnish/hscale %.2f\n",
                        hc, ac, nc, vc, hc ? ac/hc : 0, hc ? vc/hc : 0 }'
fi

wait_port $SLOW || echo "slow origin helper did not start"
echo "== cold-key stampede: $STAMPEDE connections at once, one GET each, the origin's head after 500 ms"
printf "%-8s %8s %8s %9s %16s\n" target ok failed seconds origin_requests
for t in $TARGETS; do
    n=${t%%:*}; [ "$n" = origin ] && continue
    port=$(port_of "$t")
    key="/slow/$n-$RANDOM$RANDOM?cc=max-age%3D60&ms=500&size=20000"
    out=$(timeout 60 /usr/bin/python3 bench/peers/cache_stampede.py "$port" "$key" "$STAMPEDE")
    sleep 0.5
    read -r ok bad secs <<< "$out"
    printf "%-8s %8s %8s %9s %16s\n" "$n" "${ok:-?}" "${bad:-?}" "${secs:-?}" "$(origin_hits "$key")"
done
