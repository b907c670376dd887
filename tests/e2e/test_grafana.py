"""contrib/grafana/hscale.json is a valid dashboard whose every expression
names only metrics hscale exports: names registered in the sources
(metrics_family, `# TYPE` lines, the process_* block) and served by a
running `hscale app` and `hscale gateway` in front of it; every expression
evaluates in a real Prometheus scraping both, with data for every panel a
healthy fleet can fill. A checker test proves a made-up name is caught."""
import glob
import json
import os
import re
import time
import urllib.request

import pytest

from conftest import ROOT, free_port, run_hscale, wait_port
from prometheus_util import PROMETHEUS, api, start_prometheus, up_by_instance, wait_for, write_targets

DASH = os.path.join(ROOT, "contrib", "grafana", "hscale.json")
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}
# Series Prometheus makes itself, not scraped from a target.
SYNTHETIC = {"up", "ALERTS"}


def load_dashboard():
    with open(DASH) as f:
        return json.load(f)


def expressions(dash):
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(("annotation " + a["name"], a["expr"]))
    return out


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                       # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue                                        # a function or keyword
        names.add(m.group(0))
    return names


def exported_by_sources():
    """Names the C sources register or render, with histogram suffixes."""
    names = set()
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True):
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r'metrics_family\(\s*[\w>.-]+,\s*"(\w+)",.*?METRIC_(\w+)', text, re.S):
            names.add(m.group(1))
            if m.group(2) == "HISTOGRAM":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
        # "# TYPE name kind" written out, or a table row { "name", "kind", ... }
        # whose entries a loop renders
        for m in re.finditer(r'# TYPE (\w+) (counter|gauge|histogram)'
                             r'|\{\s*"(\w+)",\s*"(counter|gauge|histogram)"', text):
            name, kind = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
        names.update(re.findall(r'put_plain\(\s*\w+,\s*"(\w+)"', text))
    return names


def unknown_names(dash, exported):
    bad = {}
    for title, expr in expressions(dash):
        missing = metric_names(expr) - exported - SYNTHETIC
        if missing:
            bad[title] = sorted(missing)
    return bad


def test_dashboard_is_valid_and_covers_the_fleet():
    d = load_dashboard()
    assert d["title"] == "hscale" and d["uid"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"] for p in d["panels"]).lower()
    for want in ("requests/s", "p95", "error", "instances up", "cpu", "memory", "db pool"):
        assert want in titles, want
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]


def test_checker_finds_names_and_catches_made_up_ones():
    assert metric_names('histogram_quantile(0.95, sum by (route, le) (rate('
                        'hscale_gateway_request_duration_seconds_bucket{job=~"$job"}[5m])))') == \
        {"hscale_gateway_request_duration_seconds_bucket"}
    assert metric_names('a_total{x="y"} / ignoring(state) b{state="max"} or vector(0)') == \
        {"a_total", "b"}
    exported = exported_by_sources()
    assert "hscale_http_request_duration_seconds_bucket" in exported
    assert "process_resident_memory_bytes" in exported
    assert "hscale_http_requests" not in exported
    d = load_dashboard()
    d["panels"][1]["targets"][0]["expr"] = "sum(rate(hscale_http_requests{code=\"500\"}[1m]))"
    assert unknown_names(d, exported) == {d["panels"][1]["title"]: ["hscale_http_requests"]}


def test_every_metric_in_the_dashboard_is_exported():
    bad = unknown_names(load_dashboard(), exported_by_sources())
    assert not bad, f"dashboard panels read metrics no hscale source exports: {bad}"


# Served only with a cache configured (store.cache); checked against the
# sources above like the rest.
NEEDS_CACHE = {"hscale_cache_requests_total"}


@pytest.fixture
def fleet(procs, tmp_path):
    """An app and a gateway in front of it, with some traffic through both."""
    db = f"sqlite:{tmp_path}/s0.db"
    r = run_hscale("app", "seed", "--users", "5", "--cases", "20", "--db", db, timeout=30)
    assert r.returncode == 0, r.stderr
    app, gw, admin = free_port(), free_port(), free_port()
    p = procs.hscale("app", "--listen", f"127.0.0.1:{app}", "--db", db, "--workers", "1")
    wait_port(app, proc=p)
    g = procs.hscale("gateway", "--listen", f"127.0.0.1:{gw}", "--backend", f"127.0.0.1:{app}",
                     "--admin", f"127.0.0.1:{admin}", "--workers", "1")
    wait_port(admin, proc=g)
    wait_port(gw, proc=g)
    return {"app": app, "gateway": gw, "admin": admin}


def send_traffic(fleet, n=10):
    for i in range(n):
        for port in (fleet["gateway"], fleet["app"]):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/casefilter?user_id={i % 5 + 1}&limit=2",
                                   timeout=5).read()


def scrape_names(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {re.match(r"[a-zA-Z_:][\w:]*", line).group(0)
            for line in text.splitlines() if line and not line.startswith("#")}


def dashboard_names(dash):
    names = set()
    for _, expr in expressions(dash):
        names |= metric_names(expr)
    return names - SYNTHETIC


def test_running_app_and_gateway_serve_every_dashboard_metric(fleet):
    send_traffic(fleet, 3)
    served = scrape_names(fleet["app"]) | scrape_names(fleet["admin"])
    want = dashboard_names(load_dashboard())
    assert {"process_cpu_seconds_total", "hscale_http_requests_total", "hscale_db_pool_connections",
            "hscale_gateway_requests_total", "hscale_gateway_backend_up"} <= want
    missing = want - NEEDS_CACHE - served
    assert not missing, f"no running process serves {sorted(missing)}"


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: run scripts/deps.sh")
def test_expressions_evaluate_in_prometheus(fleet, procs, tmp_path):
    deadline = time.time() + 30
    targets = tmp_path / "targets.json"
    app_t, gw_t = f"127.0.0.1:{fleet['app']}", f"127.0.0.1:{fleet['admin']}"
    write_targets(targets, [app_t])
    with open(targets) as f:
        groups = json.load(f)
    groups.append({"targets": [gw_t], "labels": {"role": "gateway"}})
    targets.write_text(json.dumps(groups))
    # Series appear with their first request: traffic before the first
    # scrape and after it, so rate() sees an increase.
    send_traffic(fleet, 2)
    pport = start_prometheus(procs, tmp_path, targets)
    wait_for("both scraped", lambda: up_by_instance(pport) == {app_t: "1", gw_t: "1"}, deadline)
    send_traffic(fleet)
    # rate() needs two scrapes of each target after the traffic; the
    # targets' scrape offsets differ, so wait for both.
    probes = ['sum(rate(hscale_gateway_requests_total{job=~"hscale"}[1m])) > 0',
              'sum(rate(hscale_http_requests_total{server="app"}[1m])) > 0']
    wait_for("rates over the gateway's and the app's requests",
             lambda: all(api(pport, "query", query=q)["result"] for q in probes), deadline)
    empty = []
    for title, expr in expressions(load_dashboard()):
        res = api(pport, "query", query=expr.replace("$job", "hscale"))   # parses, or fails here
        # A healthy fleet answers no 5xx and fires no alert; the cache is off.
        quiet = "5.." in expr or "5xx" in expr or "ALERTS" in expr or metric_names(expr) & NEEDS_CACHE
        if not res["result"] and not quiet:
            empty.append(title)
    assert not empty, f"panels without data: {empty}"
