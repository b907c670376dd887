"""`hscale app` on a real PostgreSQL primary with a streaming replica, and
on two PostgreSQL shards sharing a Redis cache between two app instances.

The replica applies WAL two seconds late (pg_fixture), so a read that
comes from it misses a fresh write: instance B (read_your_writes off) shows
that reads go to the replica, instance A (read_your_writes on) shows its
own write at once. Then the replica is stopped (reads fall back to the
primary with no error) and the primary is stopped (writes answer 503 with
Retry-After, reads keep working from the replica). Tests run in file order
on one cluster; the destructive ones come last."""
import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port, run_hscale, wait_port
from pg_fixture import pg, redis_addr, wait_until  # noqa: F401 (fixtures)

CASE = {"patient_first": "Ada", "patient_last": "Lovelace", "case_date": "2026-11-01"}


def call(port, path, method="GET", obj=None):
    data = json.dumps(obj).encode() if obj is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, (json.loads(body) if body else None), dict(r.headers)
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = body
        return e.code, doc, dict(e.headers)


def metric(port, name, **labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def config(tmp_path, name, port, shards, ryw="5s", cache="kind: none"):
    text = f"""\
app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    shards:
{shards}
    max_replica_lag: 1h
    read_your_writes: {ryw}
    replica_check: 200ms
    pool:
      size: 4
      acquire_timeout: 2s
    cache:
      {cache}
"""
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return str(p)


@pytest.fixture(scope="module")
def pair(pg, tmp_path_factory):  # noqa: F811
    """Instances A (read-your-writes 5 s) and B (off) on primary + replica."""
    from conftest import Procs
    tmp = tmp_path_factory.mktemp("pgapp")
    shards = (f"      - name: s0\n        primary: {pg.url('p')}\n"
              f"        replicas: [\"{pg.url('r')}\"]")
    pa, pb = free_port(), free_port()
    ca = config(tmp, "a", pa, shards, ryw="5s")
    cb = config(tmp, "b", pb, shards, ryw="0s")
    r = run_hscale("app", "seed", "-c", ca, "--users", "20", "--cases", "400", timeout=120)
    assert r.returncode == 0, r.stderr
    ps = Procs(tmp)
    try:    # stop the instances even when the setup below fails
        for port, cfg in ((pa, ca), (pb, cb)):
            wait_port(port, proc=ps.hscale("app", "-c", cfg), timeout=30)
        # The seed must have reached the (delayed) replica before reads start.
        assert wait_until(lambda: pg.psql("SELECT count(*) FROM cases", node="r",
                                          check=False) == "400", 20)
        yield pa, pb
    finally:
        ps.stop_all()


def test_writes_on_primary_reads_on_replica_and_read_your_writes(pg, pair):  # noqa: F811
    a, b = pair
    st, c, _ = call(a, "/cases", "POST", dict(CASE, user_id=5))
    assert st == 201, c
    cid = c["case_id"]
    # A reads its own write at once (primary, read-your-writes) ...
    assert call(a, f"/cases/{cid}?user_id=5")[0] == 200
    # ... B, reading from the replica that is 2 s behind, does not yet ...
    assert call(b, f"/cases/{cid}?user_id=5")[0] == 404
    # ... and does once the replica has applied it.
    assert wait_until(lambda: call(b, f"/cases/{cid}?user_id=5")[0] == 200, 15)
    plog, rlog = pg.log("p"), pg.log("r")
    assert "INSERT INTO cases" in plog
    assert "INSERT INTO cases" not in rlog
    assert "FROM cases WHERE case_id" in rlog
    st, page, _ = call(b, "/casefilter?user_id=7&limit=500")
    assert st == 200 and page["count"] == 20


def test_two_pg_shards_share_a_redis_cache(pg, redis_addr, tmp_path, procs):  # noqa: F811
    for db in ("shard_a", "shard_b"):
        pg.psql(f"CREATE DATABASE {db}")
    # Shard a also has the (2 s behind) replica: a cache fill right after a
    # write must not cache its old rows.
    shards = (f"      - name: a\n        primary: {pg.url('p', 'shard_a')}\n"
              f"        replicas: [\"{pg.url('r', 'shard_a')}\"]\n"
              f"      - name: b\n        primary: {pg.url('p', 'shard_b')}")
    cache = f"kind: redis\n      redis: {redis_addr}\n      redis_timeout: 500ms"
    pc, pd = free_port(), free_port()
    cc = config(tmp_path, "c", pc, shards, cache=cache)
    cd = config(tmp_path, "d", pd, shards, cache=cache)
    r = run_hscale("app", "seed", "-c", cc, "--users", "30", "--cases", "300", timeout=120)
    assert r.returncode == 0, r.stderr
    seeded = pg.psql("SELECT count(*) FROM cases", db="shard_a")
    assert wait_until(lambda: pg.psql("SELECT count(*) FROM cases", db="shard_a", node="r",
                                      check=False) == seeded, 20)
    for port, cfg in ((pc, cc), (pd, cd)):
        wait_port(port, proc=procs.hscale("app", "-c", cfg), timeout=30)
    # Every user's rows live on exactly one shard; both shards have users.
    owner = {}
    for db in ("shard_a", "shard_b"):
        for table in ("users", "facilities", "surgeons", "cases"):
            out = pg.psql(f"SELECT DISTINCT user_id FROM {table}", db=db)
            for uid in map(int, filter(None, out.split())):
                assert owner.setdefault(uid, db) == db, f"user {uid} on two shards"
    assert set(owner) == set(range(1, 31)) and len(set(owner.values())) == 2
    st, page, _ = call(pd, "/users?limit=500")
    assert st == 200 and [u["user_id"] for u in page["users"]] == list(range(1, 31))

    # A page C loaded is a hit on D: the cache is shared.
    hits = metric(pd, "hscale_cache_requests_total", result="hit")
    assert call(pc, "/casefilter?user_id=8&status=3")[0] == 200
    assert call(pd, "/casefilter?user_id=8&status=3")[0] == 200
    assert metric(pd, "hscale_cache_requests_total", result="hit") >= hits + 1

    # D caches a case; an update through C is what D serves next.
    st, c, _ = call(pc, "/cases", "POST", dict(CASE, user_id=7))
    assert st == 201, c
    cid = c["case_id"]
    assert call(pd, f"/cases/{cid}?user_id=7")[1]["patient_last"] == "Lovelace"
    assert call(pd, f"/cases/{cid}?user_id=7")[1]["patient_last"] == "Lovelace"   # cached
    st, u, _ = call(pc, f"/cases/{cid}?user_id=7", "PUT", {"patient_last": "Byron"})
    assert st == 200, u
    assert call(pd, f"/cases/{cid}?user_id=7")[1]["patient_last"] == "Byron"
    st, page, _ = call(pd, "/casefilter?user_id=7&limit=500")
    assert any(x["case_id"] == cid and x["patient_last"] == "Byron" for x in page["cases"])

    # A user of the replicated shard: D's first read after C's write fills
    # the shared cache from the primary, not from the lagging replica.
    ua = min(u for u, db in owner.items() if db == "shard_a")
    st, c, _ = call(pc, "/cases", "POST", dict(CASE, user_id=ua))
    assert st == 201, c
    st, got, _ = call(pd, f"/cases/{c['case_id']}?user_id={ua}")
    assert st == 200, got
    st, page, _ = call(pd, f"/casefilter?user_id={ua}&limit=500")
    assert c["case_id"] in [x["case_id"] for x in page["cases"]]


def test_stopped_replica_sends_reads_to_primary(pg, pair):  # noqa: F811
    _, b = pair
    pg.stop("r")
    try:
        for i in range(40):
            st, page, _ = call(b, f"/casefilter?user_id={i % 20 + 1}&limit=5")
            assert st == 200, page
    finally:
        pg.start("r")
    # Wait until B reads from the replica again (its connections reopen).
    assert wait_until(lambda: metric(b, "hscale_db_replica_lag_seconds",
                                     replica="replica0") == 0, 15)


def test_stopped_primary_fails_writes_with_503_and_reads_continue(pg, pair):  # noqa: F811
    a, b = pair
    pg.stop("p")
    time.sleep(0.5)
    st, e, headers = call(a, "/cases", "POST", dict(CASE, user_id=12))
    assert st == 503 and headers.get("Retry-After"), e
    st, e, headers = call(a, "/facilities?user_id=12", "POST", {"facility_name": "X"})
    assert st == 503 and headers.get("Retry-After"), e
    for i in range(20):
        st, page, _ = call(b, f"/casefilter?user_id={i % 20 + 1}&limit=5")
        assert st == 200, page
    st, page, _ = call(a, "/casefilter?user_id=13&limit=5")     # A has no recent write for 13
    assert st == 200, page
    assert call(a, "/health/ready")[0] == 503
