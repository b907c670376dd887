"""End-to-end tests of `hscale gateway`: proxying, balancing, routing and the
header rules, each against real backend processes (gw_backend.py)."""
import collections
import concurrent.futures
import hashlib
import json
import signal
import socket
import struct
import threading
import time

from gw_util import http as requests  # noqa: E402 (default timeouts)

import pytest

from conftest import read_log, run_hscale
from gw_util import Backend, Gateway, raw, write_yaml

# The data path runs either way: socket calls batched through io_uring (the
# default) or plain read/write (io_uring: false, or a kernel that refuses).
IO_MODES = {"io_uring": ("true", "batched through io_uring"),
            "plain": ("false", "plain calls (io_uring off)")}


@pytest.fixture(params=sorted(IO_MODES))
def io_gateway(request, procs):
    """Starts a gateway over the given backends in one I/O mode; checks the mode took."""
    flag, logged = IO_MODES[request.param]

    def start(backends):
        gw = Gateway(procs, backends, env={"HSCALE_GATEWAY_IO_URING": flag})
        deadline = time.time() + 5
        while logged not in read_log(gw.proc) and time.time() < deadline:
            time.sleep(0.05)
        assert "socket I/O: " + logged in read_log(gw.proc)
        return gw
    return start


def test_proxies_and_sets_forwarding_headers(procs, io_gateway):
    b = Backend(procs, "a")
    gw = io_gateway([b])
    r = requests.get(gw.url("/echo?x=1"), headers={
        "Host": "cases.example", "X-Forwarded-For": "10.9.8.7", "X-Request-Id": "abc123",
        "Keep-Alive": "timeout=5", "Connection": "keep-alive, X-Secret", "X-Secret": "s",
        "TE": "trailers"})
    assert r.status_code == 200
    doc = r.json()
    h = {k.lower(): v for k, v in doc["headers"]}
    assert doc["target"] == "/echo?x=1"
    assert h["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "cases.example"
    assert h["x-request-id"] == "abc123"
    for hop in ("keep-alive", "te", "x-secret", "connection"):
        assert hop not in h, f"hop-by-hop {hop} forwarded"
    # A request id is generated when the client sends none, unique per request.
    ids = set()
    for _ in range(5):
        hh = {k.lower(): v for k, v in requests.get(gw.url("/echo")).json()["headers"]}
        assert len(hh["x-request-id"]) == 16
        ids.add(hh["x-request-id"])
    assert len(ids) == 5


def test_round_robin_spreads_evenly(procs, tmp_path):
    # round_robin by name: the default (least_request) follows latency
    bs = [Backend(procs, n) for n in "abc"]
    members = ", ".join(f'{{address: "{b.addr}"}}' for b in bs)
    gw = Gateway(procs, config=write_yaml(tmp_path, f"""
gateway:
  pools: [{{name: default, algorithm: round_robin, backends: [{members}]}}]
  routes: [{{prefix: /, pool: default}}]
"""))
    s = requests.Session()
    seen = collections.Counter(s.get(gw.url("/")).headers["X-Backend"] for _ in range(30))
    assert seen == {"a": 10, "b": 10, "c": 10}


def test_request_bodies_stream_both_ways(procs, io_gateway):
    b = Backend(procs, "a")
    gw = io_gateway([b])
    body = bytes(range(256)) * 4096       # 1 MiB: larger than any buffer
    r = requests.post(gw.url("/echo"), data=body)
    assert r.status_code == 200
    assert r.json()["body_len"] == len(body)
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()

    def gen():
        for i in range(50):
            yield bytes([i]) * 3000
    r = requests.post(gw.url("/echo"), data=gen())      # chunked request body
    want = b"".join(bytes([i]) * 3000 for i in range(50))
    assert r.json()["body_len"] == len(want)
    assert r.json()["sha256"] == hashlib.sha256(want).hexdigest()
    big = requests.get(gw.url("/big?n=3000000"))
    assert len(big.content) == 3000000
    ch = requests.get(gw.url("/chunked"))
    assert ch.json() == {"a": "chunked"}
    assert ch.headers.get("Transfer-Encoding") == "chunked"


def test_pipelined_requests_answer_in_order(procs, io_gateway):
    b = Backend(procs, "a")
    gw = io_gateway([b])
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    out = raw(gw.port, reqs + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              read_until_close=True)
    # Each body is followed by the next head; pull the paths in order.
    bodies = [seg.split(b"HTTP/1.1")[0] for seg in out.split(b"\r\n\r\n")[1:]]
    paths = [json.loads(x)["path"] for x in bodies if x.startswith(b"{")]
    assert paths == [f"/p{i}" for i in range(10)] + ["/last"]


def test_smuggling_attempts_are_refused_and_not_forwarded(procs):
    b = Backend(procs, "a")
    gw = Gateway(procs, [b])
    attacks = [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nFoo: bar\r\n baz\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /echo HTTP/1.1\nHost: x\n\n",
    ]
    for a in attacks:
        out = raw(gw.port, a, read_until_close=True)
        assert out.split(b" ")[1] in (b"400", b"501"), (a, out[:80])
        assert b"X-Backend" not in out, "an ambiguous request reached the backend"


def test_no_backend_answers_503_json_with_retry_after(procs):
    b = Backend(procs, "a")
    gw = Gateway(procs, [b])
    procs.stop(b.proc)
    r = requests.get(gw.url("/"))
    assert r.status_code == 502 or r.status_code == 503
    # Once outlier detection or the API takes it out, 503 with Retry-After.
    requests.patch(gw.admin_url(f"/api/v1/pools/default/backends/{b.addr}"), json={"state": "maint"})
    r = requests.get(gw.url("/"))
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"] == "no backend available"


def test_a_retry_on_a_pool_of_one_goes_back_to_its_member(procs):
    """The only member resets the first connection (as a backend whose
    listen queue overflowed under a burst may): the GET is retried on that
    member and answered, not turned into 503 "no backend available"."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    tries = []                       # requests for /x (health checks are answered apart)

    def serve():
        while True:
            try:
                s, _ = lst.accept()
            except OSError:
                return
            head = s.recv(65536)
            if head.startswith(b"GET /x ") and not tries:
                tries.append(head)   # the first: reset, no answer
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                continue
            if head.startswith(b"GET /x "):
                tries.append(head)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            s.close()
    threading.Thread(target=serve, daemon=True).start()

    class One:
        addr = f"127.0.0.1:{lst.getsockname()[1]}"
    gw = Gateway(procs, [One()])
    try:
        r = requests.get(gw.url("/x"))
        assert (r.status_code, r.text) == (200, "ok")
        assert len(tries) == 2, "retried on the same member"
    finally:
        lst.close()


def test_routes_read_write_split_and_weights(procs, tmp_path):
    bs = {n: Backend(procs, n) for n in ("ro", "rw", "stable", "canary", "api")}
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: readonly
      backends: [{{address: "{bs['ro'].addr}"}}]
    - name: readwrite
      backends: [{{address: "{bs['rw'].addr}"}}]
    - name: stable
      backends: [{{address: "{bs['stable'].addr}"}}]
    - name: canary
      backends: [{{address: "{bs['canary'].addr}"}}]
    - name: api
      backends: [{{address: "{bs['api'].addr}"}}]
  routes:
    - prefix: /cases
      read_pool: readonly
      write_pool: readwrite
    - prefix: /app
      split: [{{pool: stable, weight: 80}}, {{pool: canary, weight: 20}}]
    - prefix: /
      host: api.example
      pool: api
    - prefix: /
      pool: stable
""")
    gw = Gateway(procs, config=cfg)
    s = requests.Session()
    assert s.get(gw.url("/cases/1")).headers["X-Backend"] == "ro"
    assert s.post(gw.url("/cases"), data=b"{}").headers["X-Backend"] == "rw"
    assert s.delete(gw.url("/cases/1")).headers["X-Backend"] == "rw"
    assert s.get(gw.url("/x"), headers={"Host": "api.example"}).headers["X-Backend"] == "api"
    assert s.get(gw.url("/x")).headers["X-Backend"] == "stable"
    n = collections.Counter(s.get(gw.url("/app")).headers["X-Backend"] for _ in range(1000))
    assert 120 <= n["canary"] <= 280, n      # 20 % of 1000, generous bounds
    # Shift everything to the canary at run time, atomically.
    routes = s.get(gw.admin_url("/api/v1/routes")).json()["routes"]
    for r in routes:
        if r["prefix"] == "/app":
            r["split"] = [{"pool": "canary", "weight": 100}]
    r = s.put(gw.admin_url("/api/v1/routes"), json={"routes": routes})
    assert r.status_code == 200, r.text
    n = collections.Counter(s.get(gw.url("/app")).headers["X-Backend"] for _ in range(50))
    assert n == {"canary": 50}
    # A bad edit is refused whole and names the field.
    bad = [dict(routes[0], pool="nope", read_pool=None, write_pool=None)] + routes[1:]
    r = s.put(gw.admin_url("/api/v1/routes"), json={"routes": bad})
    assert r.status_code == 400 and "nope" in r.text, r.text
    assert s.get(gw.url("/cases/1")).headers["X-Backend"] == "ro"


def test_sticky_cookie_and_consistent_hash(procs, tmp_path):
    bs = [Backend(procs, n) for n in "abcd"]
    members = ", ".join(f'{{address: "{b.addr}"}}' for b in bs)
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: sticky
      backends: [{members}]
      sticky_cookie: HSCALE_STICKY
      sticky_max_age: 86400s
    - name: hashed
      algorithm: hash
      hash_on: query
      hash_key: user_id
      backends: [{members}]
  routes:
    - {{prefix: /s, pool: sticky}}
    - {{prefix: /h, pool: hashed}}
""")
    gw = Gateway(procs, config=cfg)
    r = requests.get(gw.url("/s"))
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("HSCALE_STICKY=") and "Max-Age=86400" in cookie
    first = r.headers["X-Backend"]
    s = requests.Session()
    s.cookies.set("HSCALE_STICKY", cookie.split("=", 1)[1].split(";")[0])
    assert {s.get(gw.url("/s")).headers["X-Backend"] for _ in range(20)} == {first}
    # Hashing: each user always lands on the same backend; users spread.
    owner = {}
    for u in range(40):
        got = {requests.get(gw.url(f"/h?user_id={u}")).headers["X-Backend"] for _ in range(3)}
        assert len(got) == 1
        owner[u] = got.pop()
    assert len(set(owner.values())) >= 3


def test_rate_limit_answers_429_with_headers(procs, tmp_path):
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools: [{{name: p, backends: [{{address: "{b.addr}"}}]}}]
  rate_limits: [{{name: per_ip, limit: 5, period: 60s}}]
  routes:
    - {{prefix: /limited, pool: p, rate_limit: per_ip}}
    - {{prefix: /, pool: p}}
""")
    gw = Gateway(procs, config=cfg)
    s = requests.Session()
    codes = [s.get(gw.url("/limited")).status_code for _ in range(8)]
    assert codes == [200] * 5 + [429] * 3
    r = s.get(gw.url("/limited"))
    assert r.headers["RateLimit-Limit"] == "5" and r.headers["RateLimit-Remaining"] == "0"
    assert int(r.headers["Retry-After"]) >= 1
    assert s.get(gw.url("/other")).status_code == 200     # other routes are not limited
    m = requests.get(gw.admin_url("/metrics")).text
    assert "hscale_gateway_rate_limited_total 4" in m


def loop_counters(gw):
    """The worker-loop counters from the gateway's /metrics."""
    text = requests.get(gw.admin_url("/metrics")).text
    out = {}
    for name in ("batches", "callbacks", "yields"):
        line = [ln for ln in text.splitlines() if ln.startswith(f"hscale_gateway_loop_{name}_total ")]
        assert len(line) == 1, f"hscale_gateway_loop_{name}_total missing"
        out[name] = float(line[0].split()[1])
    return out


def concurrent_gets(gw, clients=8, each=25):
    """`clients` keep-alive clients at once, `each` GETs apiece; all must be 200."""
    def one(_):
        s = requests.Session()
        return [s.get(gw.url("/")).status_code for _ in range(each)]
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        codes = [c for r in ex.map(one, range(clients)) for c in r]
    assert codes == [200] * clients * each


def test_workers_yield_after_batches_as_configured(procs, tmp_path):
    b = Backend(procs, "a")
    cfg = tmp_path / "hscale.yaml"

    def write(yield_after_batch):
        cfg.write_text(f"""
gateway:
  yield_after_batch: {yield_after_batch}
  pools: [{{name: p, backends: [{{address: "{b.addr}"}}]}}]
  routes: [{{prefix: /, pool: p}}]
""")
    write("false")
    gw = Gateway(procs, config=str(cfg))
    concurrent_gets(gw)
    off = loop_counters(gw)
    # Each request is at least a client read and a backend read.
    assert off["batches"] > 0 and off["callbacks"] >= 400, off
    assert off["callbacks"] >= off["batches"], off
    assert off["yields"] == 0, off
    # Turned on by a reload: from then on every busy iteration yields.
    write("true")
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while read_log(gw.proc).count("configuration reloaded") < 1 and time.time() < deadline:
        time.sleep(0.05)
    concurrent_gets(gw)
    on = loop_counters(gw)
    # Every busy iteration that wrote yields; one that wrote nothing (a
    # client's close, a timer; or the one already waiting when the reload
    # landed) does not: the 8 clients' closes and a tenth of slack.
    batches = on["batches"] - off["batches"]
    assert 0 < on["yields"] <= batches, (off, on)
    assert batches - on["yields"] <= 12 + batches // 10, (off, on)
    assert on["callbacks"] - off["callbacks"] >= 400, (off, on)


def test_security_headers_per_route(procs, tmp_path):
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools: [{{name: p, backends: [{{address: "{b.addr}"}}]}}]
  routes:
    - {{prefix: /secure, pool: p, security_headers: true}}
    - {{prefix: /, pool: p}}
""")
    gw = Gateway(procs, config=cfg)
    h = requests.get(gw.url("/secure")).headers
    assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
    assert "max-age" in h["Strict-Transport-Security"] and h["Referrer-Policy"]
    assert "X-Frame-Options" not in requests.get(gw.url("/plain")).headers


def test_unknown_route_is_404(procs, tmp_path):
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools: [{{name: p, backends: [{{address: "{b.addr}"}}]}}]
  routes: [{{prefix: /api, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)
    r = requests.get(gw.url("/elsewhere"))
    assert r.status_code == 404 and r.json()["error"] == "no route matches this request"
    assert requests.get(gw.url("/api/x")).status_code == 200


def test_active_health_checks_take_out_and_bring_back(procs, tmp_path):
    flag = tmp_path / "b.unhealthy"
    a = Backend(procs, "a")
    b = Backend(procs, "b", health_file=str(flag))
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: p
      algorithm: round_robin      # both members seen in 10 sequential requests
      backends: [{{address: "{a.addr}"}}, {{address: "{b.addr}"}}]
      health: {{interval: 100ms, timeout: 100ms, rise: 2, fall: 2}}
  routes: [{{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)
    s = requests.Session()
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a", "b"}
    flag.write_text("x")
    time.sleep(0.8)
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a"}
    pool = s.get(gw.admin_url("/api/v1/pools/p")).json()
    assert [m["healthy"] for m in pool["members"]] == [True, False]
    flag.unlink()
    time.sleep(0.8)
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a", "b"}


def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = write_yaml(tmp_path, """
gateway:
  pools: [{name: p, backends: [{address: "127.0.0.1:1", weight: 0}]}]
  routes: [{prefix: /, pool: p}]
""")
    r = run_hscale("gateway", "-c", cfg)
    assert r.returncode == 2
    assert "weight" in r.stderr and "hscale.yaml" in r.stderr, r.stderr
    r = run_hscale("gateway", "--backend", "nohost")
    assert r.returncode == 2 and "port" in r.stderr


def test_sigterm_finishes_in_flight_requests(procs):
    b = Backend(procs, "a")
    gw = Gateway(procs, [b])
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"GET /slow?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    gw.proc.send_signal(15)
    s.settimeout(5)
    data = b""
    while b"slow" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b"Connection: close" in data
    assert gw.proc.wait(5) == 0
    assert "draining" in read_log(gw.proc)


def test_max_conn_queues_then_answers_503(procs, tmp_path):
    import concurrent.futures as cf
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: p
      backends: [{{address: "{b.addr}"}}]
      max_conn: 1
      queue_size: 1
      queue_timeout: 2s
    - name: q
      backends: [{{address: "{b.addr}"}}]
      max_conn: 1
      queue_size: 5
      queue_timeout: 100ms
  routes: [{{prefix: /, host: q.example, pool: q}}, {{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)

    def get(path, host="p.example"):
        t = time.time()
        r = requests.get(gw.url(path), headers={"Host": host}, timeout=10)
        return r.status_code, time.time() - t

    with cf.ThreadPoolExecutor(3) as ex:
        got = sorted(ex.map(get, ["/slow?ms=300"] * 3))
    # one served at once, one waited its turn, the third found the queue full
    assert [s for s, _ in got] == [200, 200, 503], got
    with cf.ThreadPoolExecutor(2) as ex:
        got = sorted(ex.map(get, ["/slow?ms=600"] * 2, ["q.example"] * 2))
    assert [s for s, _ in got] == [200, 503], got
    assert got[1][1] < 0.5      # the waiter gave up at queue_timeout, not at 600 ms
    m = requests.get(gw.admin_url("/metrics")).text
    assert 'hscale_gateway_pool_full_total{pool="p"} 1' in m
    assert "hscale_gateway_queue_depth 0" in m


def test_exchange_phases_show_where_requests_wait(procs, tmp_path):
    """The admin API and the metrics count requests by exchange phase: one
    waiting for its response head from a slow backend is in "request", one
    waiting for a max_conn slot is "queued", and every count returns to 0."""
    import concurrent.futures as cf
    from up_util import wait_until
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: p
      backends: [{{address: "{b.addr}"}}]
      max_conn: 1
      queue_size: 4
      queue_timeout: 5s
  routes: [{{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)

    def phases():
        return requests.get(gw.admin_url("/health")).json()["exchanges_by_phase"]

    assert set(phases()) == {"head", "route", "queued", "cache_wait", "connecting", "request", "response",
                             "tunnel"}
    with cf.ThreadPoolExecutor(2) as ex:
        futs = [ex.submit(requests.get, gw.url("/slow?ms=1500"), timeout=10) for _ in range(2)]
        wait_until(lambda: phases()["request"] == 1 and phases()["queued"] == 1, 5,
                   "one request on the backend, one queued")
        m = requests.get(gw.admin_url("/metrics")).text
        assert 'hscale_gateway_exchanges_by_phase{phase="queued"} 1' in m
        assert [f.result().status_code for f in futs] == [200, 200]
    wait_until(lambda: not any(phases().values()), 5, "every count back to 0")


def test_backup_takes_over_only_when_primaries_are_down(procs, tmp_path):
    a, bk = Backend(procs, "a"), Backend(procs, "backup")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: p
      backends: [{{address: "{a.addr}"}}, {{address: "{bk.addr}", backup: true}}]
      health: {{interval: 100ms, timeout: 100ms, rise: 1, fall: 1}}
  routes: [{{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)
    s = requests.Session()
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"a"}
    procs.stop(a.proc)
    time.sleep(0.5)
    assert {s.get(gw.url("/")).headers["X-Backend"] for _ in range(10)} == {"backup"}


def test_least_conn_avoids_the_busy_backend(procs, tmp_path):
    import concurrent.futures as cf
    a, b = Backend(procs, "a"), Backend(procs, "b")
    cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: p
      algorithm: least_conn
      backends: [{{address: "{a.addr}"}}, {{address: "{b.addr}"}}]
  routes: [{{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)
    # Four long requests spread two and two; while they run, quick ones
    # still alternate, and once one side frees up it gets the next ones.
    with cf.ThreadPoolExecutor(4) as ex:
        slow = [ex.submit(requests.get, gw.url("/slow?ms=800")) for _ in range(4)]
        time.sleep(0.2)
        assert sorted(f.result().headers["X-Backend"] for f in slow) == ["a", "a", "b", "b"]
    hold = cf.ThreadPoolExecutor(1).submit(requests.get, gw.url("/slow?ms=800"))
    time.sleep(0.2)
    busy = requests.get(gw.admin_url("/api/v1/pools/p")).json()["members"]
    idle = [m["address"] for m in busy if m["in_flight"] == 0]
    assert len(idle) == 1
    names = {requests.get(gw.url("/")).headers["X-Backend"] for _ in range(6)}
    assert names == {"a" if idle[0] == a.addr else "b"}
    hold.result()


def test_body_limit_and_idle_timeout(procs, tmp_path):
    b = Backend(procs, "a")
    cfg = write_yaml(tmp_path, f"""
gateway:
  max_body: 1KiB
  client_idle_timeout: 300ms
  pools: [{{name: p, backends: [{{address: "{b.addr}"}}]}}]
  routes: [{{prefix: /, pool: p}}]
""")
    gw = Gateway(procs, config=cfg)
    r = requests.post(gw.url("/echo"), data=b"x" * 2048)
    assert r.status_code == 413
    assert requests.post(gw.url("/echo"), data=b"x" * 512).json()["body_len"] == 512
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.settimeout(3)
    t = time.time()
    assert s.recv(100) == b""          # closed by the gateway, idle
    assert 0.2 < time.time() - t < 2
