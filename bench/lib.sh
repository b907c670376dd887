# lib.sh -- helpers the side-by-side benchmarks share; sourced after the
# script has cd'ed to the repository root. A script sets DIR (its temp
# directory) and PIDS (processes it started) before `trap cleanup EXIT`.
# Every process is stopped by its PID (or the pid file it wrote into DIR);
# nothing is looked up by name.

# The binary under test and the Python with the test packages.
HSCALE=${HSCALE_BIN:-$PWD/build/hscale}
PY=/usr/bin/python3

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for f in "$DIR"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.5
    rm -rf "$DIR"
}

# Waits up to 5 s for a listener on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# CPU ticks (user + system) a process has used; 0 when it is gone.
ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# The median of the numbers on stdin, one per line (the mean of the middle
# two for an even count).
median() {
    sort -n | awk '{ a[NR] = $1 } END { print (NR == 0) ? 0 : (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# A free loopback TCP port (bound to 0 and released).
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# How many instances of service $2 are ready and registered, asked of the
# control plane on 127.0.0.1:$1 (0 while it does not answer).
ready_registered() {
    curl -sf "http://127.0.0.1:$1/api/v1/services/$2/instances" | /usr/bin/python3 -c '
import json, sys
print(sum(1 for i in json.load(sys.stdin)["instances"] if i["state"] == "ready" and i["registered"]))' 2>/dev/null || echo 0
}
