"""A real Prometheus (Debian package) on loopback, configured from
contrib/prometheus with test timings (1 s scrapes, InstanceDown after 2 s),
discovers `hscale app` instances through a file_sd file the test writes as
the control plane does (write, then rename). It checks through the HTTP API
that `up` is 1, that a target added to the file is scraped without a
restart, and that after `kill -STOP` of an instance InstanceDown fires for
that instance and no other. Bounded: every wait has a deadline, < 40 s."""
import os
import signal
import time

import pytest

from conftest import free_port, run_hscale, wait_port
from prometheus_util import (PROMETHEUS, firing, start_prometheus, up_by_instance, wait_for,
                             write_targets)

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: run scripts/deps.sh")


def start_app(procs, db):
    port = free_port()
    p = procs.hscale("app", "--listen", f"127.0.0.1:{port}", "--db", db, "--workers", "1")
    wait_port(port, proc=p)
    return p, f"127.0.0.1:{port}"


def test_prometheus_discovers_apps_and_fires_instance_down(procs, tmp_path):
    start = time.time()
    deadline = start + 38
    db = f"sqlite:{tmp_path}/s0.db"
    r = run_hscale("app", "seed", "--users", "5", "--cases", "20", "--db", db, timeout=30)
    assert r.returncode == 0, r.stderr
    app1, t1 = start_app(procs, db)
    app2, t2 = start_app(procs, db)

    targets = tmp_path / "targets.json"
    write_targets(targets, [t1])
    pport = start_prometheus(procs, tmp_path, targets)
    wait_for("up == 1 for the first app",
             lambda: up_by_instance(pport).get(t1) == "1", deadline)

    # Scale-out: the new target is scraped without restarting Prometheus.
    write_targets(targets, [t1, t2])
    wait_for("up == 1 for both apps",
             lambda: up_by_instance(pport) == {t1: "1", t2: "1"}, deadline)
    assert firing(pport, "InstanceDown") == set()

    os.kill(app2.pid, signal.SIGSTOP)
    try:
        wait_for("up == 0 for the stopped app", lambda: up_by_instance(pport).get(t2) == "0", deadline)
        got = wait_for("InstanceDown firing", lambda: firing(pport, "InstanceDown"), deadline)
        assert got == {t2}, got
        assert up_by_instance(pport)[t1] == "1"
    finally:
        os.kill(app2.pid, signal.SIGCONT)
    wait_for("up == 1 again after SIGCONT", lambda: up_by_instance(pport).get(t2) == "1", deadline)
    assert time.time() - start < 40
