"""`hscale app` and `hscale up` over the embedded SQLite store: health,
readiness, case queries, validation errors naming the field, metrics that
pass promtool, and SIGTERM turning readiness off then exiting cleanly."""
import json
import time
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import free_port, run_hscale, wait_port


def get(port, path, method="GET", body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def app(procs, tmp_path):
    db = f"sqlite:{tmp_path}/s0.db"
    r = run_hscale("app", "seed", "--users", "20", "--cases", "500", "--db", db, timeout=60)
    assert r.returncode == 0, r.stderr
    port = free_port()
    p = procs.hscale("app", "--listen", f"127.0.0.1:{port}", "--db", db, "--workers", "2")
    wait_port(port, proc=p)
    return p, port


def test_health_and_ready(app):
    _, port = app
    st, body = get(port, "/health")
    assert st == 200
    h = json.loads(body)
    for k in ("status", "database", "version", "instance_id", "uptime_seconds"):
        assert k in h
    st, _ = get(port, "/health/ready")
    assert st == 200


def test_casefilter_pages_with_cursor(app):
    _, port = app
    seen = []
    cursor = None
    for _ in range(50):
        q = f"/casefilter?user_id=3&status=0&limit=2" + (f"&cursor={cursor}" if cursor else "")
        st, body = get(port, q)
        assert st == 200, body
        page = json.loads(body)
        for c in page["cases"]:
            assert c["user_id"] == 3 and c["case_status"] == 0
            seen.append(c["case_id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))


def test_create_then_delete_case(app):
    _, port = app
    good = {"user_id": 5, "patient_first": "Ada", "patient_last": "Lovelace",
            "case_date": "2026-11-01", "case_status": 1}
    st, body = get(port, "/cases", "POST", json.dumps(dict(good, case_status="x")).encode())
    assert st == 400 and json.loads(body)["field"] == "case_status"
    st, body = get(port, "/cases", "POST", json.dumps(dict(good, bogus=1)).encode())
    assert st == 400 and json.loads(body)["field"] == "bogus"
    st, body = get(port, "/cases", "POST", json.dumps({"user_id": 5}).encode())
    assert st == 400 and json.loads(body)["field"] == "patient_first"
    st, body = get(port, "/cases", "POST", json.dumps(good).encode())
    assert st == 201, body
    case_id = json.loads(body)["case_id"]
    st, body = get(port, f"/cases/{case_id}?user_id=5")
    assert st == 200 and json.loads(body)["patient_last"] == "Lovelace"
    st, _ = get(port, f"/cases/{case_id}?user_id=5", "DELETE")
    assert st == 204
    st, _ = get(port, f"/cases/{case_id}?user_id=5")
    assert st == 404


def test_metrics_pass_promtool(app, tmp_path):
    _, port = app
    get(port, "/health")
    st, body = get(port, "/metrics")
    assert st == 200
    text = body.decode()
    assert "hscale_http_requests_total" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigterm_exits_cleanly(app, procs):
    p, port = app
    assert procs.stop(p) == 0


def test_up_seeds_and_serves(procs, tmp_path):
    port, admin, control = free_port(), free_port(), free_port()
    p = procs.hscale("up", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                     "--control", f"127.0.0.1:{control}", "--data", str(tmp_path / "data"))
    wait_port(port, timeout=60, proc=p)
    # the gateway listens first; the instances join it once ready
    deadline = time.time() + 30
    while True:
        try:
            st, body = get(port, "/casefilter?user_id=7&status=10")
        except OSError:
            st = 0
        if st == 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert st == 200
    assert len(json.loads(body)["cases"]) > 0
    assert procs.stop(p) == 0
