"""`hscale app -c hscale.yaml`: the `app:` section (listen, workers, the
embedded store with shards and cache), environment overrides, errors that
name file:line and key, and two SQLite shards where every user's rows stay
on the user's shard while GET /users merges both."""
import json
import os
import sqlite3

from conftest import free_port, run_hscale, wait_port
from test_app import get


def write(tmp_path, text):
    p = tmp_path / "hscale.yaml"
    p.write_text(text)
    return str(p)


def two_shards(tmp_path, port):
    return write(tmp_path, f"""\
app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    data_dir: {tmp_path}/data
    shards:
      - name: a
      - name: b
    cache:
      kind: local
""")


def test_check_prints_resolved_config_with_env_override(tmp_path):
    cfg = two_shards(tmp_path, 18001)
    r = run_hscale("app", "-c", cfg, "--check", env={"HSCALE_APP_WORKERS": "3"})
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["listen"] == "127.0.0.1:18001" and c["workers"] == 3
    assert [s["name"] for s in c["store"]["shards"]] == ["a", "b"]
    # Flags win over the environment.
    r = run_hscale("app", "-c", cfg, "--check", "--workers", "1", env={"HSCALE_APP_WORKERS": "3"})
    assert json.loads(r.stdout)["workers"] == 1


def test_errors_name_file_line_and_key(tmp_path):
    cfg = write(tmp_path, "app:\n  listen: 127.0.0.1:1\n  workers: many\n")
    r = run_hscale("app", "-c", cfg, "--check")
    assert r.returncode == 2
    assert "hscale.yaml:3" in r.stderr and "app.workers" in r.stderr, r.stderr
    cfg = write(tmp_path, "app:\n  store:\n    cache:\n      kind: redis\n")
    r = run_hscale("app", "-c", cfg, "--check")
    assert r.returncode == 2 and "app.store.cache.redis" in r.stderr, r.stderr
    cfg = write(tmp_path, "app:\n  store:\n    sharsd: []\n")
    r = run_hscale("app", "-c", cfg, "--check")
    assert r.returncode == 2 and "sharsd" in r.stderr, r.stderr
    r = run_hscale("app", "-c", cfg, "--check", env={"HSCALE_APP_LISTEN": "nowhere"})
    assert r.returncode == 2


def test_two_sqlite_shards_keep_users_apart(procs, tmp_path):
    port = free_port()
    cfg = two_shards(tmp_path, port)
    r = run_hscale("app", "seed", "-c", cfg, "--users", "30", "--cases", "600", timeout=60)
    assert r.returncode == 0, r.stderr
    p = procs.hscale("app", "-c", cfg)
    wait_port(port, proc=p)
    # A write through the API lands on the same shard as the seeded rows.
    st, body = get(port, "/cases", "POST", json.dumps(
        {"user_id": 11, "patient_first": "A", "patient_last": "B", "case_date": "2026-01-01"}).encode())
    assert st == 201, body
    owner = {}
    for shard in ("a", "b"):
        db = sqlite3.connect(os.path.join(tmp_path, "data", f"{shard}.db"))
        for table in ("users", "facilities", "surgeons", "cases"):
            for (uid,) in db.execute(f"SELECT DISTINCT user_id FROM {table}"):
                assert owner.setdefault(uid, shard) == shard, f"user {uid} on two shards"
        db.close()
    assert set(owner) == set(range(1, 31))
    assert 5 <= sum(1 for s in owner.values() if s == "a") <= 25     # both shards used
    st, body = get(port, "/users?limit=500")
    assert st == 200
    ids = [u["user_id"] for u in json.loads(body)["users"]]
    assert ids == list(range(1, 31))
    st, body = get(port, "/casefilter?user_id=11&limit=500")
    assert st == 200 and len(json.loads(body)["cases"]) == 21
