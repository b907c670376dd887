"""End-to-end tests of deploys: a real `hscale gateway --admin` with the
control pool `app` and the second pool `app-next`, a real `hscale control`
whose instances are gw_backend.py processes (their version label is what
they answer with), and `hscale bench` as constant load for each test's
whole duration. What is asserted is what a user pages on: failed requests,
and which version answers afterwards."""
import json
import os
import sys
import time

from conftest import HERE, free_port, run_hscale, wait_port
from gw_util import Gateway, write_yaml
from gw_util import http as requests  # noqa: E402 (default timeouts)
from test_control import api, wait_until

BACKEND = f"{sys.executable} {os.path.join(HERE, 'gw_backend.py')} {{port}} {{version}}"


class Stack:
    def __init__(self, procs, tmp_path, instances):
        cfg = write_yaml(tmp_path, """
gateway:
  pools:
    - name: app
      backends: []
      health: {interval: 500ms, timeout: 300ms, rise: 1, fall: 2}
    - name: app-next
      backends: []
      health: {interval: 500ms, timeout: 300ms, rise: 1, fall: 2}
  routes: [{prefix: /, pool: app}]
""")
        self.procs, self.tmp, self.instances = procs, tmp_path, instances
        self.gw = Gateway(procs, config=cfg, workers=1)
        self.port = free_port()
        self.start_control()
        wait_until(lambda: len(self.members("app")) == instances, what=f"{instances} registered")
        self.control = f"127.0.0.1:{self.port}"

    def start_control(self):
        """Starts `hscale control` (again, after a crash: same state dir)."""
        self.ctl = self.procs.hscale(
            "control", "--listen", f"127.0.0.1:{self.port}",
            "--gateway", f"http://127.0.0.1:{self.gw.admin_port}",
            "--pool", "app", "--instances", str(self.instances),
            "--command", BACKEND, "--version", "v1",
            "--drain-timeout", "3s", "--state-dir", str(self.tmp / "control"),
            cwd=str(self.tmp), name="control")
        wait_port(self.port, proc=self.ctl, timeout=20)
        return self.ctl

    def members(self, pool):
        r = requests.get(self.gw.admin_url(f"/api/v1/pools/{pool}"))
        return [m for m in r.json()["members"] if m["state"] == "ready" and m["healthy"]]

    def versions(self):
        code, body = api(self.port, "GET", "/api/v1/instances")
        assert code == 200, body
        return sorted(i["version"] for i in body["instances"] if i["state"] != "stopped")

    def current(self):
        code, body = api(self.port, "GET", "/api/v1/deploys/current")
        assert code == 200, body
        return body

    def deploy(self, **body):
        code, resp = api(self.port, "POST", "/api/v1/deploys", body)
        assert code == 202, resp
        return resp

    def wait_done(self, timeout=60):
        return wait_until(lambda: (lambda c: c if not c["running"] else None)(self.current()),
                          timeout=timeout, what="deploy to end")

    def events(self, deploy_id):
        code, body = api(self.port, "GET", "/api/v1/deploys?limit=200")
        assert code == 200, body
        return [e for e in reversed(body["events"]) if e["deploy"] == deploy_id]

    def answering_version(self):
        return requests.get(self.gw.url("/who")).json()["backend"]

    def load(self, seconds, rate=200):
        out = self.tmp / f"load-{time.monotonic_ns()}.json"
        p = self.procs.hscale("bench", self.gw.url("/x"), "-c", 8, "-t", 2, "--rate", rate,
                              "-d", f"{seconds}s", "--timeout", "5s", "--json", out, "-q",
                              name="load")
        return p, out


def finish_load(p, out, timeout=90):
    p.wait(timeout)
    return json.loads(out.read_text())["total"]


def assert_no_failures(total):
    assert total["count"] > 500, total
    assert total["failures"] == 0, total
    assert all(v == 0 for v in total["errors"].values()), total


def test_usage_and_validation(procs, tmp_path):
    r = run_hscale("deploy", "--help")
    assert r.returncode == 0 and "rolling|bluegreen|canary" in r.stdout and "--max-surge" in r.stdout
    r = run_hscale("deploy", "rolling")
    assert r.returncode == 2 and "--version is required" in r.stderr
    r = run_hscale("deploy", "rolling", "--version", "v2", "--bogus", "1")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    r = run_hscale("deploy", "sideways")
    assert r.returncode == 2 and "unknown subcommand" in r.stderr
    r = run_hscale("deploy", "canary", "--version", "v2", "--max-error-rate", "lots")
    assert r.returncode == 2 and "--max-error-rate" in r.stderr
    # Nothing listening: exit 1 with the reason, not a hang.
    r = run_hscale("deploy", "status", "--control", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "hscale deploy:" in r.stderr

    s = Stack(procs, tmp_path, instances=1)
    for body, field in [({"strategy": "sideways", "version": "v2"}, "strategy"),
                        ({"strategy": "rolling"}, "version"),
                        ({"strategy": "canary", "version": "v2", "steps": [50, 10]}, "steps[1]"),
                        ({"strategy": "rolling", "version": "v2", "max_surge": "x"}, "max_surge"),
                        ({"strategy": "rolling", "version": "v2", "colour": "red"}, "colour"),
                        ({"strategy": "bluegreen", "version": "v2", "smoke": [{"path": "x"}]},
                         "smoke[0].path")]:
        code, resp = api(s.port, "POST", "/api/v1/deploys", body)
        assert code == 400 and resp["field"] == field, (body, resp)
    assert s.current()["state"] == "none"
    code, resp = api(s.port, "POST", "/api/v1/deploys/current/rollback", {})
    assert code == 409 and "no deploy" in resp["error"]


def test_rolling_deploy_of_4_under_load_loses_no_request(procs, tmp_path):
    s = Stack(procs, tmp_path, instances=4)
    p, out = s.load(24)
    time.sleep(1)
    r = run_hscale("deploy", "rolling", "--version", "v2", "--control", s.control,
                   "--observe", "1s", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deploy_batch" in r.stdout and "succeeded" in r.stdout
    total = finish_load(p, out)
    assert_no_failures(total)
    assert s.versions() == ["v2"] * 4
    assert s.answering_version() == "v2"
    c = s.current()
    assert c["state"] == "succeeded" and c["done"] == 4 and c["from_version"] == "v1"
    kinds = [e["kind"] for e in s.events(c["id"])]
    assert kinds[0] == "deploy_started" and kinds.count("deploy_batch") == 4
    assert kinds[-1] == "deploy_succeeded"
    batch = [e for e in s.events(c["id"]) if e["kind"] == "deploy_batch"][0]
    assert batch["verdict"] == "pass" and batch["metrics"]["requests"] > 0


def test_bluegreen_switch_rollback_and_finish_under_load(procs, tmp_path):
    s = Stack(procs, tmp_path, instances=2)
    p, out = s.load(16)
    time.sleep(1)
    d = s.deploy(strategy="bluegreen", version="v2", rollback_window="30s",
                 smoke=[{"path": "/health/ready", "expect": 200}, {"path": "/status/204", "expect": 204}])
    wait_until(lambda: s.current()["phase"] == "rollback_window", what="switch")
    assert s.answering_version() == "v2" and len(s.members("app-next")) == 2
    assert len(s.members("app")) == 2   # blue kept, idle
    r = run_hscale("deploy", "rollback", "--control", s.control)
    assert r.returncode == 0, r.stderr
    c = s.wait_done()
    assert c["state"] == "rolled_back" and c["id"] == d["id"]
    assert s.answering_version() == "v1"
    wait_until(lambda: s.versions() == ["v1", "v1"], what="green stopped")
    assert s.members("app-next") == []

    # The same again, left to finish: green folds into pool app.
    s.deploy(strategy="bluegreen", version="v3", rollback_window="1s")
    c = s.wait_done()
    assert c["state"] == "succeeded", c
    wait_until(lambda: s.versions() == ["v3", "v3"], what="blue retired")
    assert s.answering_version() == "v3" and len(s.members("app")) == 2
    assert s.members("app-next") == []
    routes = requests.get(s.gw.admin_url("/api/v1/routes")).json()["routes"]
    assert routes[0]["pool"] == "app" and routes[0]["split"] == []
    total = finish_load(p, out)
    assert_no_failures(total)


def test_canary_that_passes_is_promoted_under_load(procs, tmp_path):
    s = Stack(procs, tmp_path, instances=2)
    p, out = s.load(12)
    time.sleep(1)
    # This test is about promotion: the p95 ratio gate stays wide, since two
    # fresh ASan instances on a busy 2-core machine answered at 8x a warm
    # pool's p95 once (96.6 ms against 11.8) with nothing wrong with them.
    d = s.deploy(strategy="canary", version="v2", steps=[10, 50, 100], pause="2s",
                 min_requests=20, max_p95_ratio=20)
    c = s.wait_done()
    assert c["state"] == "succeeded", c
    ev = s.events(d["id"])
    analyses = [e for e in ev if e["kind"] == "deploy_analysis"]
    assert [a["weight"] for a in analyses if a["verdict"] == "pass"] == [10, 50, 100]
    assert all(a["canary"]["requests"] >= 20 for a in analyses if a["verdict"] == "pass")
    assert analyses[0]["stable"]["requests"] > analyses[0]["canary"]["requests"]
    wait_until(lambda: s.versions() == ["v2", "v2"], what="old retired")
    assert s.answering_version() == "v2"
    total = finish_load(p, out)
    assert_no_failures(total)


def test_bad_canary_is_rolled_back_and_fails_only_its_share(procs, tmp_path):
    s = Stack(procs, tmp_path, instances=2)
    p, out = s.load(10)
    time.sleep(1)
    d = s.deploy(strategy="canary", version="v2-bad", steps=[10, 50, 100], pause="2s",
                 min_requests=20, command=BACKEND + " --fail-percent 30")
    c = s.wait_done()
    assert c["state"] == "failed", c
    ev = s.events(d["id"])
    fail = [e for e in ev if e["kind"] == "deploy_analysis" and e["verdict"] == "fail"]
    assert fail and fail[0]["weight"] == 10 and fail[0]["canary"]["error_rate"] > 1
    assert any(e["kind"] == "deploy_rollback" for e in ev)
    routes = requests.get(s.gw.admin_url("/api/v1/routes")).json()["routes"]
    assert routes[0]["pool"] == "app" and routes[0]["split"] == []
    wait_until(lambda: s.versions() == ["v1", "v1"], what="canary stopped")
    total = finish_load(p, out)
    # Only the bad version's answers failed (5xx, nothing dropped), and no
    # more than its 10 % weight could let through.
    errs = total["errors"]
    assert errs["http_5xx"] == total["failures"] > 0, total
    assert sum(v for k, v in errs.items() if k != "http_5xx") == 0, total
    assert total["failures"] <= 0.10 * total["count"], total
