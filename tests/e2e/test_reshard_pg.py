"""Online resharding on real PostgreSQL shards (databases of one cluster
with a streaming replica): 2 -> 3 shards under a steady mix of reads and
writes through three app instances, every acknowledged write on its owner
exactly once, no failed request, about a third of the users moved, the
new shard's rows in PostgreSQL, and an instance that missed the map
change refused by the old owner (SQLSTATE HSF01) and retrying on the new
one."""
import json

import pytest

from conftest import free_port, read_log, run_hscale, wait_port
from pg_fixture import PgCluster, have_pg
from reshard_util import Load, call, check_placement, wait_reshard
from up_util import wait_until


@pytest.fixture(scope="module")
def cluster():
    if not have_pg():
        pytest.skip("needs PostgreSQL 15 and root (to run it as the postgres user)")
    c = PgCluster(apply_delay="0s")
    try:
        c.setup()
        for db in ("rs0", "rs1", "rs2"):
            c.psql(f"CREATE DATABASE {db}")
        yield c
    finally:
        c.teardown()


def config(tmp_path, c, port, name, check="200ms"):
    p = tmp_path / name
    p.write_text(f"""\
app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    strategy: hash
    max_replica_lag: 1h
    replica_check: {check}
    reshard_batch: 20
    reshard_cleanup_delay: 1500ms
    cache:
      kind: none
    shards:
      - name: s0
        primary: {c.url("p", "rs0")}
        replicas: ["{c.url("r", "rs0")}"]
      - name: s1
        primary: {c.url("p", "rs1")}
""")
    return str(p)


def rows(c, dbs):
    out = {}
    for s, db in dbs.items():
        out[s] = {}
        for t, pk in (("users", "user_id"), ("facilities", "facility_id"),
                      ("surgeons", "surgeon_id"), ("cases", "case_id")):
            text = c.psql(f"SELECT {pk}, user_id FROM {t}", db=db)
            out[s][t] = [tuple(int(x) for x in line.split("|")) for line in text.splitlines() if line]
    return out


def test_reshard_pg_two_to_three_under_load(procs, tmp_path, cluster):
    c = cluster
    ports = [free_port() for _ in range(4)]
    # the last instance probes (and so polls the shard map) only every hour
    cfgs = [config(tmp_path, c, p, f"h{i}.yaml", "1h" if i == 3 else "200ms")
            for i, p in enumerate(ports)]
    r = run_hscale("app", "seed", "-c", cfgs[0], "--users", 60, "--cases", 1500, timeout=120)
    assert r.returncode == 0, r.stderr
    ps = []
    for i, (p, cfg) in enumerate(zip(ports, cfgs)):
        ps.append(procs.hscale("app", "-c", cfg, name=f"app{i}"))
        wait_port(p, proc=ps[-1])
    load = Load(ports[:3], users=60, threads=4)
    load.start()
    try:
        wait_until(lambda: len(load.acked) >= 30, 30, "writes before the move")
        st, body = call(ports[0], "/admin/reshard", "POST",
                        {"op": "add_shard", "name": "s2", "primary": c.url("p", "rs2")})
        assert st == 202, body
        status = wait_reshard(ports[0], timeout=120)
        for p in ports[:3]:
            wait_until(lambda p=p: json.loads(call(p, "/admin/shardmap")[1])["version"] == 2,
                       10, f"instance {p} on map v2")
        n0 = len(load.acked)
        wait_until(lambda: len(load.acked) >= n0 + 30, 30, "writes after the move")
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    after = rows(c, {"s0": "rs0", "s1": "rs1", "s2": "rs2"})
    owner = check_placement(after, load.acked)
    moved = sum(1 for s in owner.values() if s == "s2")
    assert 0.2 <= moved / len(owner) <= 0.47, (moved, len(owner))
    assert status["changes_applied"] > 0 and status["pause_ms"] < 1000
    assert c.psql("SELECT min_version FROM hscale_fence", db="rs0") == "2"

    # the stale instance (map polled hourly) writes for a moved user
    stale = ports[3]
    assert json.loads(call(stale, "/admin/shardmap")[1])["version"] == 1
    uid = next(u for u, s in owner.items() if s == "s2")
    st, body = call(stale, "/cases", "POST", {"user_id": uid, "patient_first": "S",
                                               "patient_last": "T", "case_date": "2026-12-07"})
    assert st == 201, body
    cid = json.loads(body)["case_id"]
    assert c.psql(f"SELECT user_id FROM cases WHERE case_id = {cid}", db="rs2") == str(uid)
    assert c.psql(f"SELECT COUNT(*) FROM cases WHERE case_id = {cid}", db="rs0") == "0"
    assert c.psql(f"SELECT COUNT(*) FROM cases WHERE case_id = {cid}", db="rs1") == "0"
    assert json.loads(call(stale, "/admin/shardmap")[1])["version"] == 2
    assert "shard map v2 adopted" in read_log(ps[3])
    # the old owner's log shows the refusal
    assert "hscale_fenced" in c.log("p")


def test_shard_endpoints_on_postgresql(procs, tmp_path, cluster):
    """The control plane's statistics count what PostgreSQL holds, show the
    replica with its lag, and the health names a stopped replica."""
    c = cluster
    for db in ("st0", "st1"):
        c.psql(f"CREATE DATABASE {db}")
    cfg = tmp_path / "app.yaml"
    cfg.write_text(f"""\
app:
  workers: 2
  store:
    max_replica_lag: 1h
    replica_check: 200ms
    cache:
      kind: none
    shards:
      - name: s0
        primary: {c.url("p", "st0")}
        replicas: ["{c.url("r", "st0")}"]
      - name: s1
        primary: {c.url("p", "st1")}
""")
    r = run_hscale("app", "seed", "-c", cfg, "--users", 30, "--cases", 300, timeout=120)
    assert r.returncode == 0, r.stderr
    port = free_port()
    p = procs.hscale("control", "--listen", f"127.0.0.1:{port}", "--instances", "2",
                     "--state-dir", str(tmp_path / "control"), "--drain-timeout", "2s",
                     "--command", f"{{exe}} app -c {cfg} --listen {{host}}:{{port}}"
                     " --instance-id {id}", cwd=str(tmp_path))
    wait_port(port, proc=p, timeout=20)
    wait_until(lambda: json.loads(call(port, "/api/v1/scaling/status")[1])["ready"] == 2, 30,
               "two ready instances")
    st, body = call(port, "/api/v1/scaling/shards/statistics")
    assert st == 200, body
    stats = json.loads(body)
    for s, db in zip(stats["shards"], ("st0", "st1")):
        for t in ("users", "facilities", "surgeons", "cases"):
            assert s["rows"][t] == int(c.psql(f"SELECT COUNT(*) FROM {t}", db=db)), (db, t)
        assert s["size_bytes"] == pytest.approx(
            int(c.psql("SELECT pg_database_size(current_database())", db=db)), rel=0.2)
    reps = [n for n in stats["shards"][0]["nodes"] if n["role"] == "replica"]
    assert len(reps) == 1 and reps[0]["healthy_on"] == 2
    assert isinstance(reps[0]["lag_seconds"], (int, float))
    h = json.loads(call(port, "/api/v1/scaling/shards/health")[1])
    assert h["status"] == "healthy", h
    c.stop("r")
    try:
        h = wait_until(lambda: (lambda j: j if j["status"] == "degraded" else None)(
            json.loads(call(port, "/api/v1/scaling/shards/health")[1])), 20, "degraded health")
        s0 = h["shards"][0]
        assert s0["status"] == "degraded" and "replica" in s0["reason"] and \
            "unreachable from" in s0["reason"], s0
        assert h["shards"][1]["status"] == "healthy"
    finally:
        c.start("r")
