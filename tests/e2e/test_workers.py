"""Workers with no port, scaled on queue depth, end to end: a real
redis-server and a real Celery app (its Redis broker, kombu's keys) under
`hscale control` with `template.port: none` and `autoscaling.queue`.

- 500 tasks enqueued while the worker service is at zero all run exactly
  once while it scales out and back to zero; the first one starts within
  seconds of the first enqueue;
- a worker scaled in while busy finishes its task (SIGTERM to the main
  process: Celery's warm shutdown), and with acks_late the reserved task
  keeps the fleet from scaling in at all;
- the same policy on a JSON document and on a Prometheus-shaped answer,
  with an unreachable source holding the count;
- `{port}` in a worker's command is refused at start, naming the key."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, read_log, run_hscale, wait_port
from pg_fixture import redis_addr  # noqa: F401 (fixture)
from up_util import wait_until

PY = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    not shutil.which("redis-server")
    or subprocess.run([PY, "-c", "import celery, redis"], capture_output=True).returncode != 0,
    reason="needs redis-server, python3-celery and python3-redis")

TASKS_PY = '''
import os, time
import redis
from celery import Celery

BROKER = os.environ["BROKER"]
app = Celery("tasks", broker=BROKER)
app.conf.update(worker_prefetch_multiplier=1,
                task_acks_late=os.environ.get("ACKS_LATE") == "1",
                worker_hijack_root_logger=False)
r = redis.Redis.from_url(BROKER)


@app.task(name="tasks.work")
def work(tid, secs=0.0):
    r.rpush("t:started", "%s %.6f" % (tid, time.time()))
    if secs:
        time.sleep(secs)
    r.rpush("t:done", tid)
'''

WORKER_CMD = (f"{PY} -m celery -A tasks worker --concurrency 2 --without-mingle "
              "--without-gossip --without-heartbeat -n {id}@%h -l info")


@pytest.fixture
def broker(redis_addr):  # noqa: F811 (the module's redis-server, emptied per test)
    url = f"redis://{redis_addr}/0"
    rclient(url).flushall()
    return url


def rclient(url):
    import redis
    return redis.Redis.from_url(url, decode_responses=True)


def api(port, method, path, body=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"} if body is not None else {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else None


def holds_for(pred, secs, what, step=0.1):
    """Checks pred at every step for secs: an observation window, not a wait."""
    end = time.time() + secs
    while time.time() < end:
        assert pred(), f"{what}: broken after {secs - (end - time.time()):.1f} s"
        time.sleep(step)


def instances(port):
    return api(port, "GET", "/api/v1/scaling/status")[1]["instances"]


def history(port):
    return api(port, "GET", "/api/v1/scaling/history?limit=1000")[1]["events"][::-1]


def start_control(procs, tmp_path, broker, *, queue, extra="", template="", command=WORKER_CMD,
                  acks_late=False, instances=0, max_instances=4):
    (tmp_path / "tasks.py").write_text(TASKS_PY)
    port = free_port()
    cfg = tmp_path / "hscale.yaml"
    cfg.write_text(f"""
control:
  listen: 127.0.0.1:{port}
  state_dir: {tmp_path}/state
  sd_file: ""
  instances: {instances}
  stop_grace: 60s
  template:
    command: "{command}"
    workdir: {tmp_path}
    env: ["BROKER={broker}", "ACKS_LATE={1 if acks_late else 0}"]
    port: none
{template}
autoscaling:
  enabled: true
  min_instances: 0
  max_instances: {max_instances}
  scale_out_cooldown: 1s
  scale_in_cooldown: 2s
  scale_in_stabilization: 2s
  queue: {queue}
{extra}
""")
    p = procs.hscale("control", "-c", str(cfg), cwd=str(tmp_path))
    wait_port(port, proc=p, timeout=20)
    return p, port


def sender(broker):
    from celery import Celery
    return Celery("client", broker=broker)


def test_500_tasks_from_zero_run_exactly_once_and_the_fleet_returns_to_zero(
        procs, tmp_path, broker):
    ctl, port = start_control(
        procs, tmp_path, broker, acks_late=True,
        queue=f'{{redis: "{broker}", list: celery, per_instance: 25, idle_to_zero: 3s}}')
    r = rclient(broker)
    assert instances(port) == []
    app = sender(broker)
    t0 = time.time()
    for i in range(500):
        app.send_task("tasks.work", args=[i, 0.05])
    enqueued = time.time()

    launched = wait_until(lambda: [i["started_at"] for i in instances(port) if i["started_at"]], 10,
                          "a worker launched")
    launch = min(launched) - t0
    first = wait_until(lambda: r.lindex("t:started", 0), 30, "the first task to start")
    first_start = float(first.split()[1]) - t0
    wait_until(lambda: r.llen("t:done") >= 500, 180, "500 tasks done")
    wait_until(lambda: instances(port) == [], 60, "the fleet back at zero")

    done = [int(x) for x in r.lrange("t:done", 0, -1)]
    assert sorted(done) == list(range(500)), (
        f"missing {sorted(set(range(500)) - set(done))[:10]}, "
        f"twice {sorted(x for x in set(done) if done.count(x) > 1)[:10]}")
    assert r.llen("t:started") == 500, "a task started twice"
    print(f"\nfirst worker launched {launch:.2f} s and first task started {first_start:.2f} s "
          f"after the first enqueue (500 enqueued in {enqueued - t0:.2f} s)")
    # hscale's part: the first poll (1 s) launches a worker; the rest is
    # Celery's own start-up, seconds on a loaded 2-core machine
    assert launch < 2.0, f"first worker launched {launch:.2f} s after the first enqueue"
    assert first_start < 10.0, f"first task started {first_start:.2f} s after the first enqueue"

    ev = [e for e in history(port) if e["kind"] in ("scale_out", "scale_in")]
    assert ev[0]["old"] == 0 and ev[0]["new"] == 1 and ev[0]["policy"] == "queue", ev[0]
    assert "from zero" in ev[0]["reason"] and ev[0]["queue"]["depth"] > 0, ev[0]
    assert max(e["new"] for e in ev) == 4, [(e["old"], e["new"]) for e in ev]
    last = ev[-1]
    assert last["kind"] == "scale_in" and last["new"] == 0 and "to zero" in last["reason"], last
    assert last["queue"]["depth"] == 0 and last["queue"]["unacked"] == 0, last
    log = read_log(ctl)
    assert "killing it" not in log, "every worker stopped within stop_grace"
    assert procs.stop(ctl, timeout=30) == 0


def busy_worker_run(procs, tmp_path, broker, acks_late):
    ctl, port = start_control(
        procs, tmp_path, broker, acks_late=acks_late, max_instances=2,
        queue=f'{{redis: "{broker}", list: celery, per_instance: 1, idle_to_zero: 2s}}')
    r = rclient(broker)
    sender(broker).send_task("tasks.work", args=["slow", 6])
    wait_until(lambda: r.llen("t:started") == 1, 30, "the slow task to start")
    started = time.time()
    pid = wait_until(lambda: [i["pid"] for i in instances(port) if i["state"] == "ready"], 10,
                     "a ready worker")[0]
    wait_until(lambda: r.llen("t:done") == 1, 30, "the slow task to finish")
    done_at = time.time()
    wait_until(lambda: instances(port) == [], 30, "the fleet back at zero")
    gone_at = time.time()
    assert r.lrange("t:done", 0, -1) == ["slow"] and r.llen("t:started") == 1
    try:
        os.kill(pid, 0)
        alive = open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        alive = False
    assert not alive
    to_zero = [e for e in history(port) if e["kind"] == "scale_in" and e["new"] == 0]
    assert to_zero, history(port)
    log = read_log(ctl)
    assert "killing it" not in log and "SIGTERM to its main process" in log, log[-2000:]
    assert procs.stop(ctl, timeout=30) == 0
    return started, done_at, gone_at, to_zero[0]["time"], log


def test_a_worker_scaled_in_while_busy_finishes_its_task(procs, tmp_path, broker):
    # Early acknowledgement (Celery's default): the running task is not in
    # the broker any more, so the queue reads empty and the service goes
    # to zero while the task runs; the warm shutdown lets it finish.
    started, done_at, gone_at, zero_t, log = busy_worker_run(procs, tmp_path, broker, False)
    assert zero_t < done_at - 1, "scaled in while the task was still running"
    logs = tmp_path / "state" / "logs"
    assert any("Warm shutdown" in f.read_text() for f in logs.iterdir()), "Celery's warm shutdown"



def test_with_acks_late_the_running_task_keeps_its_worker(procs, tmp_path, broker):
    # acks_late: the running task stays in kombu's unacked hash, counted in
    # the depth, so nothing scales in until it is done.
    started, done_at, gone_at, zero_t, log = busy_worker_run(procs, tmp_path, broker, True)
    assert zero_t >= int(done_at) - 1, "no scale-in while the task was reserved"
    assert gone_at - done_at >= 1.5, "idle_to_zero counted from the task's acknowledgement"


class Source:
    """A depth source the test steers: GET /stats (a JSON document) and
    GET /api/v1/query (a Prometheus instant query's answer)."""

    def __init__(self):
        self.depth = 0
        self.fail = False
        self.queries = []
        src = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                if src.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                if self.path.startswith("/api/v1/query"):
                    src.queries.append(self.path)
                    body = {"status": "success", "data": {"resultType": "vector", "result": (
                        [{"metric": {"queue": "jobs"}, "value": [time.time(), str(src.depth)]}]
                        if src.depth else [])}}
                else:
                    body = {"stats": {"queues": [{"name": "jobs", "depth": src.depth}]}}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("kind", ["json", "prometheus"])
def test_depth_from_a_json_document_or_prometheus(procs, tmp_path, broker, kind):
    src = Source()
    try:
        url = f"http://127.0.0.1:{src.port}"
        queue = (f'{{url: "{url}/stats", json: "stats.queues.0.depth", per_instance: 2, '
                 f'idle_to_zero: 1s, poll_interval: 250ms}}' if kind == "json" else
                 f'{{prometheus: {{url: "{url}", query: "sum(queue_depth{{queue=\\"jobs\\"}})"}}, '
                 f'per_instance: 2, idle_to_zero: 1s, poll_interval: 250ms}}')
        ctl, port = start_control(procs, tmp_path, broker, queue=queue, max_instances=4,
                                  command=f"{PY} -c 'import time; time.sleep(600)'")
        assert instances(port) == []
        src.depth = 7                                   # ceil(7 / 2) = 4
        wait_until(lambda: len(instances(port)) == 4, 20, "4 workers")
        q = api(port, "GET", "/api/v1/scaling/status")[1]["autoscaling"]["queue"]
        assert q["depth"] == 7 and q["error"] is None, q
        assert all(i["address"] == "" and not i["registered"] for i in instances(port))
        src.fail = True                                 # unreachable: held, not zero
        wait_until(lambda: "queue depth unknown" in read_log(ctl), 10, "the error logged")
        wait_until(lambda: "answered 500" in (api(port, "GET", "/api/v1/scaling/status")[1]
                                               ["autoscaling"]["queue"]["error"] or ""),
                   5, "the error in the status")
        q = api(port, "GET", "/api/v1/scaling/status")[1]["autoscaling"]["queue"]
        assert q["depth"] is None, q
        holds_for(lambda: len(instances(port)) == 4, 3, "4 workers through 3 s of errors "
                  "(idle_to_zero is 1 s)")
        assert read_log(ctl).count("queue depth unknown") == 1, "logged once, not per poll"
        src.fail = False
        src.depth = 0
        wait_until(lambda: instances(port) == [], 20, "back to zero")
        assert "queue depth readable again" in read_log(ctl)
        if kind == "prometheus":
            assert src.queries[0].startswith("/api/v1/query?query=sum%28queue_depth%7Bqueue%3D%22jobs"), \
                src.queries[0]
        ev = [e for e in history(port) if e["kind"] == "scale_out"]
        assert ev[0]["old"] == 0 and ev[0]["queue"]["depth"] == 7, ev[0]
        assert procs.stop(ctl, timeout=30) == 0
    finally:
        src.close()


def test_port_placeholder_in_a_worker_is_refused_at_start(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text('control:\n  template:\n    command: "worker --port {port}"\n    port: none\n')
    r = run_hscale("control", "-c", str(cfg), "--check")
    assert r.returncode == 2, r
    assert "control.template.command" in r.stderr and "{port}" in r.stderr \
        and "port: none" in r.stderr, r.stderr
