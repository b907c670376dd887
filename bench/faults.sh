#!/usr/bin/env bash
# faults.sh -- what a fault costs behind hscale, HAProxy and nginx, one run.
#
# Hung member: three static nginx backends (1 worker each) behind each
# proxy, configured alike from their defaults or the equivalent of hscale's
# (hscale: flags only; HAProxy and nginx: bench/peers/faults_*.conf, whose
# headers say what "alike" means), 50 connections of GET load from
# `hscale bench`. For each proxy:
#   1. before: BEFORE s of load, all backends up -> req/s;
#   2. hang: backend 2's worker is SIGSTOPped, HANG s of load -> req/s and
#      failures, then SIGCONT (fresh connections: the steady state of a hang);
#   3. in flight: load runs, backend 2 is SIGSTOPped 1.5 s in and woken HANG s
#      later, the run goes on 2 s past that: the slowest answer is how long
#      the requests caught on the hung backend waited (answered by a retry
#      elsewhere, or only when the backend woke up: then it is ~HANG s).
# and prints kept = hang/before for each, and hscale's ratios to the peers.
#
# Gateway kill -9 (hscale only): `hscale up` with 2 instances (min = max =
# 2), 50 connections on /health; the gateway is killed with SIGKILL 3 s in;
# prints the time until a new connection is served again (polled every
# 10 ms) and the load's failures by kind (the requests in flight at the kill
# fail with a reset; no 503: the new gateway starts with its state file).
#
# Control plane kill -9 (hscale only): `hscale gateway` and `hscale control`
# with 3 app instances, 50 connections on /health through the gateway;
# control gets SIGKILL 3 s into an 8 s run and is started again at once on
# the same state dir. Prints the load's failures, how many instances the new
# control plane adopted (and started anew: none is the point) and the time
# from the kill until all are adopted, ready and registered again.
#
# up kill -9 (hscale only): the same with the `hscale up` of the gateway
# kill: up gets SIGKILL, up is started again on the same data directory and
# adopts the gateway (gateway.pid) and the instances; then `hscale down`
# stops everything and the script checks that no process is left.
#
# Every process gets its own config under a temp dir and is stopped by PID;
# every load run is bounded by -d. Env: HSCALE_BIN (default build/hscale),
# BEFORE (s, 3), HANG (s, 8), CONNS (50).
set -u
cd "$(dirname "$0")/.."
HSCALE_BIN=${HSCALE_BIN:-build/hscale}
BEFORE=${BEFORE:-3}
HANG=${HANG:-8}
CONNS=${CONNS:-50}
DIR=$(mktemp -d /tmp/faults.XXXXXX)
PIDS=()
B1=19201; B2=19202; B3=19203; P_HS=19210; P_NG=19211; P_HA=19212
UP_GW=19220; UP_ADMIN=19221; UP_CTL=19222
CP_GW=19230; CP_ADMIN=19231; CP_CTL=19232

[ -x "$HSCALE_BIN" ] || { echo "hscale binary $HSCALE_BIN not found (make build/hscale)"; exit 1; }
HSCALE_BIN=$(realpath "$HSCALE_BIN")   # control runs in its own directory

cleanup() {
    # detached instances and gateways are no one's children: down finds them
    for d in "$DIR/up" "$DIR/cp"; do
        [ -d "$d" ] && "$HSCALE_BIN" down --data "$d" --timeout 30 > /dev/null 2>&1
    done
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for f in "$DIR"/*.pid "$DIR"/*/*.pid; do
        [ -f "$f" ] && { kill -CONT "$(cat "$f")" 2>/dev/null; kill "$(cat "$f")" 2>/dev/null; }
    done
    sleep 0.5
    rm -rf "$DIR"
}
trap cleanup EXIT

fill() {  # template dir port -> config path
    mkdir -p "$2"
    local out="$2/$(basename "$1")"
    sed -e "s|@DIR@|$2|g" -e "s|@PORT@|$3|g" -e "s|@WORKERS@|1|g" -e "s|@BACKEND@|$3|g" \
        -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" -e "s|@B3@|$B3|g" "$1" > "$out"
    echo "$out"
}

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# load URL SECONDS OUT -> hscale bench JSON report in OUT (bounded by -d)
load() {
    "$HSCALE_BIN" bench "$1" -c "$CONNS" -t 2 -d "${2}s" --timeout 70s --json "$3" -q > /dev/null 2>&1
}

# report.json -> "count rps failures max_ms errors"
summary() {
    /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
secs = float(sys.argv[2])
errs = ",".join(f"{k}={v}" for k, v in t["errors"].items() if v) or "none"
print(t["count"], int(t["count"] / secs), t["failures"], t["latency_ms"]["max"], errs)
EOF
}

ulimit -n 20000 2>/dev/null || true
for b in $B1 $B2 $B3; do
    nginx -c "$(fill bench/peers/gw_backend.conf "$DIR/b$b" $b)" -p "$DIR/b$b" || exit 1
    wait_port $b || { echo "backend $b did not start"; exit 1; }
done
HUNG=$(pgrep -P "$(cat "$DIR/b$B2/backend.pid")" | head -1)   # the worker that answers

nginx -c "$(fill bench/peers/faults_nginx.conf "$DIR/ng" $P_NG)" -p "$DIR/ng" && wait_port $P_NG
haproxy -D -f "$(fill bench/peers/faults_haproxy.cfg "$DIR/ha" $P_HA)" && wait_port $P_HA
"$HSCALE_BIN" gateway --listen 127.0.0.1:$P_HS --backend 127.0.0.1:$B1 --backend 127.0.0.1:$B2 \
    --backend 127.0.0.1:$B3 --workers 1 > "$DIR/hscale.log" 2>&1 &
PIDS+=($!)
wait_port $P_HS || { echo "hscale gateway did not start: $(tail -1 "$DIR/hscale.log")"; exit 1; }

echo "== hung member: 3 backends, $CONNS connections, backend 2 SIGSTOPped (before ${BEFORE}s, hang ${HANG}s)"
printf "%-8s %12s %12s %7s %9s %16s  %s\n" proxy before_rps hang_rps kept failures inflight_max_ms errors
for t in hscale:$P_HS haproxy:$P_HA nginx:$P_NG; do
    IFS=: read -r n port <<< "$t"
    url="http://127.0.0.1:$port/"
    load "$url" "$BEFORE" "$DIR/$n.before.json"
    read -r _ before _ _ _ <<< "$(summary "$DIR/$n.before.json" "$BEFORE")"
    kill -STOP "$HUNG"
    load "$url" "$HANG" "$DIR/$n.hang.json"
    kill -CONT "$HUNG"
    read -r _ hang hfail _ herrs <<< "$(summary "$DIR/$n.hang.json" "$HANG")"
    sleep 2      # the woken backend answers what it held; the proxy settles
    load "$url" $((HANG + 4)) "$DIR/$n.inflight.json" &
    lp=$!
    sleep 1.5
    kill -STOP "$HUNG"
    sleep "$HANG"
    kill -CONT "$HUNG"
    wait "$lp"
    read -r _ _ ifail imax ierrs <<< "$(summary "$DIR/$n.inflight.json" $((HANG + 4)))"
    awk -v n="$n" -v b="$before" -v h="$hang" -v f=$((hfail + ifail)) -v m="$imax" -v e="$herrs/$ierrs" \
        'BEGIN { printf "%-8s %12d %12d %6.0f%% %9d %16.1f  %s\n", n, b, h, b ? 100 * h / b : 0, f, m, e }'
    eval "KEPT_$n=\$(awk -v b=$before -v h=$hang 'BEGIN { print b ? h / b : 0 }'); MAX_$n=$imax"
    sleep 2
done
awk -v h="$KEPT_hscale" -v a="$KEPT_haproxy" -v g="$KEPT_nginx" -v mh="$MAX_hscale" -v ma="$MAX_haproxy" -v mg="$MAX_nginx" \
    'BEGIN { printf "kept throughput: hscale %.0f%%, haproxy %.0f%%, nginx %.0f%% (hscale/haproxy %.1fx, hscale/nginx %.1fx)\n", 100*h, 100*a, 100*g, a ? h/a : 0, g ? h/g : 0
             printf "in-flight on the hung backend answered after: hscale %.0f ms, haproxy %.0f ms, nginx %.0f ms\n", mh, ma, mg }'
kill "${PIDS[0]}" 2>/dev/null
kill "$(cat "$DIR/ng/nginx.pid")" "$(cat "$DIR/ha/haproxy.pid")" 2>/dev/null

echo "== gateway kill -9 under hscale up (2 instances, $CONNS connections on /health)"
cat > "$DIR/up.yaml" <<'EOF'
control:
  check_interval: 500ms
autoscaling:
  enabled: false
EOF
"$HSCALE_BIN" up --listen 127.0.0.1:$UP_GW --admin 127.0.0.1:$UP_ADMIN --control 127.0.0.1:$UP_CTL \
    --data "$DIR/up" -c "$DIR/up.yaml" --instances 2 --min 2 --max 2 > "$DIR/up.log" 2>&1 &
UP=$!; PIDS+=($UP)
for _ in $(seq 300); do
    n=$(curl -s "http://127.0.0.1:$UP_ADMIN/api/v1/pools" | /usr/bin/python3 -c \
        'import json,sys; print(sum(len(p["members"]) for p in json.load(sys.stdin)["pools"]))' 2>/dev/null)
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.1
done
[ "${n:-0}" -ge 2 ] || { echo "hscale up did not register 2 instances: $(tail -3 "$DIR/up.log")"; exit 1; }
load "http://127.0.0.1:$UP_GW/health" 8 "$DIR/kill.json" &
lp=$!
sleep 3
GW=$(pgrep -P "$UP" -f " gateway " | head -1)
kill -9 "$GW"
t0=$(date +%s%N)
for _ in $(seq 500); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$UP_GW/health")
    NEW=$(pgrep -P "$UP" -f " gateway " | head -1)
    [ "$code" = 200 ] && [ -n "$NEW" ] && [ "$NEW" != "$GW" ] && break
    sleep 0.01
done
t1=$(date +%s%N)
wait "$lp"
read -r count _ fails _ errs <<< "$(summary "$DIR/kill.json" 8)"
awk -v d=$(( (t1 - t0) / 1000000 )) -v c="$count" -v f="$fails" -v e="$errs" -v k="$CONNS" \
    'BEGIN { printf "serving again %d ms after the kill; %d requests, %d failed (%s; %d connections were in flight)\n", d, c, f, e, k }'
grep -h "members restored" "$DIR/up/gateway.log" | tail -1 | sed 's/^.*state_file [^:]*: /restarted gateway: /'

# ready_registered PORT -> "id:pid ..." of the ready, registered instances
ready_registered() {
    curl -s --max-time 2 "http://127.0.0.1:$1/api/v1/instances" | /usr/bin/python3 -c '
import json, sys
ins = [i for i in json.load(sys.stdin)["instances"] if i["state"] == "ready" and i["registered"]]
print(" ".join(sorted(i["id"] + ":" + str(i["pid"]) for i in ins)))' 2>/dev/null
}

# wait_instances PORT N -> waits (up to 30 s) for N ready registered; prints them
wait_instances() {
    local got="" until=$(( $(date +%s) + 30 ))
    while [ "$(date +%s)" -lt "$until" ]; do
        got=$(ready_registered "$1")
        [ "$(wc -w <<< "$got")" -eq "$2" ] && { echo "$got"; return 0; }
        sleep 0.01
    done
    echo "$got"
    return 1
}

# adoption_report NAME REPORT LOG N T_KILL T_ADOPTED
adoption_report() {
    local count fails errs adopted started
    read -r count _ fails _ errs <<< "$(summary "$2" 8)"
    adopted=$(grep -c " adopted (pid " "$3")
    started=$(grep -c " started at " "$3")
    awk -v n="$1" -v c="$count" -v f="$fails" -v e="$errs" -v a="$adopted" -v k="$4" -v s="$started" \
        -v d=$(( ($6 - $5) / 1000000 )) \
        'BEGIN { printf "%s: %d requests, %d failed (%s); adopted %d of %d (started anew: %d); all adopted, ready and registered %d ms after the kill\n", n, c, f, e, a, k, s, d }'
}

echo "== control plane kill -9 (hscale gateway + hscale control, 3 instances, $CONNS connections on /health)"
mkdir -p "$DIR/cp"
cat > "$DIR/cp/gw.yaml" <<'YAML'
gateway:
  pools:
    - name: app
      backends: []
  routes: [{prefix: /, pool: app}]
YAML
"$HSCALE_BIN" gateway -c "$DIR/cp/gw.yaml" --listen 127.0.0.1:$CP_GW --admin 127.0.0.1:$CP_ADMIN \
    --workers 1 > "$DIR/cp/gateway.log" 2>&1 &
PIDS+=($!)
wait_port $CP_ADMIN || { echo "gateway did not start: $(tail -1 "$DIR/cp/gateway.log")"; exit 1; }
ctl() {
    (cd "$DIR/cp" && exec "$HSCALE_BIN" control --listen 127.0.0.1:$CP_CTL \
        --gateway http://127.0.0.1:$CP_ADMIN --pool app --instances 3 --state-dir "$DIR/cp" \
        --drain-timeout 5s > "$DIR/cp/$1" 2>&1) &
    CTL=$!; PIDS+=($CTL)
}
ctl control1.log
BEFORE_IDS=$(wait_instances $CP_CTL 3) || { echo "control did not get 3 instances ready: $(tail -3 "$DIR/cp/control1.log")"; exit 1; }
load "http://127.0.0.1:$CP_GW/health" 8 "$DIR/cp.json" &
lp=$!
sleep 3
exec 3>&2 2>/dev/null   # no "Killed" line from the shell
kill -9 "$CTL"
t0=$(date +%s%N)
wait "$CTL"
exec 2>&3 3>&-
ctl control2.log
AFTER_IDS=$(wait_instances $CP_CTL 3)
t1=$(date +%s%N)
wait "$lp"
adoption_report "control kill -9" "$DIR/cp.json" "$DIR/cp/control2.log" 3 "$t0" "$t1"
if [ "$BEFORE_IDS" = "$AFTER_IDS" ]; then echo "same ids and pids after adoption: $AFTER_IDS"
else echo "ids/pids CHANGED: before $BEFORE_IDS, after $AFTER_IDS"; fi
kill "$CTL"; wait "$CTL" 2>/dev/null

echo "== hscale up kill -9 (2 instances, $CONNS connections on /health), then hscale down"
BEFORE_IDS=$(wait_instances $UP_CTL 2)
GWPID=$(cut -d' ' -f1 "$DIR/up/gateway.pid")
load "http://127.0.0.1:$UP_GW/health" 8 "$DIR/upkill.json" &
lp=$!
sleep 3
exec 3>&2 2>/dev/null
kill -9 "$UP"
t0=$(date +%s%N)
wait "$UP"
exec 2>&3 3>&-
"$HSCALE_BIN" up --listen 127.0.0.1:$UP_GW --admin 127.0.0.1:$UP_ADMIN --control 127.0.0.1:$UP_CTL \
    --data "$DIR/up" -c "$DIR/up.yaml" --instances 2 --min 2 --max 2 > "$DIR/up2.log" 2>&1 &
UP=$!; PIDS+=($UP)
AFTER_IDS=$(wait_instances $UP_CTL 2)
t1=$(date +%s%N)
wait "$lp"
adoption_report "up kill -9" "$DIR/upkill.json" "$DIR/up2.log" 2 "$t0" "$t1"
if grep -q "adopted the running gateway (pid $GWPID)" "$DIR/up2.log"; then echo "gateway pid $GWPID adopted"
else echo "gateway NOT adopted: $(grep -m1 gateway "$DIR/up2.log")"; fi
if [ "$BEFORE_IDS" = "$AFTER_IDS" ]; then echo "same ids and pids after adoption: $AFTER_IDS"
else echo "ids/pids CHANGED: before $BEFORE_IDS, after $AFTER_IDS"; fi
t0=$(date +%s%N)
"$HSCALE_BIN" down --data "$DIR/up" > "$DIR/down.log" 2>&1
t1=$(date +%s%N)
left=0
for p in $UP $GWPID $(tr ' ' '\n' <<< "$AFTER_IDS" | cut -d: -f2); do
    [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && left=$((left + 1))
done
echo "$(tail -1 "$DIR/down.log") in $(( (t1 - t0) / 1000000 )) ms; processes left: $left"
