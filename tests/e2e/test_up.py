"""`hscale up`: the gateway, the control plane and its instances from one
command; the scaling API on the control listener; `hscale status`; a
kill -9 of an instance replaced; a clean stop leaving no child behind."""
import json
import os
import signal

from conftest import free_port, run_hscale
from up_util import start_up, wait_until


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_up_api_status_kill9_and_clean_stop(procs, tmp_path):
    s = start_up(procs, tmp_path, "--min", "2", "--max", "4")
    # up waits for the gateway's admin listener before starting instances,
    # so none of the first ones misses it and waits a check for its turn
    log = open(s.proc.log_path).read()
    assert "unreachable" not in log and log.count(" registered at ") == 2, log
    st = s.status()
    a = st["autoscaling"]
    assert a["enabled"] is True and a["min"] == 2 and a["max"] == 4 and a["desired"] == 2
    assert set(a["cooldown_remaining_s"]) == {"scale_out", "scale_in"}
    assert sorted(m["address"] for m in s.members()) == sorted(i["address"] for i in s.ready())

    # /metrics: one sample per check, and every instance with its numbers
    m = wait_until(lambda: (lambda b: len(b["series"]) >= 3 and b)(
        s.api("GET", "/api/v1/scaling/metrics")[1]), what="3 samples")
    assert m["interval_s"] == 0.5 and m["now"] >= m["series"][-1]["t"]
    assert set(m["series"][-1]) == {"t", "instances", "ready", "rps", "p95_ms", "error_rate",
                                    "cpu_percent", "memory_percent"}
    assert {i["id"] for i in m["instances"]} == {i["id"] for i in s.ready()}
    assert set(m["instances"][0]) == {"id", "address", "version", "state", "rps", "p95_ms",
                                      "cpu_percent", "memory_percent", "cpu_source",
                                      "memory_source", "in_flight", "healthy"}
    # process-driver instances are measured by the OS (their whole tree)
    m = wait_until(lambda: (lambda b: all(i["memory_source"] == "os" and i["cpu_source"] == "os"
                                          for i in b["instances"]) and b)(
        s.api("GET", "/api/v1/scaling/metrics")[1]), what="OS-measured instances")
    assert all(0 < i["memory_percent"] < 50 for i in m["instances"]), m["instances"]

    # /config, and a bad PUT: 400 naming the field, the old config still in force
    code, cfg = s.api("GET", "/api/v1/scaling/config")
    assert code == 200 and cfg["target"]["rps"] == 30 and cfg["min_instances"] == 2
    for body, field in (({"min_instances": 9}, "max_instances"),
                        ({"cpu_scale_up": "lots"}, "cpu_scale_up"),
                        ({"target": {"rps": -1}}, "target.rps"),
                        ({"nope": 1}, "nope"), ("[1]", "body")):
        code, err = s.api("PUT", "/api/v1/scaling/config", body)
        assert code == 400 and err["field"] == field, (body, err)
    assert s.api("GET", "/api/v1/scaling/config")[1] == cfg
    code, new = s.api("PUT", "/api/v1/scaling/config", {"scale_in_cooldown": "4s"})
    assert code == 200 and new["scale_in_cooldown"] == "4s" and new["target"]["rps"] == 30

    # /recommendations, /history, stop and start
    code, rec = s.api("GET", "/api/v1/scaling/recommendations")
    assert code == 200 and rec["current"] == 2 and len(rec["for_load"]) == 4
    assert any(p["policy"] == "target:rps" for p in rec["policies"])
    assert s.api("POST", "/api/v1/scaling/stop") == (200, {"enabled": False, "previous": True})
    assert s.status()["autoscaling"]["enabled"] is False
    assert s.api("POST", "/api/v1/scaling/start") == (200, {"enabled": True, "previous": False})
    code, h = s.api("GET", "/api/v1/scaling/history?limit=x")
    assert code == 400 and h["field"] == "limit"

    # a manual count outside [min, max] is refused; inside it is an event
    code, err = s.api("POST", "/api/v1/scaling/desired", {"count": 5})
    assert code == 400 and "max_instances 4" in err["error"]
    assert s.api("POST", "/api/v1/scaling/desired", {"count": 3})[0] == 200
    wait_until(lambda: len(s.ready()) == 3, what="3 ready")
    # the API call left one audit event next to the scaler's manual one
    ev = s.api("GET", "/api/v1/scaling/history?limit=10")[1]["events"]
    audits = [e for e in ev if e["kind"] == "audit" and "desired count set to 3" in e["what"]]
    assert len(audits) == 1 and audits[0]["role"] == "local", ev
    ev = [e for e in ev if e["kind"] == "manual"]
    assert ev[0]["kind"] == "manual" and ev[0]["old"] == 2 and ev[0]["new"] == 3
    assert isinstance(ev[0]["time"], int) and "metrics" in ev[0]

    # kill -9 of an instance: restarted, back in the gateway pool
    victim = s.ready()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: any(i["id"] == victim["id"] and i["restarts"] >= 1 and i["state"] == "ready"
                           for i in s.status()["instances"]), what="the killed instance back")
    wait_until(lambda: sorted(m["address"] for m in s.members())
               == sorted(i["address"] for i in s.ready()), what="gateway pool in sync")

    # hscale status: the table, --json, and exit 1 when unreachable
    url = f"http://127.0.0.1:{s.control}"
    r = run_hscale("status", "--control", url)
    assert r.returncode == 0, r.stderr
    assert "REQ/S" in r.stdout and "autoscaling on" in r.stdout and "manual" in r.stdout
    for i in s.ready():
        assert i["id"] in r.stdout and i["address"] in r.stdout
    r = run_hscale("status", "--control", url, "--json")
    j = json.loads(r.stdout)
    assert j["status"]["desired"] == 3 and "manual" in [e["kind"] for e in j["events"]]
    r = run_hscale("status", "--control", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot reach the control plane" in r.stderr

    # SIGTERM: instances drained and stopped, then the gateway; nothing left
    pids = [i["pid"] for i in s.status()["instances"]]
    assert procs.stop(s.proc, timeout=30) == 0
    assert not [p for p in pids if alive(p)]
    assert "draining the instances" in open(s.proc.log_path).read()
