"""CPU and memory of an instance that exports no /metrics, measured by the
operating system: `hscale control` runs a process-driver template whose
command is a small Python http.server with two forked children (written
here into tmp_path). The children burn CPU when the instance is told to
(GET /burn, straight to the instance), so one instance is busy and its
sibling idle. The control plane must read the whole process tree: the
busy one's CPU is its children's (the root itself stays idle), the idle
one low, memory non-null and large enough to
hold the children's allocations; the API, `hscale status`, and the control
plane's own /metrics agree; with the instance in its own cgroup v2 group
the CPU comes from the cgroup. CPU target tracking scales that service out
and back in; `uvicorn --workers 2` is one instance with the CPU of its
whole tree; exec-driver instances (no pid) are measured from /metrics.

Two cores are shared with other work, so the busy figure is not held to a
fixed number of cores (two busy children get less than that on a loaded
machine) but to the tree's CPU the test reads from /proc itself over the
same seconds: a figure of one process would be half of it."""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import free_port, run_hscale, wait_port
from up_util import wait_until

INSTANCE = r'''
import mmap, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

port = int(sys.argv[1])
cgroup = sys.argv[2] if len(sys.argv) > 2 else ""
if cgroup:
    # its own cgroup v2 group, before anything is forked: the whole tree is in it
    os.makedirs(cgroup, exist_ok=True)
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))

flag = mmap.mmap(-1, 1)          # shared with the children: 1 = burn
root = os.getpid()
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        ballast = bytearray(os.urandom(1024)) * (40 * 1024)   # 40 MiB, touched
        while os.getppid() == root:
            if flag[0]:
                end = time.monotonic() + 0.05
                while time.monotonic() < end:
                    pass
            else:
                time.sleep(0.05)
        os._exit(0)
    kids.append(pid)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/health", "/burn", "/idle"):
            if self.path != "/health":
                flag[0] = 1 if self.path == "/burn" else 0
            body = b"ok\n"
            self.send_response(200)
        else:
            body = b"not here\n"          # no /metrics: this service exports none
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

def stop(sig, frame):
    for k in kids:
        try:
            os.kill(k, signal.SIGTERM)
        except OSError:
            pass
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


def api(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def get_json(port, path):
    code, data = api(port, path)
    assert code == 200, data
    return json.loads(data)


def instances(port):
    return {i["id"]: i for i in get_json(port, "/api/v1/scaling/metrics")["instances"]}


def hit(address, path):
    host, port = address.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200


def run_control(procs, tmp_path, control, instances, check="1s", most=None, autoscaling=""):
    """`hscale control` with `control` (YAML lines under control:) and the
    autoscaler measuring every `check`, its count pinned to `instances`
    (or up to `most`), more `autoscaling` lines. Returns (process, port)."""
    cfg = tmp_path / "hscale.yaml"
    cfg.write_text(f"control:\n{control}autoscaling:\n  enabled: true\n"
                   f"  check_interval: {check}\n  min_instances: {instances}\n"
                   f"  max_instances: {most or instances}\n  cpu_cores: 1\n"
                   f"  memory_limit: 1GiB\n{autoscaling}")
    port = free_port()
    p = procs.hscale("control", "-c", str(cfg), "--listen", f"127.0.0.1:{port}",
                     "--instances", str(instances), "--state-dir", str(tmp_path / "control"),
                     "--drain-timeout", "1s", cwd=str(tmp_path))
    wait_port(port, proc=p, timeout=20)
    return p, port


def instance_template(tmp_path, cgroup_dir=""):
    """control: lines running INSTANCE (in cgroup_dir/<id> when given)."""
    script = tmp_path / "instance.py"
    script.write_text(INSTANCE)
    arg = f" {cgroup_dir}/{{id}}" if cgroup_dir else ""
    return f"""\
  check_interval: 250ms
  template:
    command: "{sys.executable} {script} {{port}}{arg}"
    ready_path: /health
    start_timeout: 20s
"""


def start(procs, tmp_path, cgroup_dir=""):
    p, port = run_control(procs, tmp_path, instance_template(tmp_path, cgroup_dir), 2)

    def two_ready():
        r = [i for i in get_json(port, "/api/v1/scaling/status")["instances"]
             if i["state"] == "ready"]
        return r if len(r) == 2 else None
    ready = wait_until(two_ready, timeout=30, what="2 ready instances")
    return p, port, ready


def gauges(port):
    """{(name, instance): value} of the control plane's per-instance gauges."""
    code, data = api(port, "/metrics")
    assert code == 200
    out = {}
    for m in re.finditer(r'^hscale_control_instance_(cpu|memory)_percent\{pool="[^"]*",'
                         r'instance="([^"]+)"\} (\S+)$', data.decode(), re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def ticks_by_pid(root):
    """utime+stime+cutime+cstime of root and its descendants, read by the
    test itself: the ground truth hscale's figure is held to."""
    procs_, out = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                f_ = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs_[int(d)] = (int(f_[1]), sum(int(x) for x in f_[11:15]))
    for pid, (ppid, ticks) in procs_.items():
        p, hops = pid, 0
        while p != root and p in procs_ and hops < 64:
            p, hops = procs_[p][0], hops + 1
        if p == root:
            out[pid] = ticks
    return out


def tree_cpu(root, seconds, sample):
    """Calls sample() once a second for `seconds`; returns (the readings,
    the tree's CPU % per process over the same time from /proc)."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, k0 = time.monotonic(), ticks_by_pid(root)
    readings = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1)                     # one check interval
        readings.append(sample())
    t1, k1 = time.monotonic(), ticks_by_pid(root)
    return readings, {p: (k1[p] - k0.get(p, 0)) / hz / (t1 - t0) * 100 for p in k1}


def check_busy_and_idle(port, ready, busy_source):
    """The busy instance's reading is its whole tree's CPU as the test
    measures it over the same seconds (two busy children, an idle root),
    not one process's; the idle one reads low. Both hold over a window
    however loaded the shared machine is: the truth is loaded alike."""
    busy, idle = ready[0], ready[1]
    # the children's start (40 MiB each) is over before anything is held
    wait_until(lambda: all(v["cpu_percent"] is not None and v["cpu_percent"] < 15
                           for v in instances(port).values()), timeout=30,
               what="both instances settled", step=0.3)
    hit(busy["address"], "/burn")
    wait_until(lambda: (instances(port)[busy["id"]]["cpu_percent"] or 0) > 20, timeout=30,
               what="the busy instance's CPU moving", step=0.3)
    both = []

    def sample():
        m = instances(port)
        both.append(m[idle["id"]]["cpu_percent"])
        return m[busy["id"]]["cpu_percent"]
    readings, per = tree_cpu(busy["pid"], 8, sample)
    idle_readings = both
    truth = sum(per.values())
    got = sum(readings) / len(readings)
    print(f"busy tree: hscale {got:.1f} % (readings {readings}), /proc {truth:.1f} % "
          f"(per process {per}), idle: {idle_readings}")
    assert len(per) == 3 and per[busy["pid"]] < 10, per       # the root itself is idle
    assert truth > 1.3 * max(per.values()), ("two children should be burning", per)
    # whole tree: one process's share would be about half of the truth
    assert abs(got - truth) <= 0.2 * truth + 5, (got, truth, readings, per)
    assert all(r is not None and r < 15 for r in idle_readings), idle_readings
    m = instances(port)
    b, i = m[busy["id"]], m[idle["id"]]
    assert b["cpu_source"] == busy_source and i["cpu_source"] == busy_source, (b, i)
    # each child holds 40 MiB: more than the root (~10 MiB) and one child
    # could make, on memory_limit 1 GiB
    for inst in (b, i):
        assert inst["memory_percent"] is not None, inst
        assert inst["memory_percent"] * (1 << 30) / 100 > 80 * (1 << 20), inst
        assert inst["memory_source"] in ("os", "cgroup"), inst
    hit(busy["address"], "/idle")
    wait_until(lambda: (instances(port)[busy["id"]]["cpu_percent"] or 1e9) < 15, timeout=30,
               what="the busy instance idle again", step=0.5)
    return busy, idle


def test_os_metrics_cover_the_whole_tree_of_a_service_without_metrics(procs, tmp_path):
    p, port, ready = start(procs, tmp_path)
    busy, idle = check_busy_and_idle(port, ready, "os")

    # API, `hscale status` and the control plane's /metrics say the same:
    # take the API between two identical /metrics reads (no check between)
    def same_everywhere():
        g1 = gauges(port)
        m = instances(port)
        st = run_hscale("status", "--control", f"http://127.0.0.1:{port}")
        g2 = gauges(port)
        if g1 != g2 or not g1:
            return None
        for iid in (busy["id"], idle["id"]):
            for k, key in (("cpu", "cpu_percent"), ("memory", "memory_percent")):
                if abs(g1[(k, iid)] - m[iid][key]) > 1e-3 * max(1.0, abs(m[iid][key])):
                    return None
            line = [ln for ln in st.stdout.splitlines() if ln.startswith(iid + " ")]
            cells = line[0].split() if line else []
            if f"{m[iid]['cpu_percent']:.1f}" not in cells or \
                    f"{m[iid]['memory_percent']:.1f}" not in cells:
                return None
        return True
    wait_until(same_everywhere, timeout=20, what="API, status and /metrics agreeing", step=0.3)
    promtool = shutil.which("promtool")
    if promtool:
        text = api(port, "/metrics")[1]
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
        assert r.returncode == 0, r.stderr
    assert procs.stop(p, timeout=30) == 0


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a = line.split()
            dash = a.index("-")
            if a[dash + 1] == "cgroup2":
                return a[4].replace("\\040", " ")
    return None


def test_os_metrics_prefer_a_cgroup_that_holds_just_the_instance(procs, tmp_path):
    mnt = cgroup2_mount()
    base = os.path.join(mnt, f"hscale-test-{os.getpid()}") if mnt else None
    try:
        os.makedirs(base)
    except (OSError, TypeError) as e:
        pytest.skip(f"cannot make a cgroup v2 group here: {e}")
    try:
        p, port, ready = start(procs, tmp_path, cgroup_dir=base)
        check_busy_and_idle(port, ready, "cgroup")
        m = instances(port)
        has_mem = os.path.exists(os.path.join(base, ready[0]["id"], "memory.current"))
        assert m[ready[0]["id"]]["memory_source"] == ("cgroup" if has_mem else "os")
        assert procs.stop(p, timeout=30) == 0
    finally:
        # the groups are empty once the instances are gone
        procs.stop_all()
        for d in (os.path.join(base, x) for x in os.listdir(base)):
            if os.path.isdir(d):
                wait_until(lambda: (os.rmdir(d), True)[1], timeout=10, what=f"rmdir {d}")
        os.rmdir(base)
        assert not os.path.exists(base)
        shutil.rmtree(tmp_path / "control", ignore_errors=True)


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "contrib", "exec-driver", "example.sh")


def test_instances_without_a_pid_are_measured_from_their_metrics(procs, tmp_path):
    """The exec driver's instances have no pid the control plane could
    look at (they may be on other hosts): their CPU and memory come from
    the standard client metrics of their own /metrics (hscale's app exports
    them under the names Python's and Node's clients use)."""
    try:
        p, port = run_control(procs, tmp_path, f"""\
  driver: exec
  exec:
    launch: {EXAMPLE} launch
    terminate: {EXAMPLE} terminate
    list: {EXAMPLE} list
    timeout: 20s
""", 1, check="500ms")

        def measured():
            m = list(instances(port).values())
            return m if len(m) == 1 and m[0]["state"] == "ready" \
                and m[0]["cpu_percent"] is not None else None
        m = wait_until(measured, timeout=30, what="a measured exec instance")[0]
        st = get_json(port, "/api/v1/scaling/status")["instances"][0]
        assert st["pid"] == 0
        assert m["cpu_source"] == "metrics" and m["memory_source"] == "metrics", m
        # the app's own process_resident_memory_bytes over 1 GiB: a few MiB
        assert 0.1 < m["memory_percent"] < 20, m
        assert 0 <= m["cpu_percent"] < 100, m
        assert procs.stop(p, timeout=30) == 0
    finally:
        procs.stop_all()
        d = tmp_path / "control" / "example-driver"
        for f in d.glob("*.instance") if d.exists() else []:
            try:
                os.kill(int(f.read_text().split()[2]), 9)
            except (ProcessLookupError, ValueError, IndexError):
                pass


FASTAPI_APP = r'''
import time
from fastapi import FastAPI

app = FastAPI()

@app.get("/health")
def health():
    return {"status": "ok"}

@app.get("/burn")
def burn(ms: int = 50):
    end = time.process_time() + ms / 1000
    while time.process_time() < end:
        pass
    return {"burned_ms": ms}
'''


def test_uvicorn_with_two_workers_is_one_instance(procs, tmp_path):
    """A FastAPI service under `uvicorn --workers 2` (a master and two
    spawned workers, no /metrics): CPU-bound requests load both workers,
    and the instance's CPU is the whole tree's as /proc tells it."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(FASTAPI_APP)
    p, port = run_control(procs, tmp_path, f"""\
  check_interval: 250ms
  template:
    command: "{sys.executable} -m uvicorn main:app --host {{host}} --port {{port}} --workers 2"
    workdir: {app}
    ready_path: /health
    start_timeout: 30s
""", 1)
    inst = wait_until(lambda: [i for i in get_json(port, "/api/v1/scaling/status")["instances"]
                               if i["state"] == "ready"], timeout=40, what="uvicorn ready")[0]
    # both workers up: master + 2 (+ multiprocessing's helpers)
    wait_until(lambda: len(ticks_by_pid(inst["pid"])) >= 3, timeout=30, what="2 workers")
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                hit(inst["address"], "/burn?ms=40")
            except (OSError, AssertionError):
                time.sleep(0.05)
    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: (instances(port)[inst["id"]]["cpu_percent"] or 0) > 20, timeout=30,
                   what="CPU moving", step=0.3)
        readings, per = tree_cpu(inst["pid"], 8, lambda: instances(port)[inst["id"]]["cpu_percent"])
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    truth = sum(per.values())
    got = sum(readings) / len(readings)
    print(f"uvicorn --workers 2: hscale {got:.1f} % (readings {readings}), /proc {truth:.1f} % "
          f"(per process {per})")
    workers = [p_ for p_, v in per.items() if p_ != inst["pid"] and v > 10]
    assert len(workers) >= 2, ("both workers should serve", per)
    assert abs(got - truth) <= 0.2 * truth + 5, (got, truth, readings, per)
    m = instances(port)[inst["id"]]
    assert m["cpu_source"] == "os" and m["memory_source"] == "os", m
    assert m["memory_percent"] is not None and m["memory_percent"] > 0, m
    assert procs.stop(p, timeout=30) == 0


def test_target_tracking_scales_a_service_without_metrics_on_os_cpu(procs, tmp_path):
    """The default kind of policy, CPU target tracking, acts on a service
    that exports nothing: its busy tree takes it out, idle it comes back."""
    p, port = run_control(procs, tmp_path, instance_template(tmp_path), 1, most=3,
                          autoscaling="  warmup: 1s\n  scale_out_cooldown: 1s\n"
                                      "  scale_in_cooldown: 1s\n  scale_in_stabilization: 2s\n"
                                      "  target:\n    cpu: 30\n    memory: 0\n")

    def ready():
        r = [i for i in get_json(port, "/api/v1/scaling/status")["instances"]
             if i["state"] == "ready"]
        return r
    first = wait_until(lambda: len(ready()) == 1 and ready(), timeout=30, what="1 ready")[0]
    hit(first["address"], "/burn")
    wait_until(lambda: get_json(port, "/api/v1/scaling/status")["desired"] >= 2, timeout=40,
               what="a scale-out on CPU")
    out = [e for e in get_json(port, "/api/v1/scaling/history")["events"]
           if e["kind"] == "scale_out"][-1]           # newest first: the first one
    assert out["policy"] == "target:cpu" and out["metrics"]["cpu"] > 30, out
    hit(first["address"], "/idle")
    wait_until(lambda: get_json(port, "/api/v1/scaling/status")["desired"] == 1, timeout=60,
               what="back to 1 once idle")
    assert procs.stop(p, timeout=30) == 0
