"""End-to-end tests for `hscale bench` against a Python test server.

The key one: a server that freezes for 1 s mid-run. In the open model
(--rate) latency is measured from each request's scheduled time, so the
freeze shows in p99; in the closed model only the few requests in flight see
it (coordinated omission), so p99 stays low and only max shows it.
"""
import json
import os
import sys

import pytest

from conftest import free_port, read_log, run_hscale, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))


def start_server(procs, *extra):
    port = free_port()
    p = procs.start([sys.executable, os.path.join(HERE, "bench_server.py"), str(port), *extra],
                    name="bench_server")
    wait_port(port, proc=p)
    return port


def bench_json(tmp_path, *args, timeout=60):
    out = tmp_path / "report.json"
    r = run_hscale("bench", *args, "--json", out, "-q", timeout=timeout)
    rep = json.loads(out.read_text()) if out.exists() else None
    return r, rep


def test_open_model_shows_a_stall_closed_model_hides_it(procs, tmp_path):
    port = start_server(procs, "--stall-at", "1.0", "--stall-for", "1.0")
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "--rate", "200", "-c", "20",
                        "-t", "2", "-d", "3.5s")
    assert r.returncode == 0, r.stderr + r.stdout
    lat = rep["total"]["latency_ms"]
    assert rep["model"] == "open"
    # ~200 of ~700 requests were due during the stall: p99 near 1 s.
    assert lat["p99"] >= 700, lat
    assert 600 <= rep["total"]["count"] <= 720, rep["total"]["count"]

    port = start_server(procs, "--stall-at", "1.0", "--stall-for", "1.0")
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "-c", "10", "-t", "2", "-d", "3.5s")
    assert r.returncode == 0, r.stderr + r.stdout
    lat = rep["total"]["latency_ms"]
    assert rep["model"] == "closed"
    assert lat["max"] >= 800, lat          # the stall happened ...
    assert lat["p99"] < 200, lat           # ... and closed mode hides it


def test_thresholds_pass_and_fail(procs, tmp_path):
    port = start_server(procs)
    url = f"http://127.0.0.1:{port}/"
    r = run_hscale("bench", url, "-c", "4", "-d", "1s", "-q",
                   "--threshold", "p95<5s", "--threshold", "errors<1%", "--threshold", "rps>10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout and "FAIL" not in r.stdout

    r = run_hscale("bench", url, "-c", "4", "-d", "1s", "-q", "--threshold", "p50<1us",
                   "--threshold", "errors<1%")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  p50<1us" in r.stdout

    r = run_hscale("bench", f"http://127.0.0.1:{port}/status/503", "-c", "2", "-d", "1s", "-q",
                   "--threshold", "errors<1%")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "503=" in r.stdout and "http_5xx=" in r.stdout


def test_scenario_weights_templates_and_per_name_thresholds(procs, tmp_path):
    port = start_server(procs)
    sc = tmp_path / "surgicase.yaml"
    sc.write_text(
        "think: 1ms-2ms\n"
        "requests:\n"
        "  - name: health_check\n"
        "    weight: 3\n"
        "    path: /health\n"
        "  - name: get_cases\n"
        "    weight: 2\n"
        "    path: /casefilter?user_id={rand:1:100}&status={pick:open|closed}&n={seq}\n"
        "  - name: chunked\n"
        "    weight: 1\n"
        "    method: POST\n"
        "    path: /chunked\n"
        "    headers: {X-Trace: '{seq}'}\n"
        "    body: '{{\"id\": {rand:1:9}}}'\n")
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}", "--scenario", sc, "-c", "8", "-d", "2s",
                        "--threshold", "get_cases:p99<2s", "--threshold", "chunked:errors<1%",
                        "--csv", tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    by = {q["name"]: q for q in rep["requests"]}
    assert set(by) == {"health_check", "get_cases", "chunked"}
    total = sum(q["count"] for q in by.values())
    assert total > 200
    assert abs(by["health_check"]["count"] / total - 0.5) < 0.08
    assert abs(by["get_cases"]["count"] / total - 1 / 3) < 0.08
    assert rep["total"]["failures"] == 0
    assert [t["ok"] for t in rep["thresholds"]] == [True, True]
    stats = (tmp_path / "out_stats.csv").read_text().splitlines()
    assert stats[0].startswith("name,count,failures,rps")
    assert any(line.startswith('"get_cases",') for line in stats)
    assert (tmp_path / "out_status.csv").read_text().startswith("status,count\n200,")


def test_a_kept_alive_connection_closed_unanswered_is_resent_once_for_idempotent_methods(procs, tmp_path):
    """A server closing a kept-alive connection as the next request arrives
    (an idle timeout racing it) fails no GET: the load tool sends it again on
    a new connection, as browsers and HTTP libraries do, and says so. A POST
    is not sent twice: it counts as a reset."""
    port = start_server(procs, "--close-every", "3")
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/x", "-c", "4", "-d", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    n = rep["total"]["count"]
    assert n > 50 and rep["total"]["failures"] == 0, rep["total"]
    # every third request meets a closed connection; each is sent again once
    assert n // 2 - 8 <= rep["stale_resends"] <= n // 2 + 8, (n, rep["stale_resends"])
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/x", "--method", "POST", "--body", "x=1",
                        "-c", "2", "-d", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    n = rep["total"]["count"]
    assert rep["stale_resends"] == 0, rep
    assert abs(rep["total"]["errors"]["reset"] - n / 3) <= 4, rep["total"]


def test_stages_ramp_connections(procs, tmp_path):
    port = start_server(procs)
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "--stages", "700ms:4,700ms:4,600ms:0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["connections"] == 4
    assert 1.8 <= rep["elapsed_s"] <= 2.3
    assert len(rep["stages"]) == 3
    assert rep["total"]["count"] > 50


def test_open_model_rate_stages(procs, tmp_path):
    port = start_server(procs)
    # 0 -> 200/s over 1 s, then 200/s for 1 s: 100 + 200 arrivals.
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "--stages", "1s:200,1s:200", "--open",
                        "-c", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["model"] == "open"
    assert 285 <= rep["total"]["count"] + rep["behind_schedule"] <= 300, rep["total"]


def test_connect_refused_is_counted_and_fails(tmp_path):
    port = free_port()
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "-c", "2", "-d", "500ms")
    assert r.returncode == 1
    assert rep["total"]["errors"]["connect"] > 0
    assert "no response" in r.stderr


@pytest.mark.parametrize("args,needle", [
    ([], "missing URL"),
    (["ftp://x/"], "expected http[s]://"),
    (["http://127.0.0.1/", "--insecure"], "--insecure goes with an https:// URL"),
    (["http://127.0.0.1:99999/"], "127.0.0.1:99999"),
    (["http://127.0.0.1:1/", "--bogus"], "unknown option '--bogus'"),
    (["http://127.0.0.1:1/", "-c", "0"], "-c: '0'"),
    (["http://127.0.0.1:1/", "-d", "10parsecs"], "bad duration '10parsecs'"),
    (["http://127.0.0.1:1/", "--rate", "fast"], "--rate: 'fast'"),
    (["http://127.0.0.1:1/", "--stages", "30s"], "DURATION:TARGET"),
    (["http://127.0.0.1:1/", "--stages", "1s:1", "-d", "1s"], "drop -d"),
    (["http://127.0.0.1:1/", "--threshold", "p95<"], "expected a number"),
    (["http://127.0.0.1:1/", "--threshold", "p97<1ms"], "unknown metric 'p97'"),
    (["http://127.0.0.1:1/", "--threshold", "nope:p95<1ms"], "no request is named 'nope'"),
    (["http://127.0.0.1:1/", "--scenario", "/nonexistent.yaml"], "/nonexistent.yaml"),
    (["http://127.0.0.1:1/?{rand:1}"], "rand:LO:HI"),
    (["http://127.0.0.1:1/", "-H", "novalue"], "Name: value"),
])
def test_bad_usage_exits_2_before_any_load(procs, args, needle):
    port = start_server(procs)
    args = [a.replace("127.0.0.1:1/", f"127.0.0.1:{port}/") for a in args]
    r = run_hscale("bench", *args, timeout=10)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert needle in r.stderr, r.stderr
    assert "bench" in r.stderr


def test_bad_scenario_file_names_the_field(tmp_path):
    sc = tmp_path / "bad.yaml"
    sc.write_text("requests:\n  - path: /a\n    weight: -3\n")
    r = run_hscale("bench", "http://127.0.0.1:1/", "--scenario", sc, timeout=10)
    assert r.returncode == 2
    assert "/requests/0/weight" in r.stderr and "whole number" in r.stderr


def test_help():
    r = run_hscale("bench", "--help")
    assert r.returncode == 0
    assert "--threshold" in r.stdout and "--rate" in r.stdout and "--stages" in r.stdout


def test_timeouts_are_counted(procs, tmp_path):
    port = start_server(procs, "--stall-at", "0", "--stall-for", "60")
    r, rep = bench_json(tmp_path, f"http://127.0.0.1:{port}/", "-c", "2", "-d", "1500ms",
                        "--timeout", "300ms")
    assert r.returncode == 1, r.stdout + r.stderr
    assert rep["total"]["errors"]["timeout"] >= 4, rep["total"]
    assert rep["total"]["latency_ms"]["max"] == 0
