"""End-to-end tests of `hscale doctor` against a real stack (hscale gateway
--admin, hscale control with app instances): healthy passes; a gateway
backend the control plane does not know fails naming it; an instance stopped
with SIGSTOP fails naming it (and is resumed after); an unreachable control
plane or Prometheus fails; bad flags are usage errors."""
import json
import os
import re
import signal
import time

from conftest import free_port, run_hscale
from test_control import api, ready_instances, start_control, wait_until
from test_dashboard import start_stack


def doctor(port, *extra, env=None):
    return run_hscale("doctor", "--control", f"http://127.0.0.1:{port}", "--timeout", "1s",
                      *extra, timeout=60, env=env)


def test_usage_errors():
    r = run_hscale("doctor", "--help")
    assert r.returncode == 0 and "--gateway-admin" in r.stdout and "--prometheus" in r.stdout
    r = run_hscale("doctor", "--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    r = run_hscale("doctor", "--timeout", "soon")
    assert r.returncode == 2 and "--timeout" in r.stderr
    r = run_hscale("doctor", "--pool-warn", "150")
    assert r.returncode == 2 and "--pool-warn" in r.stderr
    r = run_hscale("doctor", "--control")
    assert r.returncode == 2 and "needs a value" in r.stderr


def test_unreachable_control_plane_fails():
    port = free_port()
    r = doctor(port)
    assert r.returncode == 1
    assert re.search(r"^FAIL\s+control\s+.*unreachable", r.stdout, re.M), r.stdout


def test_doctor_on_a_stack(procs, tmp_path):
    gport, aport, port = start_stack(procs, tmp_path)
    insts = ready_instances(port)
    ids = sorted(i["id"] for i in insts)

    # Healthy: every instance, its database and its gateway backend are OK.
    r = doctor(port)
    assert r.returncode == 0, r.stdout + r.stderr
    for i in insts:
        for check in ("instance", "database", "db-pool", "agreement"):
            assert re.search(rf"^OK\s+{check}\s+{i['id']} {i['address']}:", r.stdout, re.M), \
                (check, r.stdout)
    assert re.search(r"^OK\s+gateway\s+app http://127\.0\.0\.1:\d+: 2 backend\(s\), 2 healthy",
                     r.stdout, re.M), r.stdout
    assert "healthy: " in r.stdout and "0 failure(s)" in r.stdout

    r = doctor(port, "--json")
    assert r.returncode == 0
    rep = json.loads(r.stdout)
    assert rep["healthy"] is True and rep["fail"] == 0 and rep["pool"] == "app"
    assert rep["gateway"] == f"http://127.0.0.1:{aport}"    # learned from the control plane
    agreed = sorted(c["subject"] for c in rep["checks"]
                    if c["check"] == "agreement" and c["status"] == "ok")
    assert agreed == ids

    # A Prometheus that is not there is a failure when asked for.
    r = doctor(port, "--prometheus", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and re.search(r"^FAIL\s+prometheus\s", r.stdout, re.M), r.stdout

    # A backend the gateway routes to that the control plane does not manage.
    stray = f"127.0.0.1:{free_port()}"
    code, body = api(aport, "POST", "/api/v1/pools/app/backends", {"address": stray})
    assert code == 201, body
    r = doctor(port)
    assert r.returncode == 1
    assert re.search(rf"^FAIL\s+agreement\s+backend {re.escape(stray)}: .*does not know",
                     r.stdout, re.M), r.stdout
    assert stray in r.stdout.splitlines()[-1]              # named in the summary too
    assert api(aport, "DELETE", f"/api/v1/pools/app/backends/{stray}")[0] == 200
    assert doctor(port).returncode == 0

    # kill -STOP one instance: the doctor fails naming it, within its timeout.
    victim = ready_instances(port)[0]
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        t0 = time.time()
        r = doctor(port, "--json")
        took = time.time() - t0
        text = doctor(port)
    finally:
        os.kill(victim["pid"], signal.SIGCONT)
    assert r.returncode == 1 and text.returncode == 1, (victim, r.stdout, text.stdout)
    rep = json.loads(r.stdout)
    failed = {(c["subject"], c["check"]) for c in rep["checks"] if c["status"] == "fail"}
    assert (victim["id"], "instance") in failed, rep["checks"]
    assert all(s == victim["id"] for s, _ in failed), failed     # nobody else is blamed
    assert took < 15, took
    assert re.search(rf"^FAIL\s+instance\s+{victim['id']} {victim['address']}: /health did not answer",
                     text.stdout, re.M), text.stdout
    assert f"-- {victim['id']} {victim['address']}" in text.stdout.splitlines()[-1]

    # Resumed, it is healthy again (the control plane may have replaced it:
    # either way the fleet converges back to healthy).
    wait_until(lambda: doctor(port).returncode == 0, timeout=30, what="healthy again")


def test_token_and_missing_gateway(procs, tmp_path):
    _, port = start_control(procs, tmp_path, instances=1, env={"HSCALE_CONTROL_TOKEN": "s3cret"})
    wait_until(lambda: len(ready_instances(port, token="s3cret")) == 1, what="1 ready")
    dead_gw = f"http://127.0.0.1:{free_port()}"
    r = doctor(port, "--gateway-admin", dead_gw)
    assert r.returncode == 1
    assert re.search(r"^FAIL\s+control\s+.*answered 401", r.stdout, re.M), r.stdout
    r = doctor(port, "--gateway-admin", dead_gw, "--json", env={"HSCALE_CONTROL_TOKEN": "s3cret"})
    rep = json.loads(r.stdout)
    by_check = {(c["check"], c["status"]) for c in rep["checks"]}
    assert ("control", "ok") in by_check and ("instance", "ok") in by_check, rep
    # A gateway named on the command line that does not answer is a failure.
    assert ("gateway", "fail") in by_check and r.returncode == 1, rep
