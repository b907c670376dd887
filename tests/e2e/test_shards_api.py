"""The control plane's shard management paths over real app instances on
SQLite shards: statistics with the seeded row counts, health with the
reason when a primary cannot be opened, a rebalance check that names the
over- and under-full shard and the move that evens them, `hscale shards
status|check`, a resharding started through the control plane with its
progress, pause and moved rows in the scaling history, and the admin
role required to start one."""
import json
import os
import sqlite3

from conftest import free_port, run_hscale, wait_port
from reshard_util import call
from up_util import wait_until


def start_fleet(procs, tmp_path, bad_shard=False, token=None):
    data = tmp_path / "data"
    cfg = tmp_path / "app.yaml"
    s1 = "      - name: s1\n" + ("        primary: sqlite:/proc/no/such/s1.db\n" if bad_shard else "")
    cfg.write_text(f"""\
app:
  listen: 127.0.0.1:0
  workers: 2
  store:
    data_dir: {data}
    strategy: directory
    default_shard: s0
    reshard_cleanup_delay: 200ms
    cache:
      kind: none
    shards:
      - name: s0
{s1}""")
    if not bad_shard:
        r = run_hscale("app", "seed", "-c", cfg, "--users", 20, "--cases", 400, timeout=60)
        assert r.returncode == 0, r.stderr
    port = free_port()
    # the instances inherit HSCALE_APP_ADMIN_TOKEN (app.admin_token); the
    # control plane sends it on their /admin paths (control.app_admin_token)
    env = {"HSCALE_CONTROL_TOKEN": token, "HSCALE_APP_ADMIN_TOKEN": "app-" + token} if token else None
    p = procs.hscale("control", "--listen", f"127.0.0.1:{port}", "--instances", "2",
                     "--state-dir", str(tmp_path / "control"), "--drain-timeout", "2s",
                     "--command", f"{{exe}} app -c {cfg} --listen {{host}}:{{port}}"
                     " --instance-id {id}", cwd=str(tmp_path), env=env)
    wait_port(port, proc=p, timeout=20)
    if not bad_shard:
        wait_until(lambda: json.loads(call(port, "/api/v1/scaling/status",
                                           token=token)[1])["ready"] == 2, 30, "two ready instances")
    return port


def counts(tmp_path, shard):
    db = sqlite3.connect(os.path.join(tmp_path, "data", f"{shard}.db"))
    out = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
           for t in ("users", "facilities", "surgeons", "cases")}
    db.close()
    return out


def test_statistics_health_rebalance_and_cli(procs, tmp_path):
    port = start_fleet(procs, tmp_path)
    want = counts(tmp_path, "s0")
    total = sum(want.values())
    assert want["users"] == 20 and want["cases"] == 400
    st, body = call(port, "/api/v1/scaling/shards/statistics")
    assert st == 200, body
    stats = json.loads(body)
    assert stats["instances"] == 2 and stats["strategy"] == "directory"
    s0, s1 = stats["shards"]
    assert s0["name"] == "s0" and s0["rows"] == want and s0["rows_total"] == total
    assert s1["rows_total"] == 0 and s0["size_bytes"] > 0
    assert s0["nodes"][0]["role"] == "primary" and s0["nodes"][0]["instances"] == 2
    st, body = call(port, "/api/v1/scaling/shards/health")
    health = json.loads(body)
    assert st == 200 and health["status"] == "healthy"
    assert [s["status"] for s in health["shards"]] == ["healthy", "healthy"]
    # every user is on s0 (directory, default s0): s0 is 100 % over, s1 100 % under
    st, body = call(port, "/api/v1/scaling/shards/rebalance-check")
    rc = json.loads(body)
    assert st == 200 and rc["balanced"] is False and rc["total_rows"] == total
    a, b = rc["shards"]
    assert (a["status"], b["status"]) == ("over", "under")
    assert a["expected_rows"] == round(total / 2) and abs(a["deviation"] - 1.0) < 1e-6
    assert abs(b["deviation"] + 1.0) < 1e-6
    sug = rc["suggestions"][0]
    assert sug["action"] == "move" and (sug["from"], sug["to"]) == ("s0", "s1")
    assert sug["rows"] == round(total / 2)
    env = {"HSCALE_CONTROL_URL": f"http://127.0.0.1:{port}"}
    r = run_hscale("shards", "check", env=env)
    assert r.returncode == 1 and "imbalanced" in r.stdout and "suggestion: move" in r.stdout, r.stdout
    r = run_hscale("shards", "status", env=env)
    assert r.returncode == 0, r.stderr
    assert "s0" in r.stdout and str(total) in r.stdout and "healthy" in r.stdout
    r = run_hscale("shards", "status", "--json", env=env)
    assert json.loads(r.stdout)["statistics"]["shards"][0]["rows_total"] == total
    r = run_hscale("shards", "nonsense", env=env)
    assert r.returncode == 2

    # move user 3 through the control plane; its events reach the history
    st, body = call(port, "/api/v1/scaling/shards/reshard", "POST",
                    {"op": "move", "user_id": 3, "shard": "s1"})
    assert st == 202, body
    wait_until(lambda: json.loads(call(port, "/api/v1/scaling/shards/reshard")[1])["state"] == "done",
               30, "move done")
    after = counts(tmp_path, "s1")
    assert after["users"] == 1 and after["cases"] > 0

    def history():
        evs = json.loads(call(port, "/api/v1/scaling/history?limit=50")[1])["events"]
        return [e for e in evs if e.get("kind") == "reshard"]
    evs = wait_until(lambda: [e for e in history() if e["phase"] == "done"] and history(), 10,
                     "reshard events in the history")
    whats = " | ".join(e["what"] for e in evs)
    assert "cutover" in whats and "cleanup" in whats
    done = [e for e in evs if e["phase"] == "done"][0]
    assert done["rows_moved"] == sum(after.values()) and done["pause_ms"] < 1000
    st, body = call(port, "/api/v1/scaling/shards/statistics")
    assert json.loads(body)["map_version"] == 2


def test_health_names_the_unreachable_primary(procs, tmp_path):
    # s1's primary cannot be opened: the instances never get ready, but
    # they answer /stats/shards, and the health says which node and why
    port = start_fleet(procs, tmp_path, bad_shard=True)
    h = wait_until(lambda: json.loads(call(port, "/api/v1/scaling/shards/health")[1])
                   if call(port, "/api/v1/scaling/shards/health")[0] == 200 else None,
                   30, "shard health")
    assert h["status"] == "down"
    s1 = h["shards"][1]
    assert s1["status"] == "down" and "primary sqlite:/proc/no/such/s1.db unreachable from" \
        in s1["reason"], s1
    assert h["shards"][0]["status"] == "healthy"


def test_reshard_needs_the_admin_token(procs, tmp_path):
    port = start_fleet(procs, tmp_path, token="t0ken-admin")
    st, _ = call(port, "/api/v1/scaling/shards/reshard", "POST", {"op": "move", "user_id": 3,
                                                                  "shard": "s1"})
    assert st == 401
    st, body = call(port, "/api/v1/scaling/shards/statistics", token="t0ken-admin")
    assert st == 200, body
    st, body = call(port, "/api/v1/scaling/shards/reshard", "POST",
                    {"op": "move", "user_id": 3, "shard": "nope"}, token="t0ken-admin")
    assert st == 400 and b"no shard named" in body
    # an instance's own /admin paths want the app token
    inst = json.loads(call(port, "/api/v1/scaling/status", token="t0ken-admin")[1])["instances"][0]
    iport = int(inst["address"].rsplit(":", 1)[1])
    assert call(iport, "/admin/reshard")[0] == 401
    assert call(iport, "/admin/reshard", token="app-t0ken-admin")[0] == 200
    st, body = call(port, "/api/v1/scaling/shards/reshard", "POST",
                    {"op": "move", "user_id": 3, "shard": "s1"}, token="t0ken-admin")
    assert st == 202, body
    wait_until(lambda: json.loads(call(port, "/api/v1/scaling/shards/reshard",
                                       token="t0ken-admin")[1])["state"] == "done", 30, "move done")
    assert counts(tmp_path, "s1")["users"] == 1
