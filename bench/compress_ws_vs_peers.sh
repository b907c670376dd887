#!/usr/bin/env bash
# compress_ws_vs_peers.sh -- the gateway's compression and WebSocket tunnels
# against nginx and HAProxy: one worker each, same backends, one run.
#
#  1. gzip of a 20 KB JSON document (a static nginx backend, identity):
#     wrk with Accept-Encoding: gzip at 50 connections, ROUNDS interleaved
#     rounds, median req/s, bytes of the compressed body, and each proxy's
#     CPU time per request (utime+stime from /proc). nginx compresses at
#     level 6 (gzip_comp_level 6), hscale at 6 (compression_level, the
#     default), HAProxy at its default, level 1 (tune.comp.maxlevel). A
#     second hscale at level 5 ("hscale5", not the default) is measured for
#     the issue's "at an output no larger than nginx's": libdeflate's level
#     5 output is still smaller than zlib's level 6.
#  2. WebSocket echo: TUNNELS tunnels through each proxy to a raw echo
#     backend (bench/peers/ws_echo_raw.py), one 64-byte frame in flight per
#     tunnel (bench/peers/ws_load.py), messages per second and the proxy's
#     CPU time per message.
#
# On a 2-core machine the load generator, the backend and the proxy share
# the cores: req/s is the whole box; CPU per request is the proxy's own
# cost. Every process is stopped by PID. Env: HSCALE_BIN (default
# build/hscale), DURATION (s, default 8), ROUNDS (3), TUNNELS (100).
set -u
cd "$(dirname "$0")/.."
. bench/lib.sh
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
TUNNELS=${TUNNELS:-100}
DIR=$(mktemp -d /tmp/cwbench.XXXXXX); chmod 755 "$DIR"   # nginx workers run as nobody
PIDS=()
# Free ports, asked of the kernel (other benchmarks may share the machine).
read -r BACKEND WSBACKEND P_HS P_NG P_HA P_H5 < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

trap cleanup EXIT

fill() {  # template port -> config path
    local out="$DIR/$(basename "$1")"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$2|g" -e "s|@WORKERS@|1|g" \
        -e "s|@BACKEND@|$BACKEND|g" -e "s|@WSBACKEND@|$WSBACKEND|g" "$1" > "$out"
    echo "$out"
}

ulimit -n 20000 2>/dev/null || true
# A 20 KB JSON document, the same bytes for every proxy.
/usr/bin/python3 - "$DIR/data.json" <<'PY'
import json, sys
rows, i = [], 0
while len(json.dumps(rows)) < 20000:
    rows.append({"id": i, "patient": f"P-{i * 7919 % 100000:05d}", "ward": ["A", "B", "C"][i % 3],
                 "status": ["admitted", "discharged", "waiting"][i % 3], "score": (i * 37) % 101})
    i += 1
open(sys.argv[1], "w").write(json.dumps(rows))
PY
nginx -c "$(fill bench/peers/cw_backend.conf $BACKEND)" -p "$DIR" || exit 1
/usr/bin/python3 bench/peers/ws_echo_raw.py $WSBACKEND > "$DIR/wsecho.log" 2>&1 &
PIDS+=($!)
wait_port $BACKEND && wait_port $WSBACKEND || { echo "backends did not start"; exit 1; }
nginx -c "$(fill bench/peers/cw_nginx.conf $P_NG)" -p "$DIR" && wait_port $P_NG || { echo "nginx did not start"; exit 1; }
haproxy -D -f "$(fill bench/peers/cw_haproxy.cfg $P_HA)" && wait_port $P_HA || { echo "haproxy did not start"; exit 1; }
"$HSCALE_BIN" gateway -c "$(fill bench/peers/cw_hscale.yaml $P_HS)" > "$DIR/hscale.log" 2>&1 &
HS=$!; PIDS+=("$HS")
wait_port $P_HS || { echo "hscale gateway did not start: $(tail -2 "$DIR/hscale.log")"; exit 1; }
sed 's/compression_level: 6/compression_level: 5/' "$(fill bench/peers/cw_hscale.yaml $P_H5)" > "$DIR/cw_hscale5.yaml"
"$HSCALE_BIN" gateway -c "$DIR/cw_hscale5.yaml" > "$DIR/hscale5.log" 2>&1 &
H5=$!; PIDS+=("$H5")
wait_port $P_H5 || { echo "hscale gateway (level 5) did not start: $(tail -2 "$DIR/hscale5.log")"; exit 1; }
NGW=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
TARGETS="hscale:$P_HS:$HS nginx:$P_NG:$NGW haproxy:$P_HA:$(cat "$DIR/haproxy.pid")"
GZ_TARGETS="$TARGETS hscale5:$P_H5:$H5"

echo "== gzip of a $(stat -c %s "$DIR/data.json")-byte JSON response (wrk -t1 -c50, ${DURATION}s x $ROUNDS rounds)"
cat > "$DIR/gzip.lua" <<'LUA'
wrk.headers["Accept-Encoding"] = "gzip"
LUA
for r in $(seq "$ROUNDS"); do
    for t in $GZ_TARGETS; do
        IFS=: read -r n port pid <<< "$t"
        t0=$(ticks "$pid")
        wrk -t1 -c50 -d"${DURATION}s" -s "$DIR/gzip.lua" "http://127.0.0.1:$port/json" > "$DIR/wrk.out" 2>&1
        t1=$(ticks "$pid")
        awk -v dt=$((t1 - t0)) -v hz="$HZ" '/requests in/ { n = $1 } /Requests\/sec/ { rps = $2 }
            END { printf "%d %.2f\n", rps, n ? dt * 1e6 / hz / n : 0 }' "$DIR/wrk.out" >> "$DIR/gz.$n"
    done
done
printf "%-8s %10s %10s %12s %s\n" target req/s body_B cpu_us/req content-encoding
for t in $GZ_TARGETS; do
    IFS=: read -r n port pid <<< "$t"
    rps=$(cut -d' ' -f1 "$DIR/gz.$n" | median); cpu=$(cut -d' ' -f2 "$DIR/gz.$n" | median)
    curl -s -D "$DIR/h.$n" -H 'Accept-Encoding: gzip' -o "$DIR/b.$n" "http://127.0.0.1:$port/json"
    bytes=$(stat -c %s "$DIR/b.$n")
    ok=$(gzip -dc < "$DIR/b.$n" | cmp -s - "$DIR/data.json" && echo "gzip, decodes to the original" || echo "DOES NOT DECODE")
    printf "%-8s %10s %10s %12s %s\n" "$n" "$rps" "$bytes" "$cpu" "$ok"
    eval "GZ_$n=$rps; GB_$n=$bytes; GC_$n=$cpu"
done
awk -v h="$GZ_hscale" -v n="$GZ_nginx" -v a="$GZ_haproxy" -v hb="$GB_hscale" -v nb="$GB_nginx" -v ab="$GB_haproxy" \
    -v hc="$GC_hscale" -v nc="$GC_nginx" -v ac="$GC_haproxy" \
    -v h5="$GZ_hscale5" -v h5b="$GB_hscale5" -v h5c="$GC_hscale5" \
    'BEGIN { printf "ratio req/s hscale/nginx %.2f  hscale/haproxy %.2f; bytes hscale/nginx %.3f hscale/haproxy %.3f; CPU per request nginx/hscale %.2f haproxy/hscale %.2f\n", h/n, h/a, hb/nb, hb/ab, nc/hc, ac/hc
             printf "level 5 (not the default): req/s hscale5/nginx %.2f; bytes hscale5/nginx %.3f; CPU per request nginx/hscale5 %.2f\n", h5/n, h5b/nb, nc/h5c }'

echo "== WebSocket echo, $TUNNELS tunnels, one 64-byte message in flight each (${DURATION}s x $ROUNDS rounds)"
for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
        IFS=: read -r n port pid <<< "$t"
        t0=$(ticks "$pid")
        out=$(timeout $((DURATION + 30)) /usr/bin/python3 bench/peers/ws_load.py "$port" "$TUNNELS" "$DURATION" 64 2>&1)
        t1=$(ticks "$pid")
        echo "$out" | awk -v dt=$((t1 - t0)) -v hz="$HZ" '/^msgs/ { printf "%d %.2f\n", $4, $2 ? dt * 1e6 / hz / $2 : 0; ok = 1 }
            END { if (!ok) print "0 0" }' >> "$DIR/ws.$n"
        echo "$out" | grep -v '^msgs' | head -2
    done
done
printf "%-8s %10s %12s\n" target msgs/s cpu_us/msg
for t in $TARGETS; do
    n=${t%%:*}
    rps=$(cut -d' ' -f1 "$DIR/ws.$n" | median); cpu=$(cut -d' ' -f2 "$DIR/ws.$n" | median)
    printf "%-8s %10s %12s\n" "$n" "$rps" "$cpu"
    eval "WS_$n=$rps; WC_$n=$cpu"
done
awk -v h="$WS_hscale" -v n="$WS_nginx" -v a="$WS_haproxy" -v hc="$WC_hscale" -v nc="$WC_nginx" -v ac="$WC_haproxy" \
    'BEGIN { printf "ratio msgs/s hscale/nginx %.2f  hscale/haproxy %.2f; CPU per message nginx/hscale %.2f haproxy/hscale %.2f\n", h/n, h/a, nc/hc, ac/hc }'
