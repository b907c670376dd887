"""Instances outlive the control plane (issue 20): a kill -9 of `hscale
control` or of `hscale up` under load fails no request, the next control
plane (or up) adopts every instance still alive by pid and start time (and
up its gateway), starts none twice, and `hscale down` stops everything.

Detached instances are not children of the processes `procs` tracks, so
every test also stops, by pid and start time, whatever it saw running."""
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, read_log, run_hscale, wait_port
from test_control import api, wait_until
from test_deploy import BACKEND
from test_deploy import Stack as DeployStack
from test_deploy import assert_no_failures, finish_load
import up_util


def start_ticks(pid):
    """/proc/PID/stat field 22, or None when pid is gone (a zombie is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid, start):
    return start is not None and start_ticks(pid) == start


def served(admin_port):
    """Requests the gateway has answered (hscale_gateway_requests_total)."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hscale_gateway_requests_total"))


def wait_load_flowing(admin_port, n=200):
    """The load is under way (n more answers) before the fault under test."""
    base = served(admin_port)
    wait_until(lambda: served(admin_port) >= base + n, what=f"{n} requests through the gateway")


class Leftovers:
    """Pids a test saw; killed by pid (and start time) at teardown."""

    def __init__(self):
        self.seen = {}

    def add(self, pid):
        st = start_ticks(pid)
        if st is not None:
            self.seen[pid] = st

    def cleanup(self):
        for pid, st in self.seen.items():
            if alive(pid, st):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass


@pytest.fixture
def leftovers():
    lo = Leftovers()
    yield lo
    lo.cleanup()


def load(procs, tmp_path, url, seconds, rate=200):
    out = tmp_path / f"load-{time.monotonic_ns()}.json"
    p = procs.hscale("bench", url, "-c", 8, "-t", 2, "--rate", rate, "-d", f"{seconds}s",
                     "--timeout", "5s", "--json", out, "-q", name="load")
    return p, out


def instances(port):
    code, body = api(port, "GET", "/api/v1/instances")
    assert code == 200, body
    return {i["id"]: i for i in body["instances"] if i["state"] != "stopped"}


class ControlStack(DeployStack):
    """test_deploy's gateway + `hscale control` of n instances, restartable."""

    def __init__(self, procs, tmp_path, n):
        super().__init__(procs, tmp_path, n)
        self.n, self.state_dir = n, tmp_path / "control"

    def start(self):
        return self.start_control()

    def members(self, pool="app"):
        return sorted(m["address"] for m in super().members(pool))

    def ready(self):
        inst = instances(self.port)
        ok = [i for i in inst.values() if i["state"] == "ready" and i["registered"]]
        return inst if len(ok) == self.n == len(inst) else None


def test_control_kill9_under_load_adopts_every_instance(procs, tmp_path, leftovers):
    s = ControlStack(procs, tmp_path, 3)
    before = wait_until(s.ready, timeout=30, what="3 ready registered instances")
    for i in before.values():
        leftovers.add(i["pid"])
    ident = {i["id"]: (i["pid"], start_ticks(i["pid"])) for i in before.values()}
    members = wait_until(lambda: (lambda m: m if len(m) == 3 else None)(s.members()),
                         what="3 members")
    state = json.loads((s.state_dir / "instances.state").read_text())
    assert sorted(e["id"] for e in state["instances"]) == sorted(ident)
    assert all(e["start"] == ident[e["id"]][1] and e["registered"] for e in state["instances"])

    lp, out = load(procs, tmp_path, s.gw.url("/x"), 10)
    wait_load_flowing(s.gw.admin_port)   # the kill must land under load: it is the fault under test
    os.kill(s.ctl.pid, signal.SIGKILL)
    s.ctl.wait(5)
    t_kill = time.monotonic()
    # Nothing dies with it: every instance keeps serving through the gateway.
    assert all(alive(pid, st) for pid, st in ident.values())
    wait_load_flowing(s.gw.admin_port)   # they go on answering through the gateway
    assert all(alive(pid, st) for pid, st in ident.values())

    s.start()
    after = wait_until(s.ready, timeout=30, what="the instances adopted and ready")
    t_adopted = time.monotonic() - t_kill
    assert {k: (v["pid"], start_ticks(v["pid"])) for k, v in after.items()} == ident
    log = read_log(s.ctl)
    assert log.count(" adopted (pid ") == 3, log
    assert "started at" not in log, log           # none started twice
    assert s.members() == members                # registrations intact
    code, st = api(s.port, "GET", "/api/v1/scaling/status")
    assert code == 200 and st["desired"] == 3, st
    assert_no_failures(finish_load(lp, out))
    print(f"control kill -9: adopted {len(after)} in {t_adopted:.2f} s")

    # A crashed instance while the control plane runs is replaced as usual
    # (it watches adopted ones by pid and start time, not by reaping).
    victim = sorted(ident)[0]
    os.kill(ident[victim][0], signal.SIGKILL)
    wait_until(lambda: victim in instances(s.port)
               and instances(s.port)[victim]["pid"] not in (0, ident[victim][0])
               and s.ready(), timeout=30, what="the killed instance restarted")
    for i in instances(s.port).values():
        leftovers.add(i["pid"])

    # An explicit stop drains and stops them, as before.
    pids = {i["pid"]: start_ticks(i["pid"]) for i in instances(s.port).values()}
    assert procs.stop(s.ctl, timeout=30) == 0
    assert not any(alive(p, st) for p, st in pids.items())
    assert json.loads((s.state_dir / "instances.state").read_text())["instances"] == []


def test_reused_pid_or_foreign_entry_is_never_adopted(procs, tmp_path, leftovers):
    sleeper = procs.start(["sleep", "300"], name="sleep")
    st = start_ticks(sleeper.pid)
    dead = subprocess.Popen(["true"])
    dead.wait()
    state_dir = tmp_path / "control"
    state_dir.mkdir()
    entry = {"address": "127.0.0.1:1", "version": "v1", "ready_path": "/health/ready",
             "noport": False, "stop_how": 0, "managed": True, "registered": False}
    (state_dir / "instances.state").write_text(json.dumps({"version": 1, "instances": [
        # the pid of an unrelated process with another start time: a reused pid
        dict(entry, id="i-1", pid=sleeper.pid, start=st + 1, pgid=sleeper.pid, sid=sleeper.pid),
        # the right start time (this test's own process), but not the group
        # or session an instance is started in
        dict(entry, id="i-2", pid=os.getpid(), start=start_ticks(os.getpid()),
             pgid=os.getpid() + 1, sid=os.getpid() + 1),
        # a process that exited while no control plane ran
        dict(entry, id="i-3", pid=dead.pid, start=12345, pgid=dead.pid, sid=dead.pid),
    ]}))
    s = ControlStack(procs, tmp_path, 1)
    inst = wait_until(s.ready, timeout=30, what="one fresh instance")
    for i in inst.values():
        leftovers.add(i["pid"])
    assert list(inst) == ["i-4"], inst        # ids continue past the file's, none reused
    assert [i["pid"] for i in inst.values()] != [sleeper.pid]
    log = read_log(s.ctl)
    assert "i-1 (pid %d) of the previous control plane not adopted: pid reused" % sleeper.pid in log
    assert "i-2 (pid %d) of the previous control plane not adopted: another process group" % os.getpid() in log
    assert "i-3 (pid %d) of the previous control plane not adopted: gone" % dead.pid in log
    assert "adopted 0 of the 3" in log, log
    # A second control plane on a state dir whose owner runs is refused
    # before it touches an instance.
    r = run_hscale("control", "--listen", f"127.0.0.1:{free_port()}", "--instances", "1",
                   "--command", BACKEND, "--state-dir", state_dir)
    assert r.returncode != 0 and "in use by a running control plane (pid %d)" % s.ctl.pid in r.stderr, r.stderr
    assert instances(s.port).keys() == inst.keys()
    assert procs.stop(s.ctl, timeout=30) == 0
    assert alive(sleeper.pid, st)              # never signalled
    # A file that does not parse adopts nothing and is set aside.
    (state_dir / "instances.state").write_text('{"version": 1, "instances": [{"id": 5}]}')
    s.start()
    wait_until(s.ready, timeout=30, what="one fresh instance")
    for i in instances(s.port).values():
        leftovers.add(i["pid"])
    assert (state_dir / "instances.state.bad").exists()
    assert "instances[0].id: expected a string" in read_log(s.ctl)
    assert procs.stop(s.ctl, timeout=30) == 0


# The count stays what the test set: the faults, not the autoscaler, are
# under test here.
UP_CONFIG = """\
control:
  check_interval: 500ms
  drain_timeout: 5s
  stop_grace: 2s
autoscaling:
  enabled: false
"""


def up_ids(stack):
    return {i["id"]: (i["pid"], start_ticks(i["pid"])) for i in stack.status()["instances"]
            if i["state"] == "ready" and i["registered"]}


def pidfile(path):
    pid, start = open(path).read().split()
    return int(pid), int(start)


def test_up_kill9_under_load_adopts_the_stack_and_down_stops_it(procs, tmp_path, leftovers):
    ports = (free_port(), free_port(), free_port())
    s = up_util.start_up(procs, tmp_path, ports=ports, instances=2, config=UP_CONFIG)
    data = s.data
    gw = pidfile(data / "gateway.pid")
    assert gw[1] == start_ticks(gw[0])
    leftovers.add(gw[0])
    ident = up_ids(s)
    for pid, _ in ident.values():
        leftovers.add(pid)
    assert len(ident) == 2

    lp, out = load(procs, tmp_path, f"http://127.0.0.1:{s.gw}/casefilter?user_id=7&status=10", 10)
    wait_load_flowing(s.admin)
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait(5)
    t_kill = time.monotonic()
    assert alive(*gw) and all(alive(*v) for v in ident.values())

    # up again on the same data: the gateway and the instances are adopted,
    # not started again (its ports are busy: it must not try).
    p2 = procs.hscale("up", "--listen", f"127.0.0.1:{ports[0]}", "--admin",
                      f"127.0.0.1:{ports[1]}", "--control", f"127.0.0.1:{ports[2]}",
                      "--data", data, "-c", tmp_path / "up.yaml", "--instances", 2, name="up2")
    wait_port(ports[2], timeout=60, proc=p2)
    s2 = up_util.Stack(p2, *ports, data)
    up_util.wait_until(lambda: up_ids(s2) == ident, timeout=30, what="the instances adopted")
    t_adopted = time.monotonic() - t_kill
    assert pidfile(data / "gateway.pid") == gw
    log = read_log(p2)
    assert "adopted the running gateway (pid %d)" % gw[0] in log, log
    assert log.count(" adopted (pid ") == 2 and "started at" not in log, log
    assert_no_failures(finish_load(lp, out))
    print(f"up kill -9: adopted {len(ident)} + gateway in {t_adopted:.2f} s")

    # A second up on the same data is refused while this one runs.
    r = run_hscale("up", "--data", data, "--listen", f"127.0.0.1:{free_port()}",
                   "--admin", f"127.0.0.1:{free_port()}", "--control", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "already running" in r.stderr, r.stderr

    # hscale down stops the running up, which drains and stops everything.
    up2 = (p2.pid, start_ticks(p2.pid))
    r = run_hscale("down", "--data", data, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopping hscale up (pid %d)" % p2.pid in r.stdout
    assert not alive(*up2) and not alive(*gw)
    assert not any(alive(*v) for v in ident.values())
    assert not (data / "up.pid").exists() and not (data / "gateway.pid").exists()


def test_down_after_a_crash_of_up_stops_what_it_left(procs, tmp_path, leftovers):
    s = up_util.start_up(procs, tmp_path, instances=2, config=UP_CONFIG)
    gw = pidfile(s.data / "gateway.pid")
    leftovers.add(gw[0])
    ident = up_ids(s)
    for pid, _ in ident.values():
        leftovers.add(pid)
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait(5)
    # the gateway and an instance still answer without the process that started them
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{s.gw}/casefilter?user_id=7&status=10",
                                              timeout=5).status == 200, 10,
               "an answer through the gateway after up died")
    assert alive(*gw) and all(alive(*v) for v in ident.values())
    r = run_hscale("down", "--data", s.data, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 instance(s) stopped, gateway stopped" in r.stdout, r.stdout
    assert not alive(*gw) and not any(alive(*v) for v in ident.values())
    # Nothing left: down again says so.
    r = run_hscale("down", "--data", s.data)
    assert r.returncode == 0 and "nothing was running" in r.stdout, r.stdout
    r = run_hscale("down", "--data", tmp_path / "nope")
    assert r.returncode == 1 and "not a directory" in r.stderr
    r = run_hscale("down", "--bogus")
    assert r.returncode == 2
