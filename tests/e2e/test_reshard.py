"""Online resharding on SQLite shards: 2 -> 3 shards under a steady mix of
reads and writes through three app instances (every acknowledged write on
its owner exactly once, no failed request, about a third of the users
moved), an instance that missed the map change being refused by the old
owner and retrying on the new one, a rollback in the middle of the copy
leaving the old layout, and moving one directory entry."""
import json
import os
import sqlite3
import time

from conftest import free_port, read_log, run_hscale, wait_port
from reshard_util import Load, call, check_placement, wait_reshard
from up_util import wait_until


def config(tmp_path, port, extra="", strategy="hash", shards=("s0", "s1"), name="hscale.yaml"):
    p = tmp_path / name
    lines = "".join(f"      - name: {s}\n" for s in shards)
    p.write_text(f"""\
app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    data_dir: {tmp_path}/data
    strategy: {strategy}
    reshard_cleanup_delay: 1500ms
    cache:
      kind: none
{extra}    shards:
{lines}""")
    return str(p)


def rows(tmp_path, shards):
    out = {}
    for s in shards:
        path = os.path.join(tmp_path, "data", f"{s}.db")
        if not os.path.exists(path):
            continue
        db = sqlite3.connect(path)
        out[s] = {t: db.execute(f"SELECT {pk}, user_id FROM {t}").fetchall()
                  for t, pk in (("users", "user_id"), ("facilities", "facility_id"),
                                ("surgeons", "surgeon_id"), ("cases", "case_id"))}
        db.close()
    return out


def start(procs, tmp_path, n=3, extra="", strategy="hash", users=60, cases=1500, stale_extra=None):
    ports = [free_port() for _ in range(n)]
    cfgs = [config(tmp_path, ports[0], extra, strategy)]
    r = run_hscale("app", "seed", "-c", cfgs[0], "--users", users, "--cases", cases, timeout=60)
    assert r.returncode == 0, r.stderr
    ps = []
    for i, port in enumerate(ports):
        ex = stale_extra if (stale_extra is not None and i == n - 1) else extra
        cfg = config(tmp_path, port, ex, strategy, name=f"h{i}.yaml")
        ps.append(procs.hscale("app", "-c", cfg, name=f"app{i}"))
        wait_port(port, proc=ps[-1])
    return ports, ps


def test_reshard_two_to_three_under_load(procs, tmp_path):
    # small copy batches: the copy lasts long enough for the load to race it
    ports, _ = start(procs, tmp_path, extra="    reshard_batch: 10\n")
    before = rows(tmp_path, ("s0", "s1"))
    load = Load(ports, users=60, threads=4)
    load.start()
    try:
        wait_until(lambda: len(load.acked) >= 30, 20, "writes before the move")
        st, body = call(ports[0], "/admin/reshard", "POST", {"op": "add_shard", "name": "s2"})
        assert st == 202, body
        status = wait_reshard(ports[0], timeout=60)
        # every instance follows the new map (they poll it every replica_check)
        for p in ports:
            wait_until(lambda p=p: json.loads(call(p, "/admin/shardmap")[1])["version"] == 2,
                       10, f"instance {p} on map v2")
        n0 = len(load.acked)
        wait_until(lambda: len(load.acked) >= n0 + 30, 20, "writes after the move")
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    after = rows(tmp_path, ("s0", "s1", "s2"))
    owner = check_placement(after, load.acked)
    moved = sum(1 for s in owner.values() if s == "s2")
    assert 0.2 <= moved / len(owner) <= 0.47, (moved, len(owner))
    # users that did not move stayed where they were
    for s in ("s0", "s1"):
        for uid, _ in before[s]["users"]:
            assert owner[uid] in (s, "s2")
    assert status["users_moving"] == moved and status["published"]
    assert status["changes_applied"] > 0     # writes during the copy were caught up
    assert status["rows_moved"] >= status["users_moving"] and status["pause_ms"] < 1000
    whats = " | ".join(e["what"] for e in status["events"])
    assert "copy:" in whats and "cutover:" in whats and "cleanup:" in whats


def test_stale_instance_is_refused_and_retries_on_new_owner(procs, tmp_path):
    # the last instance probes (and so polls the map) only every hour
    ports, ps = start(procs, tmp_path, n=2, stale_extra="    replica_check: 1h\n")
    stale = ports[1]
    assert json.loads(call(stale, "/admin/shardmap")[1])["version"] == 1
    st, body = call(ports[0], "/admin/reshard", "POST", {"op": "add_shard", "name": "s2"})
    assert st == 202, body
    wait_reshard(ports[0])
    assert json.loads(call(stale, "/admin/shardmap")[1])["version"] == 1
    s2 = rows(tmp_path, ("s2",))["s2"]
    moved = [u for u, _ in s2["users"]]
    assert moved
    uid = moved[0]
    # an update of a moved row: on the old shard it is gone (cleaned up), so
    # it matches nothing there; the stale map is noticed all the same
    old_case = next(c for c, u in s2["cases"] if u == uid)
    st, body = call(stale, f"/cases/{old_case}?user_id={uid}", "PUT", {"patient_last": "Moved"})
    assert st == 200, body
    assert json.loads(call(stale, "/admin/shardmap")[1])["version"] == 2
    st, body = call(stale, "/cases", "POST", {"user_id": uid, "patient_first": "S",
                                               "patient_last": "T", "case_date": "2026-12-07"})
    assert st == 201, body
    cid = json.loads(body)["case_id"]
    after = rows(tmp_path, ("s0", "s1", "s2"))
    assert [s for s in after if (cid, uid) in after[s]["cases"]] == ["s2"]
    assert "shard map v2 adopted" in read_log(ps[1])


def test_rollback_mid_copy_keeps_old_layout(procs, tmp_path):
    ports, _ = start(procs, tmp_path, n=1, extra="    reshard_batch: 3\n", cases=1500)
    before = rows(tmp_path, ("s0", "s1"))
    st, body = call(ports[0], "/admin/reshard", "POST", {"op": "add_shard", "name": "s2"})
    assert st == 202, body
    wait_until(lambda: json.loads(call(ports[0], "/admin/reshard")[1])["rows_copied"] > 0, 20,
               "copy under way")
    st, body = call(ports[0], "/admin/reshard/rollback", "POST", {})
    assert st == 200, body
    # asked mid-copy: the answer shows the copy, or the rollback the
    # coordinator already began (it runs on its own thread)
    assert json.loads(body)["state"] in ("copy", "rolling_back"), body
    status = wait_reshard(ports[0], states=("rolled_back",))
    assert not status["published"]
    assert json.loads(call(ports[0], "/admin/shardmap")[1])["version"] == 1
    after = rows(tmp_path, ("s0", "s1", "s2"))
    for s in ("s0", "s1"):
        for t in before[s]:
            assert sorted(after[s][t]) == sorted(before[s][t]), (s, t)
    assert all(not v for v in after.get("s2", {}).values())
    db = sqlite3.connect(os.path.join(tmp_path, "data", "s0.db"))
    assert db.execute("SELECT capture, freeze_version FROM hscale_fence").fetchone() == (0, 0)
    assert db.execute("SELECT COUNT(*) FROM hscale_moving").fetchone() == (0,)
    # writes go on in the old layout
    st, body = call(ports[0], "/cases", "POST", {"user_id": 5, "patient_first": "A",
                                                 "patient_last": "B", "case_date": "2026-12-07"})
    assert st == 201, body


def test_move_one_directory_entry(procs, tmp_path):
    ports, _ = start(procs, tmp_path, n=1, strategy="directory", users=10, cases=200)
    assert [u for u, _ in rows(tmp_path, ("s0",))["s0"]["users"]]
    st, body = call(ports[0], "/admin/reshard", "POST", {"op": "move", "user_id": 4,
                                                         "shard": "s1"})
    assert st == 202, body
    status = wait_reshard(ports[0])
    assert status["users_moving"] == 1
    after = rows(tmp_path, ("s0", "s1"))
    owner = check_placement(after, {})
    assert owner[4] == "s1"
    st, body = call(ports[0], "/casefilter?user_id=4&limit=500")
    assert st == 200 and len(json.loads(body)["cases"]) == status["rows_moved"] - 1 - \
        sum(1 for t in ("facilities", "surgeons") for _, u in after["s1"][t] if u == 4)
    # a bad request names the field
    st, body = call(ports[0], "/admin/reshard", "POST", {"op": "move", "user_id": 4, "shard": "zz"})
    assert st == 400 and b"no shard named" in body
