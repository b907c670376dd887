"""Replica sets that change while `hscale app` serves, on a real PostgreSQL
primary with two streaming replicas (the second made by pg_basebackup -R
like the first).

The app starts with replica r; a SIGHUP after the file lists r and r2
sends reads to r2 too; one that lists only r2 stops r's reads and closes
every connection the app had on r (pg_stat_activity, application_name
hscale); PUT /admin/replicas/s0 does the same at run time, behind the
guard (a non-JSON body is refused and changes nothing). Which server ran a
read is read from the servers' statement logs (log_statement=all)."""
import json
import os
import signal
import urllib.error
import urllib.request

import pytest

from conftest import free_port, run_hscale, wait_port
from pg_fixture import PGBIN, PgCluster, have_pg, wait_until

READ = "FROM cases WHERE user_id"


@pytest.fixture(scope="module")
def pg3():
    if not have_pg():
        pytest.skip("needs PostgreSQL 15 and root (to run it as the postgres user)")
    c = PgCluster(apply_delay="0")
    try:
        c.setup()
        c.port["r2"] = free_port()
        c._pg(f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(c.port["p"]),
              "-U", "postgres", "-D", f"{c.dir}/r2", "-R", "-X", "stream")
        c.start("r2")
        yield c
    finally:
        c.stop("r2")
        c.teardown()


def call(port, path, method="GET", obj=None, ctype="application/json"):
    data = json.dumps(obj).encode() if obj is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def write_config(path, port, pg, replicas):
    reps = ", ".join(f'"{pg.url(n)}"' for n in replicas)
    path.write_text(f"""\
app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    shards:
      - name: s0
        primary: {pg.url('p')}
        replicas: [{reps}]
    max_replica_lag: 1h
    read_your_writes: 0s
    replica_check: 200ms
    pool:
      size: 4
    cache:
      kind: none
""")


def reads(port, n=20):
    for i in range(n):
        st, page = call(port, f"/casefilter?user_id={i % 10 + 1}&limit=5")
        assert st == 200, page


def app_conns(pg, node):
    out = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hscale'",
                  node=node, check=False)
    return int(out) if out is not None else -1


def lag_series(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sorted(line.split('replica="')[1].split('"')[0] for line in text.splitlines()
                  if line.startswith("hscale_db_replica_lag_seconds{"))


def served(pg, node):
    return pg.log(node).count(READ)


def test_replicas_added_and_removed_by_reload_and_api(pg3, procs, tmp_path):
    pg = pg3
    port = free_port()
    cfg = tmp_path / "app.yaml"
    write_config(cfg, port, pg, ["r"])
    r = run_hscale("app", "seed", "-c", cfg, "--users", "10", "--cases", "100", timeout=120)
    assert r.returncode == 0, r.stderr
    for node in ("r", "r2"):
        assert wait_until(lambda: pg.psql("SELECT count(*) FROM cases", node=node,
                                          check=False) == "100", 20)
    app = procs.hscale("app", "-c", str(cfg))
    wait_port(port, proc=app, timeout=30)
    assert wait_until(lambda: call(port, "/admin/replicas")[1]["shards"][0]["replicas"][0]
                      ["healthy"], 10)
    r0, r2_0 = served(pg, "r"), served(pg, "r2")
    reads(port)
    assert served(pg, "r") > r0 and served(pg, "r2") == r2_0

    # Reload with a second replica: it gets reads.
    write_config(cfg, port, pg, ["r", "r2"])
    os.kill(app.pid, signal.SIGHUP)
    assert wait_until(lambda: len(call(port, "/admin/replicas")[1]["shards"][0]["replicas"]) == 2,
                      10)

    def r2_reads():
        reads(port, 10)
        return served(pg, "r2") > r2_0
    assert wait_until(r2_reads, 15)
    assert app_conns(pg, "r") > 0
    assert lag_series(port) == ["replica0", "replica1"]     # metrics follow the set

    # Reload without the first: no more reads there, its connections close.
    write_config(cfg, port, pg, ["r2"])
    os.kill(app.pid, signal.SIGHUP)
    assert wait_until(lambda: [x["url"] for x in call(port, "/admin/replicas")[1]["shards"][0]
                               ["replicas"]] == [pg.url("r2")], 10)
    assert wait_until(lambda: app_conns(pg, "r") == 0, 10), app_conns(pg, "r")
    before_r, before_r2 = served(pg, "r"), served(pg, "r2")
    reads(port, 30)
    assert served(pg, "r") == before_r
    assert served(pg, "r2") >= before_r2 + 30
    assert app_conns(pg, "r") == 0
    assert lag_series(port) == ["replica0"]

    # The admin API: a cross-site style body is refused and changes nothing ...
    st, _ = call(port, "/admin/replicas/s0", "PUT", {"replicas": [pg.url("r")]},
                 ctype="text/plain")
    assert st == 415
    st, _ = call(port, "/admin/replicas/nope", "PUT", {"replicas": []})
    assert st == 404
    st, _ = call(port, "/admin/replicas/s0", "PUT", {"replicas": ["mysql://x"]})
    assert st == 400
    assert [x["url"] for x in call(port, "/admin/replicas")[1]["shards"][0]["replicas"]] == \
        [pg.url("r2")]
    # ... a JSON one swaps r2 for r at once.
    st, doc = call(port, "/admin/replicas/s0", "PUT", {"replicas": [pg.url("r")]})
    assert st == 200, doc
    assert [x["url"] for x in doc["shards"][0]["replicas"]] == [pg.url("r")]
    assert doc["shards"][0]["replicas"][0]["healthy"] is True   # probed before published
    before_r = served(pg, "r")
    reads(port, 10)
    assert served(pg, "r") > before_r
    assert wait_until(lambda: app_conns(pg, "r2") == 0, 10)
    # A reload with a file that does not load changes nothing.
    cfg.write_text("app:\n  store:\n    shards: [nope\n")
    os.kill(app.pid, signal.SIGHUP)
    reads(port, 5)
    assert [x["url"] for x in call(port, "/admin/replicas")[1]["shards"][0]["replicas"]] == \
        [pg.url("r")]
    assert app.poll() is None


def test_admin_api_needs_the_token_when_one_is_set(pg3, procs, tmp_path):
    pg = pg3
    port = free_port()
    cfg = tmp_path / "app.yaml"
    write_config(cfg, port, pg, ["r"])
    app = procs.hscale("app", "-c", str(cfg), env={"HSCALE_APP_ADMIN_TOKEN": "s3cret-token"})
    wait_port(port, proc=app, timeout=30)
    assert call(port, "/admin/replicas")[0] == 401
    st, _ = call(port, "/admin/replicas/s0", "PUT", {"replicas": []})
    assert st == 401
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/replicas",
                                 headers={"Authorization": "Bearer s3cret-token"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["shards"][0]["name"] == "s0"
