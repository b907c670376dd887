"""Helpers for the tests that run a real Prometheus (test_prometheus_live,
test_grafana): a config derived from contrib/prometheus with test timings,
a file_sd targets file written as the control plane writes it, and the HTTP
API. Not a test module."""
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from conftest import ROOT, free_port, wait_port

PROM_DIR = os.path.join(ROOT, "contrib", "prometheus")
PROMETHEUS = shutil.which("prometheus")


def write_targets(path, targets, role="app"):
    """Atomically (write, then rename): readers never see half a file."""
    groups = [{"targets": [t], "labels": {"role": role, "instance_id": f"{role}-{i}"}}
              for i, t in enumerate(targets)]
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(groups, f)
    os.rename(tmp, path)


def derive_config(tmp_path, targets_file, instance_down_for="2s"):
    """The shipped config and rules with 1 s scrapes, the test's targets file
    and a short InstanceDown `for:`."""
    with open(os.path.join(PROM_DIR, "prometheus.yml")) as f:
        cfg = yaml.safe_load(f)
    with open(os.path.join(PROM_DIR, "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    cfg["global"].update(scrape_interval="1s", scrape_timeout="500ms", evaluation_interval="1s")
    job = cfg["scrape_configs"][0]
    assert job["file_sd_configs"][0]["files"] == ["../../hscale-data/prometheus/targets.json"]
    job["file_sd_configs"][0]["files"] = [str(targets_file)]
    job["file_sd_configs"][0]["refresh_interval"] = "1s"
    down = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "InstanceDown"]
    assert len(down) == 1 and down[0]["for"] == "1m"
    down[0]["for"] = instance_down_for
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    cfg["rule_files"] = ["alerts.yml"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_prometheus(procs, tmp_path, targets_file):
    cfg = derive_config(tmp_path, targets_file)
    port = free_port()
    p = procs.start([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path}/tsdb",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    name="prometheus", cwd=tmp_path)
    wait_port(port, timeout=15, proc=p)
    deadline = time.time() + 15
    while True:     # listening is not ready: the API answers 503 until the TSDB is open
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return port
        except OSError:
            pass
        if time.time() > deadline or p.poll() is not None:
            raise AssertionError(f"prometheus not ready on {port} (exit {p.poll()})")
        time.sleep(0.1)


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:      # 400 on a bad query: say why
        body = json.loads(e.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_for(what, fn, deadline):
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:     # Prometheus still starting
            last = e
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def up_by_instance(port):
    return {r["metric"]["instance"]: r["value"][1]
            for r in api(port, "query", query='up{job="hscale"}')["result"]}


def firing(port, alert):
    return {a["labels"]["instance"] for a in api(port, "alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"}
