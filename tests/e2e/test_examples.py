"""The examples under examples/ run as written: each test starts
`hscale up -c examples/NAME/hscale.yaml` from the repository root (only the
ports and the data directory moved to free ones) with the real service
behind it: FastAPI on uvicorn, Node's http module, Celery on Redis.

What they show is what a user of their own service needs: the gateway's
checks ask the service's ready path (no 503 "no backend available"), the
scaling API and CLI address a service by name, and a rolling deploy of a
FastAPI service under load drops nothing."""
import json
import os
import time

import pytest
import requests

from conftest import ROOT, free_port, run_hscale, wait_port
from pg_fixture import redis_addr  # noqa: F401 (fixture)
from up_util import wait_until

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/node"), reason="nodejs missing")


class Example:
    """A running `hscale up` of one example."""

    def __init__(self, procs, tmp_path, name, config=None):
        self.gw, self.admin, self.control = free_port(), free_port(), free_port()
        self.data = tmp_path / "data"
        cfg = config or os.path.join(ROOT, "examples", name, "hscale.yaml")
        self.proc = procs.hscale("up", "-c", cfg, "--data", self.data,
                                 "--listen", f"127.0.0.1:{self.gw}",
                                 "--admin", f"127.0.0.1:{self.admin}",
                                 "--control", f"127.0.0.1:{self.control}",
                                 name=f"up-{name}", cwd=ROOT)
        wait_port(self.control, timeout=60, proc=self.proc)

    def url(self, path):
        return f"http://127.0.0.1:{self.gw}{path}"

    def api(self, method, path, body=None, port=None):
        r = requests.request(method, f"http://127.0.0.1:{port or self.control}{path}",
                             json=body, timeout=10)
        return r.status_code, r.json()

    def status(self, service=None):
        path = f"/api/v1/services/{service}/scaling/status" if service else "/api/v1/scaling/status"
        return self.api("GET", path)[1]

    def registered(self, service=None):
        return len([i for i in self.status(service)["instances"]
                    if i["state"] == "ready" and i["registered"]])

    def wait_registered(self, n, service=None, timeout=60):
        return wait_until(lambda: self.registered(service) == n, timeout=timeout,
                          what=f"{n} registered instances")

    def gateway_config(self):
        with open(self.data / "gateway.yaml") as f:
            return json.load(f)["gateway"]


def load(procs, tmp_path, url, seconds, rate=100, conns=8):
    out = tmp_path / f"load-{time.monotonic_ns()}.json"
    p = procs.hscale("bench", url, "-c", conns, "-t", 2, "--rate", rate, "-d", f"{seconds}s",
                     "--timeout", "5s", "--json", out, "-q", name="load")
    return p, out


def finish(p, out, timeout=120):
    p.wait(timeout)
    return json.loads(out.read_text())["total"]


def assert_all_ok(total, at_least):
    assert total["count"] >= at_least, total
    assert total["failures"] == 0, total
    assert all(v == 0 for v in total["errors"].values()), total


def test_medease_node_service_with_health_only_stays_in_rotation(procs, tmp_path):
    """The issue's first finding: a service whose only check is /health (no
    /health/ready) was registered by the control plane and then marked
    down by the gateway's checks. Now the pool checks the ready path."""
    ex = Example(procs, tmp_path, "medease")
    ex.wait_registered(2)
    pool = next(p for p in ex.gateway_config()["pools"] if p["name"] == "default")
    assert pool["health"]["path"] == "/health" and pool["algorithm"] == "least_conn"
    # up's single-service defaults: checks every 1 s
    assert pool["health"]["interval"] == "1s"
    # several check rounds later, both members are still healthy and serve
    p, out = load(procs, tmp_path, ex.url("/api/patients?org_id=3"), 4, rate=100)
    total = finish(p, out)
    assert_all_ok(total, 300)
    _, members = ex.api("GET", "/api/v1/pools/default", port=ex.admin)
    assert [m["healthy"] for m in members["members"]] == [True, True], members
    seen = {requests.get(ex.url("/health"), timeout=5).json()["instance"] for _ in range(20)}
    assert seen == {"i-1", "i-2"}
    st = ex.status()
    assert st["service"] == "default" and st["autoscaling"]["max"] == 50
    # no /metrics in the service: nothing for Prometheus to scrape (and see as down)
    with open(ex.data / "prometheus" / "targets.json") as f:
        roles = sorted(g["labels"]["role"] for g in json.load(f))
    assert roles == ["control", "gateway"], roles


def test_surgicase_fastapi_services_api_sticky_and_rolling_deploy_under_load(procs, tmp_path):
    ex = Example(procs, tmp_path, "surgicase")
    t0 = time.time()
    ex.wait_registered(3, service="api", timeout=90)
    # served once registered: the first request through the gateway is a 200
    r = requests.get(ex.url("/health/ready"), timeout=5)
    assert r.status_code == 200, r.text
    ready_after = time.time() - t0

    # one truth: the pool's check is the service's ready path and ALB block
    pool = next(p for p in ex.gateway_config()["pools"] if p["name"] == "api")
    assert pool["health"] == {**pool["health"], "path": "/health/ready", "interval": "30s",
                              "timeout": "5s", "rise": 2, "fall": 3}
    assert pool["sticky_cookie"] == "SURGICASE_LB"

    # sticky: the ALB-style cookie pins a client to one instance
    assert "SURGICASE_LB=" in r.headers["Set-Cookie"] and "Max-Age=86400" in r.headers["Set-Cookie"]
    s = requests.Session()
    first = s.get(ex.url("/health/ready"), timeout=5).json()["instance"]
    assert {s.get(ex.url("/health/ready"), timeout=5).json()["instance"] for _ in range(10)} == {first}

    # the services family of the API, and the default service's old paths
    code, sv = ex.api("GET", "/api/v1/services")
    assert code == 200 and [x["name"] for x in sv["services"]] == ["api"]
    assert sv["services"][0]["ready"] == 3 and sv["services"][0]["default"] is True
    assert ex.status()["service"] == "api" and ex.status("api")["desired"] == 3
    code, e = ex.api("GET", "/api/v1/scaling/status?service=nope")
    assert code == 404 and e["field"] == "service" and "services: api" in e["error"]
    code, e = ex.api("GET", "/api/v1/services/nope/instances")
    assert code == 404 and "no service 'nope'" in e["error"]
    code, _ = ex.api("GET", "/api/v1/services/api/scaling/config")
    assert code == 200

    r = run_hscale("status", "--control", f"http://127.0.0.1:{ex.control}", "--service", "api")
    assert r.returncode == 0 and "pool api" in r.stdout, r.stdout + r.stderr

    # rolling deploy of the FastAPI service by name, under load: nothing dropped
    p, out = load(procs, tmp_path, ex.url("/casefilter?user_id=3&status=10"), 20, rate=80)
    wait_until(lambda: requests.get(ex.url("/health/ready"), timeout=5).ok, what="load started")
    r = run_hscale("deploy", "rolling", "--service", "api", "--version", "v2",
                   "--control", f"http://127.0.0.1:{ex.control}", "--observe", "1s", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    total = finish(p, out)
    assert_all_ok(total, 1000)
    versions = sorted(i["version"] for i in ex.status("api")["instances"])
    assert versions == ["v2"] * 3
    assert requests.get(ex.url("/health/ready"), timeout=5).json()["version"] == "v2"
    print(f"surgicase: first request served {ready_after:.1f} s after start")


def test_up_services_config_errors_name_the_key(procs, tmp_path):
    bad = [
        ("services:\n  - name: Api\n", "services[0].name", "a-z 0-9"),
        ("services:\n  - name: a\n  - name: a\n", "services[1].name", "defined twice"),
        ("services:\n  - name: a\n    listen: 127.0.0.1:1\n", "services[0].listen",
         "set control.listen instead"),
        ("services:\n  - name: a\n    template: {}\n", "services[0].template", "unknown"),
        ("services:\n  - name: a\n    ready_path: health\n", "ready_path", "starting with '/'"),
        ("services:\n  - name: a\n    health: {interval: 1s, timeout: 2s}\n",
         "services[0].health.timeout", "at most interval"),
        ("services:\n  - name: a\n  - name: b\n    pool: a\n", "services[1].pool", "one pool per service"),
    ]
    for text, key, what in bad:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(text)
        r = run_hscale("up", "-c", cfg, "--data", tmp_path / "d", "--control", "127.0.0.1:0")
        assert r.returncode == 2, (text, r.stderr)
        assert key in r.stderr and what in r.stderr, (text, r.stderr)
    assert not (tmp_path / "d").exists()   # nothing started, nothing written


def test_fastapi_service_scales_out_on_os_measured_cpu(procs, tmp_path):
    """CPU-bound load on the SurgiCase FastAPI service (no /metrics) makes
    the target-tracking policy add an instance: CPU is read from /proc."""
    cfg = tmp_path / "cpu.yaml"
    cfg.write_text(
        "services:\n"
        "  - name: api\n"
        '    command: "/usr/bin/python3 -m uvicorn main:app --host {host} --port {port} --no-access-log"\n'
        "    workdir: examples/surgicase\n"
        '    env: ["INSTANCE_ID={id}"]\n'
        "    ready_path: /health/ready\n"
        '    metrics_path: ""\n'
        "    instances: 1\n"
        "    check_interval: 1s\n"
        "    health: {interval: 1s, timeout: 500ms}\n"
        "    autoscaling:\n"
        "      check_interval: 1s\n"
        "      min_instances: 1\n"
        "      max_instances: 3\n"
        "      warmup: 1s\n"
        "      scale_out_cooldown: 0s\n"
        "      target: {cpu: 40, memory: 0}\n")
    ex = Example(procs, tmp_path, "cpu", config=cfg)
    ex.wait_registered(1, service="api", timeout=90)
    wait_until(lambda: any(i.get("cpu_source") == "os" for i in
                           ex.api("GET", "/api/v1/services/api/scaling/metrics")[1]["instances"]),
               what="an OS CPU sample")   # the list is empty until the first sample
    t0 = time.time()
    p, out = load(procs, tmp_path, ex.url("/reports/digest?ms=30"), 40, rate=60, conns=6)
    ev = wait_until(lambda: [e for e in ex.api("GET", "/api/v1/services/api/scaling/history")[1]["events"]
                             if e["kind"] == "scale_out"], timeout=40, what="a scale-out")
    # one step may add more than one (1 -> 3 at 95 % against 40)
    wait_until(lambda: ex.registered("api") >= 2, timeout=40, what="an added instance serving")
    serving = time.time() - t0
    assert ev[-1]["policy"] == "target:cpu", ev[-1]
    assert ev[-1]["metrics"]["cpu"] > 40, ev[-1]
    p.kill()
    print(f"CPU step to a second FastAPI instance serving: {serving:.1f} s")


def test_tutormax_fastapi_api_and_celery_workers_from_zero(procs, tmp_path, redis_addr):  # noqa: F811
    """The two-service example: the api behind the gateway, the Celery
    worker service at zero until tasks are queued through the api, every
    task run once, and the workers back to zero once the queue is idle."""
    import redis as redis_client
    pytest.importorskip("celery")
    url = f"redis://{redis_addr}/0"
    r = redis_client.Redis.from_url(url, decode_responses=True)
    r.flushall()
    text = open(os.path.join(ROOT, "examples", "tutormax", "hscale.yaml")).read()
    text = text.replace("redis://127.0.0.1:6379/0", url)
    # a short idle period and a small ceiling for a two-core test machine
    text = text.replace("per_instance: 4}", "per_instance: 4, idle_to_zero: 3s}")
    text = text.replace("max_instances: 8", "max_instances: 3")
    assert "idle_to_zero: 3s" in text and url in text
    cfg = tmp_path / "tutormax.yaml"
    cfg.write_text(text)
    ex = Example(procs, tmp_path, "tutormax", config=cfg)
    ex.wait_registered(2, service="api", timeout=90)
    assert ex.status("worker")["desired"] == 0 and ex.status("worker")["instances"] == []

    # the gateway knows only the api: workers have no port and no pool
    gw = ex.gateway_config()
    assert [p["name"] for p in gw["pools"]] == ["api"]
    assert gw["pools"][0]["algorithm"] == "least_conn"
    assert gw["pools"][0]["health"]["path"] == "/health"
    h = requests.get(ex.url("/health"), timeout=5)
    assert h.status_code == 200 and h.json()["instance"] in ("i-1", "i-2")
    assert h.headers["X-Content-Type-Options"] == "nosniff"

    ids = [str(i) for i in range(1, 21)]
    t0 = time.time()
    q = requests.post(ex.url("/api/summaries"), json={"sessions": [int(i) for i in ids], "seconds": 0.1},
                      timeout=10)
    assert q.status_code == 202 and q.json()["queued"] == 20, q.text
    wait_until(lambda: ex.status("worker")["desired"] >= 1, timeout=5, what="a worker from zero")
    first = wait_until(lambda: r.hlen("tutormax:started") > 0, timeout=30, what="a first task")
    print(f"tutormax: first task started {time.time() - t0:.1f} s after the enqueue")
    wait_until(lambda: r.hlen("tutormax:runs") == 20, timeout=120, step=0.5, what="all 20 tasks")
    runs = r.hgetall("tutormax:runs")
    assert sorted(runs, key=int) == ids and set(runs.values()) == {"1"}, runs
    assert first
    # idle: back to zero, each worker stopped by SIGTERM (warm shutdown)
    wait_until(lambda: ex.status("worker")["instances"] == [], timeout=60, what="workers back to zero")
    hist = ex.api("GET", "/api/v1/services/worker/scaling/history")[1]["events"]
    assert any(e["kind"] == "scale_out" and e["old"] == 0 for e in hist), hist
    assert any(e["kind"] == "scale_in" and e["new"] == 0 for e in hist), hist
    st = run_hscale("status", "--control", f"http://127.0.0.1:{ex.control}")
    assert st.returncode == 0 and "== service api" in st.stdout and "== service worker" in st.stdout, st.stdout
