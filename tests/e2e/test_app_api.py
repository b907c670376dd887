"""`hscale app` write and list endpoints over SQLite: PUT /cases/{id},
GET/POST /users (merged across shards with a cursor), POST /facilities and
/surgeons, and the validation contract: every 400 names the field (wrong
type, missing, unknown, too long, bad UTF-8), unknown ids are 404, oversize
bodies are refused before the handler runs."""
import json

import pytest

from conftest import free_port, run_hscale, wait_port
from test_app import get

CASE = {"user_id": 5, "patient_first": "Ada", "patient_last": "Lovelace",
        "case_date": "2026-11-01", "case_status": 1}


def post(port, path, obj, method="POST"):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    st, raw = get(port, path, method, body)
    return st, (json.loads(raw) if raw else None)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conftest import Procs
    tmp = tmp_path_factory.mktemp("api")
    db = f"sqlite:{tmp}/s0.db"
    r = run_hscale("app", "seed", "--users", "20", "--cases", "400", "--db", db, timeout=60)
    assert r.returncode == 0, r.stderr
    ps = Procs(tmp)
    try:
        port = free_port()
        p = ps.hscale("app", "--listen", f"127.0.0.1:{port}", "--db", db, "--workers", "2")
        wait_port(port, proc=p)
        yield port
    finally:
        ps.stop_all()


def test_put_case_updates_fields_and_reads_see_it(api):
    st, c = post(api, "/cases", CASE)
    assert st == 201, c
    cid = c["case_id"]
    # Warm the cached reads, then check the update retires them.
    assert get(api, f"/cases/{cid}?user_id=5")[0] == 200
    get(api, "/casefilter?user_id=5&status=7&limit=500")
    st, u = post(api, f"/cases/{cid}?user_id=5", {"case_status": 7, "patient_last": "Byron"}, "PUT")
    assert st == 200, u
    assert u["case_status"] == 7 and u["patient_last"] == "Byron" and u["patient_first"] == "Ada"
    st, body = get(api, f"/cases/{cid}?user_id=5")
    assert st == 200 and json.loads(body)["patient_last"] == "Byron"
    st, body = get(api, "/casefilter?user_id=5&status=7&limit=500")
    assert cid in [x["case_id"] for x in json.loads(body)["cases"]]


@pytest.mark.parametrize("body,field", [
    ({"case_status": "x"}, "case_status"),
    ({"bogus": 1}, "bogus"),
    ({"patient_last": None}, "patient_last"),
    ({"patient_first": "x" * 201}, "patient_first"),
    ({"user_id": 6}, "user_id"),
    ({"facility_id": 987654321}, "facility_id"),
])
def test_put_case_rejects_naming_the_field(api, body, field):
    st, c = post(api, "/cases", CASE)
    cid = c["case_id"]
    st, e = post(api, f"/cases/{cid}?user_id=5", body, "PUT")
    assert st == 400 and e["field"] == field, e
    st, body = get(api, f"/cases/{cid}?user_id=5")
    assert json.loads(body)["patient_last"] == "Lovelace"   # nothing half-applied


def test_put_case_unknown_and_bad_ids(api):
    assert post(api, "/cases/999999999?user_id=5", {"case_status": 1}, "PUT")[0] == 404
    st, e = post(api, "/cases/abc?user_id=5", {"case_status": 1}, "PUT")
    assert st == 400 and e["field"] == "id"
    st, e = post(api, "/cases/1", {"case_status": 1}, "PUT")
    assert st == 400 and e["field"] == "user_id"
    st, e = post(api, "/cases/1?user_id=5", {}, "PUT")
    assert st == 400


def test_case_for_unknown_user_is_404_naming_user_id(api):
    st, e = post(api, "/cases", dict(CASE, user_id=424242))
    assert st == 404 and e["field"] == "user_id", e


def test_bad_utf8_names_the_field(api):
    raw = b'{"user_id": 5, "patient_first": "A\xff\xfeda", "patient_last": "L", "case_date": "2026-01-01"}'
    st, e = post(api, "/cases", raw)
    assert st == 400 and e["field"] == "patient_first", e


def test_not_json_and_not_object(api):
    assert post(api, "/cases", b"{nope")[0] == 400
    assert post(api, "/cases", b"[1,2]")[0] == 400


def test_oversize_body_is_refused(api):
    st, _ = get(api, "/cases", "POST", b'{"patient_first":"' + b"x" * (2 << 20) + b'"}')
    assert st == 413


def test_users_create_get_and_conflicts(api):
    u = {"user_id": 5000, "npi_number": "1234567890", "first_name": "Grace",
         "last_name": "Hopper", "email": "grace@example.org"}
    st, r = post(api, "/users", u)
    assert st == 201 and r["user_id"] == 5000, r
    st, body = get(api, "/users/5000")
    assert st == 200 and json.loads(body)["last_name"] == "Hopper"
    assert post(api, "/users", u)[0] == 409
    st, e = post(api, "/users", dict(u, user_id=5001, npi_number="12ab"))
    assert st == 400 and e["field"] == "npi_number"
    st, e = post(api, "/users", {k: v for k, v in u.items() if k != "email"})
    assert st == 400 and e["field"] == "email"
    st, e = post(api, "/users", dict(u, first_name=3))
    assert st == 400 and e["field"] == "first_name"
    # Without user_id the app assigns one.
    st, r = post(api, "/users", dict(u, npi_number="2234567890", user_id=None))
    assert st == 201 and r["user_id"] > 0
    assert get(api, "/users/777777")[0] == 404


def test_users_list_pages_with_cursor(api):
    ids, cursor = [], None
    for _ in range(100):
        st, body = get(api, "/users?limit=7" + (f"&cursor={cursor}" if cursor else ""))
        assert st == 200, body
        page = json.loads(body)
        assert page["count"] == len(page["users"]) <= 7
        ids += [u["user_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(range(1, 21)) <= set(ids)
    st, body = get(api, "/users?limit=0")
    assert st == 400 and json.loads(body)["field"] == "limit"


def test_facilities_and_surgeons(api):
    st, f = post(api, "/facilities?user_id=4", {"facility_name": "North Clinic"})
    assert st == 201 and f["user_id"] == 4, f
    st, body = get(api, "/facilities?user_id=4")
    assert f["facility_id"] in [x["facility_id"] for x in json.loads(body)]
    st, s = post(api, "/surgeons?user_id=4", {"first_name": "Ben", "last_name": "Carson",
                                               "specialty": "neurosurgery"})
    assert st == 201, s
    st, body = get(api, "/surgeons?user_id=4")
    assert s["surgeon_id"] in [x["surgeon_id"] for x in json.loads(body)]
    # The new facility and surgeon can be referenced by a case of user 4.
    st, c = post(api, "/cases", dict(CASE, user_id=4, facility_id=f["facility_id"],
                                     surgeon_id=s["surgeon_id"]))
    assert st == 201, c
    st, e = post(api, "/facilities?user_id=424242", {"facility_name": "X"})
    assert st == 404 and e["field"] == "user_id"
    st, e = post(api, "/facilities?user_id=4", {"facility_name": 5})
    assert st == 400 and e["field"] == "facility_name"
    st, e = post(api, "/surgeons?user_id=4", {"first_name": "A"})
    assert st == 400 and e["field"] == "last_name"
    st, e = post(api, "/surgeons", {"first_name": "A", "last_name": "B"})
    assert st == 400 and e["field"] == "user_id"


def metric(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_show_pool_cache_and_build(api):
    before = metric(get(api, "/metrics")[1].decode(), "hscale_cache_requests_total", result="hit") or 0
    for _ in range(3):
        assert get(api, "/casefilter?user_id=9&status=2")[0] == 200
    text = get(api, "/metrics")[1].decode()
    assert metric(text, "hscale_cache_requests_total", result="hit") >= before + 2
    assert metric(text, "hscale_db_pool_connections", shard="s0", role="primary", state="max") == 30
    assert metric(text, "hscale_db_pool_connections", shard="s0", role="primary", state="idle") >= 1
    assert metric(text, "hscale_build_info", component="app") == 1
    assert metric(text, "process_resident_memory_bytes") > 0
    assert metric(text, "hscale_http_requests_total", route="/casefilter", code="200") >= 3



def test_shard_stats_for_the_control_plane(api):
    st, body = get(api, "/stats/shards")
    assert st == 200, body
    shards = json.loads(body)["shards"]
    assert len(shards) >= 1
    st, body = get(api, "/stats/shards?full=true")
    full = json.loads(body)["shards"][0]
    assert "cases" in json.dumps(full)          # row counts per table
    st, body = get(api, "/stats/shards?full=maybe")
    assert st == 400 and json.loads(body)["field"] == "full"
