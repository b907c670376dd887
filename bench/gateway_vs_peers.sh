#!/usr/bin/env bash
# gateway_vs_peers.sh -- hscale gateway against nginx and HAProxy, same
# static nginx backend, same machine, one run.
#
# For WORKERS in 1 and 2: starts the backend, `hscale gateway --workers N`,
# nginx (N workers, upstream keep-alive) and HAProxy (nbthread N, http-reuse
# always), then runs wrk at 50 and 200 connections against each target in
# ROUNDS interleaved rounds (so drift hits every target alike) and prints
# median req/s, p50 and p99, and the ratios hscale/HAProxy and hscale/nginx.
# Then memory per idle keep-alive client (IDLE connections after one request
# each): RSS growth of each proxy divided by the connection count.
#
# On a 2-core machine wrk, the backend and the proxy share the cores, so
# requests/s measures the whole box; each target's CPU time per request
# (utime+stime of the proxy process over the run, from /proc) is printed
# too: it is the proxy's own cost, and what its throughput scales with on
# cores of its own. So is the whole machine's busy CPU time per request
# (/proc/stat): for the direct target that is wrk and the backend alone,
# the floor every proxy adds its share to.
#
# Every process is started with its own config under a temp dir and stopped
# by PID. Env: HSCALE_BIN (default build/hscale), DURATION (s, default 8),
# ROUNDS (3), IDLE (8000), WORKERS_LIST ("1 2").
set -u
cd "$(dirname "$0")/.."
. bench/lib.sh
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-8000}
WORKERS_LIST=${WORKERS_LIST:-"1 2"}
DIR=$(mktemp -d /tmp/gwbench.XXXXXX)
PIDS=()
BACKEND=19001; P_HS=19100; P_NG=19101; P_HA=19102

trap cleanup EXIT

fill() {  # template workers port -> config path
    local out="$DIR/$(basename "$1")"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$3|g" -e "s|@WORKERS@|$2|g" \
        -e "s|@BACKEND@|$BACKEND|g" "$1" > "$out"
    echo "$out"
}

stop_pidfile() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null; rm -f "$1"; sleep 0.3; }

ulimit -n 20000 2>/dev/null || true
nginx -c "$(fill bench/peers/gw_backend.conf 1 $BACKEND)" -p "$DIR" || exit 1
wait_port $BACKEND || { echo "backend did not start"; exit 1; }

# Busy ticks of the whole machine (every CPU, everything but idle and iowait).
box_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# wrk_run PORT CONNS PID -> "rps p50_ms p99_ms proxy_cpu_us box_cpu_us" (per request)
wrk_run() {
    local t0 b0 t1 b1
    t0=$(ticks "$3"); b0=$(box_ticks)
    wrk -t1 -c"$2" -d"${DURATION}s" --latency "http://127.0.0.1:$1/" 2>/dev/null > "$DIR/wrk.out"
    t1=$(ticks "$3"); b1=$(box_ticks)
    awk -v dt=$((t1 - t0)) -v db=$((b1 - b0)) -v hz="$HZ" '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /requests in/ { n = $1 }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        END { printf "%d %.2f %.2f %.2f %.2f\n", rps, p50, p99, n ? dt * 1e6 / hz / n : 0, n ? db * 1e6 / hz / n : 0 }' "$DIR/wrk.out"
}

rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

for W in $WORKERS_LIST; do
    echo "== workers/threads: $W  (wrk -t1, ${DURATION}s x $ROUNDS rounds)"
    nginx -c "$(fill bench/peers/gw_nginx.conf "$W" $P_NG)" -p "$DIR" && wait_port $P_NG
    haproxy -D -f "$(fill bench/peers/gw_haproxy.cfg "$W" $P_HA)" && wait_port $P_HA
    HS=""
    if [ -x "$HSCALE_BIN" ]; then
        "$HSCALE_BIN" gateway --listen 127.0.0.1:$P_HS --backend 127.0.0.1:$BACKEND \
            --workers "$W" > "$DIR/hscale.log" 2>&1 &
        HS=$!; PIDS+=("$HS")
        wait_port $P_HS || { echo "hscale gateway did not start: $(tail -1 "$DIR/hscale.log")"; HS=""; }
    else
        echo "hscale binary $HSCALE_BIN not found"
    fi
    # Memory first, on fresh processes: after a load run, freed request
    # buffers sit in the proxies' pools and would hide per-connection cost.
    if [ "$W" = 1 ]; then
        echo "-- memory per idle keep-alive client ($IDLE connections, one request each)"
        for t in $([ -n "$HS" ] && echo "hscale:$P_HS:$HS") "nginx:$P_NG:nginx.pid" "haproxy:$P_HA:haproxy.pid"; do
            IFS=: read -r n port pid <<< "$t"
            case $pid in *.pid) pid=$(cat "$DIR/$pid") ;; esac
            # nginx: measure its worker, not the master
            [ "$n" = nginx ] && pid=$(pgrep -P "$pid" | head -1)
            before=$(rss_kb "$pid"); [ -n "${BENCH_DEBUG:-}" ] && echo "pid=$pid rss=$before" >&2
            /usr/bin/python3 bench/peers/gw_idleconns.py 127.0.0.1 "$port" "$IDLE" 6 > "$DIR/idle.out" 2>&1 &
            ip=$!
            for _ in $(seq 100); do grep -q open "$DIR/idle.out" && break; sleep 0.2; done
            # Idle means idle for a while: the rush of IDLE connects (200 at
            # a time) leaves request buffers behind, which hscale returns
            # within two 1 s housekeeping ticks; every proxy gets the same wait.
            sleep 3
            after=$(rss_kb "$pid")
            opened=$(awk '/open/ { print $2 }' "$DIR/idle.out")
            wait "$ip" 2>/dev/null
            awk -v n="$n" -v b="$before" -v a="$after" -v c="${opened:-0}" \
                'BEGIN { printf "%-8s %6d conns  %7.2f KB/conn\n", n, c, c ? (a-b)/c : 0 }'
        done
    fi
    NGW=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
    BEW=$(pgrep -P "$(cat "$DIR/backend.pid")" | head -1)
    TARGETS="direct:$BACKEND:$BEW nginx:$P_NG:$NGW haproxy:$P_HA:$(cat "$DIR/haproxy.pid")"
    [ -n "$HS" ] && TARGETS="hscale:$P_HS:$HS $TARGETS"
    for C in 50 200; do
        for r in $(seq "$ROUNDS"); do
            for t in $TARGETS; do
                IFS=: read -r n port pid <<< "$t"
                echo "$(wrk_run "$port" "$C" "$pid")" >> "$DIR/res.$n.$C"
            done
        done
        printf "%-8s %5s %10s %9s %9s %12s %12s\n" target conns req/s p50_ms p99_ms cpu_us/req box_us/req
        for t in $TARGETS; do
            n=${t%%:*}; f="$DIR/res.$n.$C"
            rps=$(cut -d' ' -f1 "$f" | median); p50=$(cut -d' ' -f2 "$f" | median)
            p99=$(cut -d' ' -f3 "$f" | median); cpu=$(cut -d' ' -f4 "$f" | median)
            box=$(cut -d' ' -f5 "$f" | median)
            printf "%-8s %5s %10s %9s %9s %12s %12s\n" "$n" "$C" "$rps" "$p50" "$p99" "$cpu" "$box"
            eval "RPS_$n=$rps; P99_$n=$p99; CPU_$n=$cpu; BOX_$n=$box"
        done
        if [ -n "$HS" ]; then
            # Rounds are interleaved, so round i of each target saw the same
            # machine: the per-round ratios show how much of the median is noise.
            per=$(paste -d' ' "$DIR/res.hscale.$C" "$DIR/res.haproxy.$C" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $6 }')
            echo "per-round hscale/haproxy: $per"
            awk -v h="$RPS_hscale" -v a="$RPS_haproxy" -v n="$RPS_nginx" -v hp="$P99_hscale" -v ap="$P99_haproxy" \
                -v hc="$CPU_hscale" -v ac="$CPU_haproxy" -v nc="$CPU_nginx" \
                -v hb="$BOX_hscale" -v ab="$BOX_haproxy" -v db="$BOX_direct" \
                'BEGIN { printf "ratio hscale/haproxy %.2f  hscale/nginx %.2f  p99 hscale %.2f ms vs haproxy %.2f ms\n", h/a, h/n, hp, ap
                         printf "CPU per request: hscale %.2f us, haproxy %.2f us, nginx %.2f us: haproxy/hscale %.2f, nginx/hscale %.2f\n", hc, ac, nc, ac/hc, nc/hc
                         printf "whole machine per request: hscale %.2f us, haproxy %.2f us (wrk + backend alone: %.2f us): haproxy/hscale %.2f\n", hb, ab, db, ab/hb }'
        fi
        rm -f "$DIR"/res.*
    done
    [ -n "$HS" ] && kill "$HS" 2>/dev/null
    stop_pidfile "$DIR/nginx.pid"; stop_pidfile "$DIR/haproxy.pid"
done
