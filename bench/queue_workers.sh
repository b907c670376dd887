#!/usr/bin/env bash
# queue_workers.sh -- a Celery worker service on `hscale control`, scaled on
# its Redis queue from and to zero (template port: none, autoscaling.queue):
#
#   1. seconds from the first task enqueued, with the service at zero, to
#      that task started in a worker (target < 2 s), ROUNDS times; beside
#      it the floor: the same task with a worker started by hand at the
#      moment of the enqueue (Celery's own start-up), the ratio, and
#      hscale's own part: seconds to the worker's launch (one poll);
#   2. TASKS tasks (TASK_MS each) enqueued at zero, run while the service
#      scales out to MAX and back to zero: tasks lost and tasks run twice
#      (target 0 and 0), with the peak count and the seconds until zero.
#
#   bench/queue_workers.sh       ROUNDS=3 TASKS=500 TASK_MS=50 MAX=4 PER=25
#
# Everything runs on loopback: a redis-server started here on a free port,
# the Celery app written to a temporary directory, the release build (or
# HSCALE_BIN). Every wait is bounded; everything is stopped by PID at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSCALE=${HSCALE_BIN:-$ROOT/build/hscale}
PY=${PYTHON:-/usr/bin/python3}
ROUNDS=${ROUNDS:-3}
TASKS=${TASKS:-500}
TASK_MS=${TASK_MS:-50}
MAX=${MAX:-4}
PER=${PER:-25}
POLL=${POLL:-1s}

[ -x "$HSCALE" ] || { echo "queue_workers: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }
command -v redis-server > /dev/null || { echo "queue_workers: needs redis-server" >&2; exit 1; }
"$PY" -c 'import celery, redis' 2> /dev/null || { echo "queue_workers: needs python3-celery and python3-redis" >&2; exit 1; }

TMP=$(mktemp -d /tmp/queue_workers.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  [ -n "${QW_KEEP:-}" ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" > /dev/null 2>&1 &
PIDS+=($!)
BROKER="redis://127.0.0.1:$RPORT/0"
export BROKER
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping > /dev/null 2>&1 && break; sleep 0.05; done

cat > "$TMP/tasks.py" <<'EOF'
import os, time
import redis
from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER"])
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True, worker_hijack_root_logger=False)
r = redis.Redis.from_url(os.environ["BROKER"])


@app.task(name="tasks.work", bind=True)
def work(self, tid, secs=0.0):
    r.rpush("t:started", "%s %.6f %s" % (tid, time.time(), self.request.hostname))
    if secs:
        time.sleep(secs)
    r.rpush("t:done", tid)
EOF

WORKER="$PY -m celery -A tasks worker --concurrency 2 --without-mingle --without-gossip --without-heartbeat"

# Enqueues n tasks, waits (bounded) for the first to start and, with
# all=1, for every one to be done; prints "first_start_s". A worker command
# after the three arguments is started right after the enqueue (the floor)
# and stopped at the end.
cat > "$TMP/drive.py" <<'EOF'
import os, subprocess, sys, time
import redis
from celery import Celery
n, secs, wait_all = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
hand_cmd = sys.argv[4:]   # the floor's worker (run with a broker in another database)
r = redis.Redis.from_url(os.environ["BROKER"], decode_responses=True)
r.delete("t:started", "t:done")
app = Celery("client", broker=os.environ["BROKER"])
app.connection().ensure_connection()
t0 = time.time()
for i in range(n):
    app.send_task("tasks.work", args=[i, secs])
hand = subprocess.Popen(hand_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
    if hand_cmd else None
deadline = t0 + 60
launch = None
ctl = os.environ.get("QW_CTL")
while not r.llen("t:started") and time.time() < deadline:
    if ctl and launch is None:   # hscale's part: the worker launched
        import json, urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{ctl}/api/v1/scaling/status", timeout=2) as h:
            st = [i["started_at"] for i in json.load(h)["instances"] if i["started_at"]]
        launch = min(st) - t0 if st else None
    time.sleep(0.01)
first = r.lindex("t:started", 0)
print("nan" if first is None else "%.3f" % (float(first.split()[1]) - t0),
      "%.3f" % launch if launch is not None else "")
if os.environ.get("QW_DEBUG"):
    print(first, file=sys.stderr)
deadline = time.time() + 300
while first is not None and wait_all and r.llen("t:done") < n and time.time() < deadline:
    time.sleep(0.05)
if hand:
    hand.terminate()
    hand.wait(60)
EOF

count_instances() {
  "$PY" - "$1" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/scaling/status", timeout=2) as r:
    print(len(json.load(r)["instances"]))
EOF
}

# Waits (bounded) until the service has n instances.
wait_count() {
  local ctl=$1 n=$2 secs=$3
  for _ in $(seq 1 $((secs * 20))); do
    [ "$(count_instances "$ctl" 2> /dev/null || echo -1)" = "$n" ] && return 0
    sleep 0.05
  done
  echo "queue_workers: not at $n instances after ${secs}s" >&2
  return 1
}

CTL=$(port)
cat > "$TMP/hscale.yaml" <<EOF
control:
  listen: 127.0.0.1:$CTL
  state_dir: $TMP/state
  sd_file: ""
  instances: 0
  stop_grace: 60s
  template:
    command: "$WORKER -n {id}@%h -l warning"
    workdir: $TMP
    env: ["BROKER=$BROKER"]
    port: none
autoscaling:
  enabled: true
  min_instances: 0
  max_instances: $MAX
  scale_out_cooldown: 1s
  scale_in_cooldown: 2s
  scale_in_stabilization: 2s
  queue: {redis: "$BROKER", list: celery, per_instance: $PER, poll_interval: $POLL, idle_to_zero: 2s}
EOF
"$HSCALE" control -c "$TMP/hscale.yaml" > "$TMP/control.log" 2>&1 &
CTLPID=$!
PIDS+=($CTLPID)
wait_count "$CTL" 0 20

echo "== 1. first task from zero (poll $POLL), $ROUNDS rounds"
printf '%-6s %16s %18s %8s %18s\n' round "hscale from 0 s" "worker by hand s" ratio "(worker launched)"
hs_all=() hand_all=() launch_all=()
for r in $(seq 1 "$ROUNDS"); do
  out=$(cd "$TMP" && QW_CTL=$CTL "$PY" drive.py 1 0 1)
  read -r hs launch <<< "$out"
  wait_count "$CTL" 0 60
  # the floor: a worker started by hand right after the enqueue, on Redis
  # database 1: kombu's unacked hash is per database, and hscale must not
  # see (and start a worker for) this task
  out=$(cd "$TMP" && BROKER="${BROKER%/0}/1" "$PY" drive.py 1 0 1 $WORKER -n "hand$r@%h" -l warning)
  read -r hand _ <<< "$out"
  printf '%-6s %16s %18s %8s %18s\n' "$r" "$hs" "$hand" \
    "$("$PY" -c "print('%.2f' % (float('$hs') / float('$hand')))")" "${launch:-?}"
  hs_all+=("$hs") hand_all+=("$hand") launch_all+=("${launch:-nan}")
done
"$PY" - "${hs_all[*]}" "${hand_all[*]}" "${launch_all[*]}" <<'EOF'
import statistics, sys
hs, hand, launch = ([float(x) for x in a.split()] for a in sys.argv[1:4])
if any(x != x for x in hs + hand):
    print("a round saw no task start within 60 s")
print(f"median  {statistics.median(hs):16.3f} {statistics.median(hand):18.3f} "
      f"{statistics.median(hs) / statistics.median(hand):8.2f} {statistics.median(launch):18.3f}"
      "   (target: hscale < 2 s)")
EOF

echo "== 2. $TASKS tasks of ${TASK_MS} ms enqueued at zero, max $MAX workers, $PER per worker"
t0=$("$PY" -c 'import time; print(time.time())')
out=$(cd "$TMP" && "$PY" drive.py "$TASKS" "$("$PY" -c "print($TASK_MS / 1000)")" 1)
read -r first _ <<< "$out"
done_t=$("$PY" -c 'import time; print(time.time())')
wait_count "$CTL" 0 120
zero_t=$("$PY" -c 'import time; print(time.time())')
"$PY" - "$TASKS" "$first" "$t0" "$done_t" "$zero_t" "$CTL" <<'EOF'
import json, os, sys, urllib.request
import redis
n, first, t0, done_t, zero_t, ctl = int(sys.argv[1]), sys.argv[2], *map(float, sys.argv[3:6]), sys.argv[6]
r = redis.Redis.from_url(os.environ["BROKER"], decode_responses=True)
done = [int(x) for x in r.lrange("t:done", 0, -1)]
started = [int(x.split()[0]) for x in r.lrange("t:started", 0, -1)]
lost = len(set(range(n)) - set(done))
twice = len(started) - len(set(started))
with urllib.request.urlopen(f"http://127.0.0.1:{ctl}/api/v1/scaling/history?limit=1000", timeout=2) as h:
    ev = [e for e in json.load(h)["events"] if e["kind"] in ("scale_out", "scale_in")]
peak = max([e["new"] for e in ev] or [0])
print(f"first task started   {first} s after the first enqueue")
print(f"all done in          {done_t - t0:.2f} s; back at zero {zero_t - done_t:.2f} s later")
print(f"peak workers         {peak}; scaling events {len(ev)}: " + ", ".join(
    f"{e['old']}->{e['new']}@{e['time'] - int(t0)}s" for e in reversed(ev)))
print(f"tasks lost           {lost}   (target 0)")
print(f"tasks run twice      {twice}   (target 0)")
EOF
