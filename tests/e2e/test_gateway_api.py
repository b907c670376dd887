"""The gateway's runtime API and metrics, driven over HTTP against a running
`hscale gateway` with real backends."""
import shutil
import subprocess

from conftest import run_hscale
from gw_util import Backend, Gateway, http as requests, write_yaml


def test_register_patch_and_remove_backends(procs, tmp_path):
    a, b = Backend(procs, "a"), Backend(procs, "b")
    # round_robin by name: the weights below are checked as exact shares
    gw = Gateway(procs, config=write_yaml(tmp_path, f"""
gateway:
  pools: [{{name: default, algorithm: round_robin, backends: [{{address: "{a.addr}"}}]}}]
  routes: [{{prefix: /, pool: default}}]
"""))
    api = gw.admin_url("/api/v1/pools/default")
    r = requests.post(api + "/backends", json={"address": b.addr, "weight": 3})
    assert r.status_code == 201, r.text
    assert r.json()["address"] == b.addr and r.json()["weight"] == 3
    s = requests.Session()
    seen = [s.get(gw.url("/")).headers["X-Backend"] for _ in range(40)]
    assert seen.count("b") == 30 and seen.count("a") == 10
    assert requests.post(api + "/backends", json={"address": b.addr}).status_code == 409
    # Maintenance: no new requests; back to ready: traffic again.
    r = requests.patch(f"{api}/backends/{b.addr}", json={"state": "maint"})
    assert r.status_code == 200 and r.json()["state"] == "maint"
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a"}
    requests.patch(f"{api}/backends/{b.addr}", json={"state": "ready", "weight": 1})
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a", "b"}
    r = requests.delete(f"{api}/backends/{b.addr}")
    assert r.status_code == 200 and r.json()["state"] == "removed"
    members = requests.get(api).json()["members"]
    assert [m["address"] for m in members] == [a.addr]
    assert set(members[0]) >= {"id", "address", "weight", "state", "healthy", "in_flight", "total"}


def test_bad_requests_name_the_field_and_change_nothing(procs):
    a = Backend(procs, "a")
    gw = Gateway(procs, [a])
    api = gw.admin_url("/api/v1/pools/default/backends")
    cases = [
        ({"address": "nope"}, 400, "address"),
        ({"address": "127.0.0.1:9", "weight": 0}, 400, "weight"),
        ({"address": "127.0.0.1:9", "weight": "x"}, 400, "weight"),
        ({"weight": 1}, 400, "address"),
    ]
    for body, status, field in cases:
        r = requests.post(api, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["field"] == field, r.text
    r = requests.post(api, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    assert requests.post(gw.admin_url("/api/v1/pools/ghost/backends"),
                         json={"address": "127.0.0.1:9"}).status_code == 404
    assert requests.delete(api + "/127.0.0.1:9").status_code == 404
    r = requests.delete(api + f"/{a.addr}?drain=soon")
    assert r.status_code == 400 and r.json()["field"] == "drain"
    members = requests.get(gw.admin_url("/api/v1/pools/default")).json()["members"]
    assert [m["address"] for m in members] == [a.addr]


def test_token_guards_the_api(procs):
    a = Backend(procs, "a")
    gw = Gateway(procs, [a], env={"HSCALE_GATEWAY_ADMIN_TOKEN": "s3cret"})
    r = requests.get(gw.admin_url("/api/v1/pools"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(gw.admin_url("/api/v1/pools"),
                        headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = requests.get(gw.admin_url("/api/v1/pools"), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["pools"][0]["name"] == "default"
    assert requests.get(gw.admin_url("/health")).status_code == 200


def test_admin_beyond_loopback_needs_a_token(procs):
    r = run_hscale("gateway", "--backend", "127.0.0.1:9", "--admin", "0.0.0.0:0", timeout=10)
    assert r.returncode != 0 and "admin_token" in r.stderr, r.stderr


def test_metrics_count_requests_and_pass_promtool(procs, tmp_path):
    a = Backend(procs, "a")
    gw = Gateway(procs, [a])
    for path in ("/", "/status/503", "/status/404"):
        requests.get(gw.url(path))
    text = requests.get(gw.admin_url("/metrics")).text
    assert 'hscale_gateway_requests_total{route="/",pool="default",code="2xx"} 1' in text
    assert 'hscale_gateway_requests_total{route="/",pool="default",code="5xx"} 1' in text
    assert 'hscale_gateway_backend_requests_total{pool="default",backend="%s",code="4xx"} 1' % a.addr in text
    assert 'hscale_gateway_backend_up{pool="default",backend="%s"} 1' % a.addr in text
    assert "hscale_gateway_request_duration_seconds_bucket" in text
    assert 'hscale_build_info{version=' in text
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_routes_api_round_trip(procs, tmp_path):
    a, b = Backend(procs, "a"), Backend(procs, "b")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - {{name: blue, backends: [{{address: "{a.addr}"}}]}}
    - {{name: green, backends: [{{address: "{b.addr}"}}]}}
  routes: [{{prefix: /, pool: blue}}]
""")
    gw = Gateway(procs, config=cfg)
    routes = requests.get(gw.admin_url("/api/v1/routes")).json()["routes"]
    assert routes[0]["pool"] == "blue"
    routes[0]["pool"] = "green"
    assert requests.put(gw.admin_url("/api/v1/routes"), json={"routes": routes}).status_code == 200
    assert requests.get(gw.url("/")).headers["X-Backend"] == "b"
    r = requests.put(gw.admin_url("/api/v1/routes"), json={"routes": "x"})
    assert r.status_code == 400 and r.json()["field"] == "routes"
