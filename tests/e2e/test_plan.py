"""`hscale plan`: the seeds' capacity figures from given numbers, from a real
`hscale bench --json` report of one running `hscale app`, and exit 2 naming
the flag on bad input."""
import json
import math

import pytest

from conftest import free_port, run_hscale, wait_port


def plan_json(*args):
    r = run_hscale("plan", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_surgicase_formula_and_db_connections():
    # "500 concurrent users, ~100 per instance: ceil(500/100) = 5 instances"
    p = plan_json("--users-per-instance", "100", "--users", "500", "--headroom", "0")
    t = p["target"]
    assert t["instances"] == 5 and t["raw_instances"] == 5
    assert t["db_connections_steady"] == 50          # 5 x pool 10
    assert t["db_connections_peak"] == 150           # 5 x (10 + 20 overflow)
    assert t["db_connections_over_limit"] is True    # > PostgreSQL's 100
    # Default headroom 30 %: 500 / 70 -> 8; the minimum 2 holds for tiny loads.
    assert plan_json("--users-per-instance", "100", "--users", "500")["target"]["instances"] == 8
    assert plan_json("--users-per-instance", "100", "--users", "10")["target"]["instances"] == 2
    small = plan_json("--users-per-instance", "100", "--users", "10", "--min", "1",
                      "--pool-size", "4", "--pool-overflow", "0")["target"]
    assert small["instances"] == 1 and small["db_connections_peak"] == 4


def test_medease_per_10k_users_table_in_text_and_json():
    # MedEase: 500 req/s per 10k users on 5 tasks -> 100 req/s per instance.
    p = plan_json("--rps-per-instance", "100", "--headroom", "0")
    assert p["target"] is None
    rows = {int(r["users"]): r["instances"] for r in p["table"]}
    assert rows == {10000: 5, 50000: 25, 100000: 50, 500000: 250}
    r = run_hscale("plan", "--rps-per-instance", "100", "--headroom", "0", "--rps", "2.5k")
    assert r.returncode == 0, r.stderr
    assert "instances needed:  25" in r.stdout
    assert "500k" in r.stdout and "250" in r.stdout


@pytest.mark.parametrize("args,flag", [
    (["--users", "500"], "--users-per-instance"),                       # no capacity
    (["--users-per-instance", "abc"], "--users-per-instance"),
    (["--users-per-instance", "0"], "--users-per-instance"),
    (["--rps-per-instance", "100", "--headroom", "120"], "--headroom"),
    (["--rps-per-instance", "100", "--min", "1.5"], "--min"),
    (["--rps-per-instance", "100", "--users", "1", "--rps", "1"], "--rps"),
    (["--rps-per-instance", "100", "--pool-size"], "--pool-size"),
    (["--rps-per-instance", "100", "--frobnicate", "1"], "--frobnicate"),
    (["--from-report", "/nonexistent/report.json"], "--from-report"),
    (["--from-report", "x.json", "--rps-per-instance", "5"], "--from-report"),
])
def test_bad_input_exits_2_naming_the_flag(args, flag):
    r = run_hscale("plan", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert flag in r.stderr.splitlines()[0], r.stderr
    assert r.stdout == ""


def test_report_that_is_not_a_bench_report(tmp_path):
    f = tmp_path / "other.json"
    f.write_text('{"total": {"count": 3, "rps": 1, "error_rate": 0, "latency_ms": {"p95": 1}}}')
    r = run_hscale("plan", "--from-report", f)
    assert r.returncode == 2
    assert "total.latency_ms.p99" in r.stderr and str(f) in r.stderr


def test_plan_from_a_real_bench_report(procs, tmp_path):
    db = f"sqlite:{tmp_path}/s0.db"
    r = run_hscale("app", "seed", "--users", "20", "--cases", "500", "--db", db, timeout=60)
    assert r.returncode == 0, r.stderr
    port = free_port()
    p = procs.hscale("app", "--listen", f"127.0.0.1:{port}", "--db", db, "--workers", "1")
    wait_port(port, proc=p)
    report = tmp_path / "bench.json"
    r = run_hscale("bench", f"http://127.0.0.1:{port}/casefilter?user_id={{rand:1:20}}&limit=10",
                   "-c", "4", "-t", "1", "-d", "2s", "-q", "--json", report, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(report.read_text())["total"]
    assert rep["count"] > 50 and rep["error_rate"] == 0, rep

    p = plan_json("--from-report", report, "--users", "50k")
    cap = p["capacity"]
    assert cap["source"] == "report"
    assert cap["report"]["met_slo"] is (rep["latency_ms"]["p95"] <= 500)
    good = rep["rps"] * (1 - rep["error_rate"])
    assert cap["per_instance_rps"] == pytest.approx(good, rel=1e-6)
    want = max(2, math.ceil(50000 * 0.05 / (good * 0.7) - 1e-9))
    assert p["target"]["instances"] == want
    assert p["target"]["db_connections_peak"] == want * 30

    # An SLO the run missed: capacity is scaled down by SLO / p95.
    slo = rep["latency_ms"]["p95"] / 4
    p2 = plan_json("--from-report", report, "--slo-p95", f"{slo:.6f}", "--users", "50k")
    assert p2["capacity"]["report"]["met_slo"] is False
    assert p2["capacity"]["per_instance_rps"] == pytest.approx(good / 4, rel=1e-3)
    assert p2["target"]["instances"] >= p["target"]["instances"]

    r = run_hscale("plan", "--from-report", report, "--slo-p95", f"{slo:.6f}")
    assert r.returncode == 0 and "OVER the SLO" in r.stdout, r.stdout
