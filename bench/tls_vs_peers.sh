#!/usr/bin/env bash
# tls_vs_peers.sh -- TLS termination: hscale gateway against nginx and
# HAProxy, same ECDSA P-256 certificate, same static nginx backend, one
# worker each, same machine, one run (issue 24).
#
# Targets (each proxies to the same backend over plain keep-alive HTTP):
#   hscale      `hscale gateway --tls-listen` at its defaults (TLS 1.2-1.3,
#               stateless tickets), 1 worker
#   nginx       the anchor's TLS server (edge/nginx_edge.conf): nginx 1.22's
#               default protocols are TLS 1.0-1.2, so it speaks TLS 1.2 (with
#               its session cache and tickets)
#   haproxy     the anchor's TLS frontend (edge/haproxy_edge.cfg), TLS 1.2-1.3
# and, so a protocol difference is not mistaken for a proxy difference:
#   hscale12    hscale with tls_max_version 1.2 (nginx's protocol)
#   nginx13     nginx with ssl_protocols TLSv1.2 TLSv1.3 (hscale's)
#   plain       hscale's plain listener (what TLS costs hscale)
#
# Measures, ROUNDS interleaved rounds of DURATION s (median shown):
#   1. memory per idle TLS client connection (IDLE connections, one request
#      each, RSS growth of the fresh proxy process / connections)
#   2. keep-alive: wrk -t1 -c50 over https: req/s, p99, proxy CPU per request
#   3. a new TLS connection per request: wrk -t1 -c20 -H 'Connection: close'.
#      wrk keeps its SSL object across reconnects (SSL_clear), so it offers
#      the last session: these are resumed handshakes wherever the server
#      resumes; hscale's counters say how many were full and resumed.
#   4. full handshakes only: NEW_PROCS parallel `openssl s_time -new`
#      clients (no resumption), connections per second and proxy CPU each.
#   5. 2, 3 and 4 again with every proxy held to CAP % of one core by a
#      CPU quota of its own (a cgroup; needs root). On two cores the client
#      (and in 2 the backend) share the machine with the proxy, and a
#      client's half of a handshake costs as much as the server's, so in
#      2-4 the client or the whole machine sets the pace. Capped, the client
#      and the backend have more CPU than the proxy, and the rates are the
#      proxies' own: requests or connections per second per CAP % of a
#      core. Skipped, with the reason, without a writable cgroup CPU
#      controller.
#   6. the library's floor: bench/tls_floor.c runs hscale's server settings
#      against an OpenSSL client in memory (no socket, no proxy) and times
#      only the server's OpenSSL calls, full and resumed, TLS 1.2 and 1.3
#      (the least of 5 runs of 2000 connections each).
#      What a proxy spends per connection above that floor (its own code,
#      the kernel, colder caches) is the only part it can cut; the floor
#      also bounds the ratios: a TLS 1.3 resumption cannot cost less than
#      its floor, whatever the proxy around it does. (The floor counts a
#      request and its response; the s_time handshakes of 4 carry none.)
# Each table also shows the client's own CPU in % of one core (wrk's one
# thread; the s_time processes summed) and the proxy's. wrk's stays near
# 100 % even against a capped proxy that makes a third of the connections
# (it spins while it waits), so it does not say who set the pace; a proxy
# at its CAP does. The proxies' CPU per request (from /proc) holds either
# way.
# Every process runs from its own config in a temp dir and is stopped by
# PID. Env: HSCALE_BIN (build/hscale), DURATION (5), ROUNDS (3), IDLE (2000),
# NEW_PROCS (2), CAP (30).
set -u
cd "$(dirname "$0")/.."
. bench/lib.sh
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-2000}
NEW_PROCS=${NEW_PROCS:-2}
CAP=${CAP:-30}
DIR=$(mktemp -d /tmp/tlsbench.XXXXXX)
PIDS=()
CGROUPS=()   # the cgroups section 5 made, removed on exit

# cap_cpu NAME PID: PID (all its threads) into a cgroup of its own allowed
# CAP % of one core (cgroup v2 cpu.max, or v1 cfs quota), over 10 ms
# periods so throttling stays finer than a request. Fails when there is no
# writable CPU controller.
cap_cpu() {
    local g
    if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
        g=/sys/fs/cgroup/hscale-tlsbench-$$-$1
        mkdir "$g" 2>/dev/null && CGROUPS+=("$g") || return 1
        echo "$((CAP * 100)) 10000" > "$g/cpu.max" || return 1
    elif [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
        g=/sys/fs/cgroup/cpu/hscale-tlsbench-$$-$1
        mkdir "$g" 2>/dev/null && CGROUPS+=("$g") || return 1
        echo 10000 > "$g/cpu.cfs_period_us" && echo $((CAP * 100)) > "$g/cpu.cfs_quota_us" || return 1
    else
        return 1
    fi
    echo "$2" > "$g/cgroup.procs"
}
uncap_all() {  # every capped process back to the root group, groups removed
    local g p
    for g in "${CGROUPS[@]}"; do
        for p in $(cat "$g/cgroup.procs" 2>/dev/null); do echo "$p" > "$(dirname "$g")/cgroup.procs"; done
        rmdir "$g" 2>/dev/null
    done
    CGROUPS=()
}

trap 'uncap_all; cleanup' EXIT

BACKEND=$(free_port); P_HS=$(free_port); P_HS12=$(free_port); P_PLAIN=$(free_port); P_ADM=$(free_port)
P_ADM12=$(free_port); P_NG=$(free_port); P_NG13=$(free_port); P_HA=$(free_port)

fill() {  # template port -> config path
    local out="$DIR/$2-$(basename "$1")"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$2|g" -e "s|@BACKEND@|$BACKEND|g" "$1" > "$out"
    echo "$out"
}

ulimit -n 20000 2>/dev/null || true
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$DIR/key.pem" \
    -out "$DIR/cert.pem" -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null || exit 1
cat "$DIR/cert.pem" "$DIR/key.pem" > "$DIR/both.pem"

nginx -c "$(fill bench/peers/gw_backend.conf $BACKEND)" -p "$DIR" || exit 1
wait_port $BACKEND || { echo "backend did not start"; exit 1; }
nginx -c "$(fill bench/peers/tls_nginx.conf $P_NG)" -p "$DIR" || exit 1
# nginx13: the same server with TLS 1.3 allowed (its own pid file)
sed -e "s|ssl_session_cache shared:S:10m;|ssl_session_cache shared:S13:10m; ssl_protocols TLSv1.2 TLSv1.3;|" \
    -e "s|$DIR/nginx.pid|$DIR/nginx13.pid|" -e "s|$DIR/nginx.err|$DIR/nginx13.err|" \
    "$(fill bench/peers/tls_nginx.conf $P_NG13)" > "$DIR/nginx13.conf"
nginx -c "$DIR/nginx13.conf" -p "$DIR" || exit 1
haproxy -D -f "$(fill bench/peers/tls_haproxy.cfg $P_HA)" || exit 1
[ -x "$HSCALE_BIN" ] || { echo "hscale binary $HSCALE_BIN not found (make build/hscale)"; exit 1; }
"$HSCALE_BIN" gateway --tls-listen 127.0.0.1:$P_HS --cert "$DIR/cert.pem" --key "$DIR/key.pem" \
    --listen 127.0.0.1:$P_PLAIN --backend 127.0.0.1:$BACKEND --workers 1 --admin 127.0.0.1:$P_ADM \
    > "$DIR/hscale.log" 2>&1 &
HS=$!; PIDS+=("$HS")
HSCALE_GATEWAY_TLS_MAX_VERSION=1.2 "$HSCALE_BIN" gateway --tls-listen 127.0.0.1:$P_HS12 \
    --cert "$DIR/cert.pem" --key "$DIR/key.pem" --backend 127.0.0.1:$BACKEND --workers 1 \
    --admin 127.0.0.1:$P_ADM12 > "$DIR/hscale12.log" 2>&1 &
HS12=$!; PIDS+=("$HS12")
for p in $P_NG $P_NG13 $P_HA $P_HS $P_HS12 $P_PLAIN; do
    wait_port "$p" || { echo "port $p did not open"; tail -3 "$DIR"/*.log "$DIR"/*.err 2>/dev/null; exit 1; }
done
NGW=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
NG13W=$(pgrep -P "$(cat "$DIR/nginx13.pid")" | head -1)
HAP=$(cat "$DIR/haproxy.pid")

rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" 'index($0, k) == 1 { print $2 }'; }
proto() {  # what a client offering TLS 1.2 and 1.3 gets
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$1" 2>/dev/null | awk '/^New,/ { sub(",", "", $2); print $2; exit }'
}

echo "== hscale $("$HSCALE_BIN" version 2>/dev/null | head -1), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $(openssl version | awk '{print "OpenSSL " $2}'); ECDSA P-256 certificate; $(nproc) cores"
for t in hscale:$P_HS hscale12:$P_HS12 nginx:$P_NG nginx13:$P_NG13 haproxy:$P_HA; do
    printf "%s speaks %s   " "${t%%:*}" "$(proto "${t#*:}")"
done
echo

# 1. memory, on fresh processes (after load, pooled buffers would hide it)
echo "-- memory per idle TLS client connection ($IDLE connections, one request each, then idle 3 s)"
for t in "hscale:$P_HS:$HS" "nginx:$P_NG:$NGW" "haproxy:$P_HA:$HAP"; do
    IFS=: read -r n port pid <<< "$t"
    before=$(rss_kb "$pid")
    /usr/bin/python3 bench/peers/tls_idleconns.py 127.0.0.1 "$port" "$IDLE" 8 > "$DIR/idle.out" 2>&1 &
    ip=$!
    for _ in $(seq 300); do grep -q open "$DIR/idle.out" && break; sleep 0.2; done
    sleep 3
    after=$(rss_kb "$pid")
    opened=$(awk '/open/ { print $2 }' "$DIR/idle.out")
    wait "$ip" 2>/dev/null
    kb=$(awk -v b="$before" -v a="$after" -v c="${opened:-0}" 'BEGIN { printf "%.2f", c ? (a-b)/c : 0 }')
    printf "%-8s %6d conns  %6s KB/conn\n" "$n" "${opened:-0}" "$kb"
    eval "MEM_$n=$kb"
done
awk -v h="$MEM_hscale" -v n="$MEM_nginx" -v a="$MEM_haproxy" \
    'BEGIN { printf "memory hscale/nginx %.2f  hscale/haproxy %.2f (target <= 1.00 vs nginx)\n", h/n, h/a }'

# wrk_run URL CONNS PID EXTRA... -> "rps p99_ms cpu_us_per_req client_cpu_pct proxy_cpu_pct"
# The client's share of a core says whether a rate is the proxy's: wrk's
# one thread at ~100 % means the client set the pace, not the server.
wrk_run() {
    local url=$1 conns=$2 pid=$3 t0 t1 w0 w1
    shift 3
    t0=$(ticks "$pid"); w0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$DIR/wrk.time" \
        wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url" 2>/dev/null > "$DIR/wrk.out"
    t1=$(ticks "$pid"); w1=$(date +%s%N)
    awk -v dt=$((t1 - t0)) -v hz="$HZ" -v d="$(((w1 - w0) / 1000000))e-3" -v wt="$(tail -1 "$DIR/wrk.time")" '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /requests in/ { n = $1 }
        /Requests\/sec/ { rps = $2 }
        /^ +99%/ { p99 = ms($2) }
        /Socket errors|Non-2xx/ { err = 1 }
        END { split(wt, c, " ")
              printf "%d %.2f %.1f %.0f %.0f%s\n", rps, p99, n ? dt * 1e6 / hz / n : 0, 100 * (c[1] + c[2]) / d,
                     100 * dt / hz / d, err ? " ERR" : "" }' "$DIR/wrk.out"
}

TLS_TARGETS="hscale:https://127.0.0.1:$P_HS/:$HS hscale12:https://127.0.0.1:$P_HS12/:$HS12 nginx:https://127.0.0.1:$P_NG/:$NGW nginx13:https://127.0.0.1:$P_NG13/:$NG13W haproxy:https://127.0.0.1:$P_HA/:$HAP"

run_table() {  # title conns targets wrk-args...
    local title=$1 conns=$2 targets=$3
    shift 3
    echo "-- $title (wrk -t1 -c$conns ${DURATION}s x $ROUNDS rounds $*)"
    rm -f "$DIR"/res.*
    for _ in $(seq "$ROUNDS"); do
        for t in $targets; do
            n=${t%%:*}; rest=${t#*:}; pid=${rest##*:}; url=${rest%:*}
            wrk_run "$url" "$conns" "$pid" "$@" >> "$DIR/res.$n"
        done
    done
    printf "%-9s %10s %9s %12s %10s %10s\n" target req/s p99_ms cpu_us/req wrk_cpu% proxy_cpu%
    for t in $targets; do
        n=${t%%:*}; f="$DIR/res.$n"
        rps=$(cut -d' ' -f1 "$f" | median); p99=$(cut -d' ' -f2 "$f" | median); cpu=$(cut -d' ' -f3 "$f" | median)
        wcpu=$(cut -d' ' -f4 "$f" | median); pcpu=$(cut -d' ' -f5 "$f" | median)
        printf "%-9s %10s %9s %12s %10s %10s%s\n" "$n" "$rps" "$p99" "$cpu" "$wcpu" "$pcpu" "$(grep -q ERR "$f" && echo '  (errors)')"
        eval "RPS_$n=$rps; P99_$n=$p99; CPU_$n=$cpu"
    done
}

ratios() {  # label
    awk -v l="$1" -v h="$RPS_hscale" -v n="$RPS_nginx" -v a="$RPS_haproxy" -v h12="$RPS_hscale12" -v n13="$RPS_nginx13" \
        -v hc="$CPU_hscale" -v nc="$CPU_nginx" -v ac="$CPU_haproxy" -v h12c="$CPU_hscale12" -v n13c="$CPU_nginx13" \
        'BEGIN { printf "%s: hscale/nginx %.2f  hscale/haproxy %.2f  same protocol: hscale12/nginx %.2f  hscale/nginx13 %.2f\n", l, h/n, h/a, h12/n, h/n13
                 printf "%s CPU per request: nginx/hscale %.2f  haproxy/hscale %.2f  same protocol: nginx/hscale12 %.2f  nginx13/hscale %.2f\n", l, nc/hc, ac/hc, nc/h12c, n13c/hc }'
}

# 2. keep-alive
run_table "TLS keep-alive" 50 "$TLS_TARGETS plain:http://127.0.0.1:$P_PLAIN/:$HS"
ratios "keep-alive"
awk -v t="$RPS_hscale" -v p="$RPS_plain" 'BEGIN { printf "TLS costs hscale %.0f %% of its plain keep-alive rate\n", 100 * (1 - t/p) }'

# 3. new connection per request (wrk resumes where the server lets it)
new_conn_table() {  # title
    local f0 r0 f1 r1
    f0=$(metric $P_ADM 'hscale_gateway_tls_handshakes_total{kind="full"}'); r0=$(metric $P_ADM 'hscale_gateway_tls_handshakes_total{kind="resumed"}')
    run_table "$1" 20 "$TLS_TARGETS" -H "Connection: close"
    f1=$(metric $P_ADM 'hscale_gateway_tls_handshakes_total{kind="full"}'); r1=$(metric $P_ADM 'hscale_gateway_tls_handshakes_total{kind="resumed"}')
    ratios "new connections"
    echo "hscale handshakes during that run: full $((${f1%.*} - ${f0%.*})), resumed $((${r1%.*} - ${r0%.*}))"
}

# 4. full handshakes only: openssl s_time -new (no session reuse), no HTTP
full_table() {  # title
    local n rest pid url hp t0 t1 w0 w1 sp k ccpu cps cpu pcpu
    echo "-- $1 ($NEW_PROCS x openssl s_time -new, ${DURATION}s x $ROUNDS rounds)"
    rm -f "$DIR"/hs.*
    for _ in $(seq "$ROUNDS"); do
        for t in $TLS_TARGETS; do
            n=${t%%:*}; rest=${t#*:}; pid=${rest##*:}; url=${rest%:*}; hp=${url#https://}; hp=${hp%/}
            t0=$(ticks "$pid"); w0=$(date +%s%N)
            sp=()
            for k in $(seq "$NEW_PROCS"); do
                /usr/bin/time -f '%U %S' -o "$DIR/st.$k.time" timeout $((DURATION + 5)) \
                    openssl s_time -connect "$hp" -new -time "$DURATION" > "$DIR/st.$k" 2>&1 &
                sp+=($!)
            done
            wait "${sp[@]}"
            t1=$(ticks "$pid"); w1=$(date +%s%N)
            ccpu=$(for k in $(seq "$NEW_PROCS"); do tail -1 "$DIR/st.$k.time"; done | awk '{ s += $1 + $2 } END { print s }')
            cat "$DIR"/st.[0-9] "$DIR"/st.[0-9][0-9] 2>/dev/null | awk -v dt=$((t1 - t0)) -v hz="$HZ" -v d="$(((w1 - w0) / 1000000))e-3" -v cc="$ccpu" '
                /connections in [0-9]+ real/ { n += $1; if ($4 > 0) r += $1 / $4 }
                END { printf "%d %.1f %.0f %.0f\n", r, n ? dt * 1e6 / hz / n : 0, 100 * cc / d, 100 * dt / hz / d }' >> "$DIR/hs.$n"
        done
    done
    printf "%-9s %10s %12s %13s %10s\n" target conns/s cpu_us/conn clients_cpu% proxy_cpu%
    for t in $TLS_TARGETS; do
        n=${t%%:*}
        cps=$(cut -d' ' -f1 "$DIR/hs.$n" | median); cpu=$(cut -d' ' -f2 "$DIR/hs.$n" | median)
        ccpu=$(cut -d' ' -f3 "$DIR/hs.$n" | median); pcpu=$(cut -d' ' -f4 "$DIR/hs.$n" | median)
        printf "%-9s %10s %12s %13s %10s\n" "$n" "$cps" "$cpu" "$ccpu" "$pcpu"
        eval "RPS_$n=$cps; CPU_$n=$cpu"
    done
    ratios "full handshakes"
}
keep_cpu() {  # PREFIX: the last table's CPU per connection, kept for section 6
    local n
    for n in hscale hscale12 nginx nginx13 haproxy; do eval "$1_$n=\$CPU_$n"; done
}

new_conn_table "new TLS connection per request"
keep_cpu NEW
full_table "full handshakes only"
keep_cpu FULL

# 5. 3 and 4 with every proxy held to CAP % of a core (its own cgroup)
echo "-- every proxy held to $CAP % of one core (a CPU quota each): the clients have more CPU than the proxy"
capped=1
for t in hscale:$HS hscale12:$HS12 nginx:$NGW nginx13:$NG13W haproxy:$HAP; do
    cap_cpu "${t%%:*}" "${t#*:}" || { capped=0; break; }
done
if [ "$capped" = 1 ]; then
    run_table "TLS keep-alive, proxies at $CAP % of a core" 50 "$TLS_TARGETS"
    ratios "keep-alive"
    new_conn_table "new TLS connection per request, proxies at $CAP % of a core"
    keep_cpu NEWCAP
    full_table "full handshakes only, proxies at $CAP % of a core"
    keep_cpu FULLCAP
else
    echo "skipped: no writable cgroup CPU controller here (cgroup v2 cpu.max or v1 cpu.cfs_quota_us; needs root)"
fi
uncap_all

# 6. the library's floor, and what each proxy spends above it
echo "-- the library's floor: OpenSSL alone, in memory (bench/tls_floor.c: hscale's server settings, the server's calls timed)"
mkdir -p build/bench
if ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -Isrc bench/tls_floor.c src/http/tls_ctx.c \
        -o build/bench/tls_floor -lssl -lcrypto; then
    for kind in full resumed; do
        for v in 1.3 1.2; do
            # the least of 5 runs: on a shared machine noise only adds
            for _ in 1 2 3 4 5; do build/bench/tls_floor "$DIR/cert.pem" "$DIR/key.pem" $kind $v 2000; done \
                | awk '{ print $4 }' | sort -n | head -1 > "$DIR/floor.$kind.$v"
            printf "%-8s TLS %s  %8s us/conn\n" $kind $v "$(cat "$DIR/floor.$kind.$v")"
        done
    done
    echo "CPU per connection above the floor (the proxy's own code, the kernel, colder caches):"
    printf "%-9s %5s %-10s %12s %8s %12s %8s\n" target TLS table new_conn_us above full_us above
    for sfx in "" CAP; do
        for t in hscale:1.3 hscale12:1.2 nginx:1.2 nginx13:1.3 haproxy:1.3; do
            n=${t%%:*}; v=${t#*:}
            eval "nc=\${NEW${sfx}_$n:-}; fc=\${FULL${sfx}_$n:-}"
            [ -n "$nc" ] || continue
            awk -v n="$n" -v v="$v" -v tb="${sfx:+$CAP %}" -v nc="$nc" -v fc="$fc" \
                -v nf="$(cat "$DIR/floor.resumed.$v")" -v ff="$(cat "$DIR/floor.full.$v")" \
                'BEGIN { printf "%-9s %5s %-10s %12.1f %8.1f %12.1f %8.1f\n", n, v, tb ? tb : "uncapped", nc, nc - nf, fc, fc - ff }'
        done
        eval "ng=\${NEW${sfx}_nginx:-}; ngf=\${FULL${sfx}_nginx:-}"
        [ -n "$ng" ] || continue
        awk -v tb="${sfx:+at $CAP %}" -v ng="$ng" -v ngf="$ngf" -v f13="$(cat "$DIR/floor.resumed.1.3")" \
            -v ff13="$(cat "$DIR/floor.full.1.3")" \
            'BEGIN { printf "the most hscale at TLS 1.3 can make against nginx at TLS 1.2 %s, spending nothing above the floor: new connections %.2fx, full handshakes %.2fx (target 1.30x)\n", tb ? tb : "uncapped", ng / f13, ngf / ff13 }'
    done
else
    echo "skipped: bench/tls_floor.c did not build"
fi
