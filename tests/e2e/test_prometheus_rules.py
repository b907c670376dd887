"""contrib/prometheus passes promtool: the config (with its rule file) is
valid, the rules are valid, and alerts_test.yml's unit tests pass -- each
alert fires on its trigger and stays quiet on the neighbour under it. The
last test proves the unit tests can fail: a rule weakened on purpose must be
caught."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

PROM_DIR = os.path.join(ROOT, "contrib", "prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run scripts/deps.sh")

ALERTS = ["InstanceDown", "HighCPUUsage", "HighMemoryUsage", "DatabaseConnectionsHigh",
          "DatabasePoolSaturated", "AppLatencyHigh", "GatewayLatencyHigh",
          "GatewayErrorRateHigh", "AppErrorRateHigh"]


def promtool(*args, cwd=PROM_DIR):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout + r.stderr


def test_check_rules():
    r = promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(ALERTS)} rules found" in r.stdout


def test_rule_unit_tests_pass_and_cover_every_alert():
    r = promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(os.path.join(PROM_DIR, "alerts_test.yml")) as f:
        tests = f.read()
    for name in ALERTS:
        # Each alert is checked both quiet (exp_alerts: []) and firing.
        assert tests.count(f"alertname: {name}\n") >= 2, name


@pytest.mark.parametrize("old,new", [
    ("for: 1m", "for: 5m"),                                   # InstanceDown too late
    ('route!~"/health.*|/metrics"', 'route!~"/nothing"'),     # probes hide a slow API
    ("> 0.01", "> 0.05"),                                     # 5xx threshold too lax
])
def test_weakened_rules_are_caught(tmp_path, old, new):
    with open(os.path.join(PROM_DIR, "alerts.yml")) as f:
        rules = f.read()
    assert old in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(old, new))
    shutil.copy(os.path.join(PROM_DIR, "alerts_test.yml"), tmp_path)
    r = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert r.returncode != 0, f"weakening {old!r} -> {new!r} went unnoticed:\n{r.stdout}"
