"""End-to-end tests for https backends (pools with `tls: true`): a real
nginx serving a certificate from a throw-away CA (tls_util.py) behind a real
`hscale gateway`.

Proxied requests verify the chain and the name and reuse their TLS
connections (a few handshakes for many requests) or, when the backend closes
each one, resume their sessions; an unknown CA or a wrong name is a 502
whose reason is in the log; health checks run over TLS, so they mark such a
member down and a good one up.
"""
import asyncio
import os
import re
import socket
import sys
import time

import pytest

from conftest import HERE, free_port, read_log, wait_port, wait_until
from gw_util import Gateway, bench, http, write_yaml
from tls_util import access_log_path, make_ca, make_leaf, start_nginx_tls


def tls_metrics(gw, pool):
    text = http.get(gw.admin_url("/metrics")).text
    out = {}
    for res in ("full", "resumed", "failed"):
        m = re.search(r'hscale_gateway_upstream_tls_handshakes_total\{pool="%s",result="%s"\} (\d+)'
                      % (pool, res), text)
        out[res] = int(m.group(1)) if m else 0
    return out


def member(gw, pool):
    return http.get(gw.admin_url(f"/api/v1/pools/{pool}")).json()["members"][0]


def pool_yaml(name, port, ca, extra="", health="health: { enabled: false }"):
    return f"""
    - name: {name}
      tls: true
      tls_ca_file: {ca}
      {extra}
      {health}
      backends:
        - address: 127.0.0.1:{port}"""


def test_https_backend_verified_kept_alive_and_resumed(procs, tmp_path):
    ca = make_ca(tmp_path)
    port = start_nginx_tls(procs, tmp_path, *make_leaf(tmp_path, ca), body="secure")
    cfg = write_yaml(tmp_path, "gateway:\n  pools:" + pool_yaml("secure", port, ca[0]) + """
  routes:
    - prefix: /
      pool: secure
""")
    gw = Gateway(procs, config=cfg, workers=2)
    r = http.get(gw.url("/"))
    assert r.status_code == 200 and r.text == "secure\n", (r.status_code, r.text)
    assert http.get(gw.admin_url("/api/v1/pools/secure")).json()["tls"] is True

    # Keep-alive: idle TLS connections go back to the pool with their session.
    br, rep = bench(tmp_path, gw.url("/"), "-c", "4", "-t", "2", "-d", "1s")
    assert br.returncode == 0, br.stdout + br.stderr
    assert rep["total"]["failures"] == 0 and rep["total"]["count"] > 100, rep["total"]
    hs = tls_metrics(gw, "secure")
    assert hs["failed"] == 0, hs
    assert hs["full"] + hs["resumed"] <= 12, hs      # 4 client connections, 2 workers

    # A backend that closes after every response: a handshake per request,
    # resumed with the member's last session.
    before = tls_metrics(gw, "secure")
    for _ in range(20):
        r = http.get(gw.url("/once"))
        assert r.status_code == 200 and r.text == "once\n", (r.status_code, r.text)
    after = tls_metrics(gw, "secure")
    new = {k: after[k] - before[k] for k in after}
    # (the first few may go out on connections the bench left idle)
    assert new["full"] + new["resumed"] >= 15 and new["failed"] == 0, new
    assert new["resumed"] >= 0.9 * (new["full"] + new["resumed"]), new


def test_unknown_ca_or_wrong_name_is_502_with_the_reason_logged(procs, tmp_path):
    ca = make_ca(tmp_path)
    other = make_ca(tmp_path, "other-ca")
    port = start_nginx_tls(procs, tmp_path, *make_leaf(tmp_path, ca))
    cfg = write_yaml(tmp_path, "gateway:\n  pools:"
                     + pool_yaml("unknown_ca", port, other[0])
                     + pool_yaml("wrong_name", port, ca[0], "tls_server_name: api.example")
                     + pool_yaml("named", port, ca[0], "tls_server_name: localhost") + """
  routes:
    - prefix: /a
      pool: unknown_ca
    - prefix: /b
      pool: wrong_name
    - prefix: /
      pool: named
""")
    gw = Gateway(procs, config=cfg)
    r = http.get(gw.url("/a"))
    assert r.status_code == 502 and "TLS" in r.json()["error"], (r.status_code, r.text)
    r = http.get(gw.url("/b"))
    assert r.status_code == 502 and "TLS" in r.json()["error"], (r.status_code, r.text)
    r = http.get(gw.url("/"))   # the name the certificate has, given as tls_server_name
    assert r.status_code == 200 and r.text == "ok\n", (r.status_code, r.text)
    wait_until(lambda: "hostname mismatch" in read_log(gw.proc), 5, "the wrong name in the log")
    log = read_log(gw.proc)
    assert re.search(r"TLS to 127\.0\.0\.1:\d+ in pool unknown_ca failed: certificate refused: "
                     r"unable to get local issuer certificate", log), log
    assert re.search(r"pool wrong_name failed: certificate refused: hostname mismatch", log), log
    assert tls_metrics(gw, "unknown_ca")["failed"] >= 1
    assert tls_metrics(gw, "named")["failed"] == 0


def test_a_backend_that_never_completes_the_handshake_is_a_502_after_connect_timeout(procs, tmp_path):
    ca = make_ca(tmp_path)
    with socket.socket() as mute:      # accepts TCP (the kernel does), never speaks TLS
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        port = mute.getsockname()[1]
        cfg = write_yaml(tmp_path, "gateway:\n  connect_timeout: 300ms\n  pools:"
                         + pool_yaml("mute", port, ca[0]) + "\n  routes: [{prefix: /, pool: mute}]\n")
        gw = Gateway(procs, config=cfg)
        t0 = time.monotonic()
        r = http.get(gw.url("/"))
        assert r.status_code == 502 and "TLS" in r.json()["error"], (r.status_code, r.text)
        assert time.monotonic() - t0 < 5
        wait_until(lambda: "failed: handshake: timed out" in read_log(gw.proc), 5, "the timeout logged")
        assert tls_metrics(gw, "mute")["failed"] >= 1


def test_health_checks_over_tls_mark_members_down_and_up(procs, tmp_path):
    ca = make_ca(tmp_path)
    other = make_ca(tmp_path, "other-ca")
    leaf = make_leaf(tmp_path, ca)
    serving = start_nginx_tls(procs, tmp_path, *leaf)
    later = free_port()   # nothing listens yet: the good member starts failing its checks
    health = "health: { path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }"
    cfg = write_yaml(tmp_path, "gateway:\n  pools:"
                     + pool_yaml("good", later, ca[0], health=health)
                     + pool_yaml("bad", serving, other[0], health=health) + """
  routes:
    - prefix: /bad
      pool: bad
    - prefix: /
      pool: good
""")
    gw = Gateway(procs, config=cfg)
    # A backend whose certificate the pool's CA does not sign: down, and why.
    wait_until(lambda: not member(gw, "bad")["healthy"], 10, "the bad member down")
    wait_until(lambda: not member(gw, "good")["healthy"], 10, "the good member down")
    assert http.get(gw.url("/bad")).status_code == 503
    log = read_log(gw.proc)
    assert re.search(r"in pool bad failed 2 health checks: out of rotation \(last: tls handshake "
                     r"with 127\.0\.0\.1: certificate not trusted", log), log
    # The good pool's backend comes up: its TLS checks pass and bring it back.
    start_nginx_tls(procs, tmp_path, *leaf, port=later)
    wait_until(lambda: member(gw, "good")["healthy"], 10, "the good member up by TLS checks")
    assert http.get(gw.url("/")).status_code == 200
    assert re.search(r"in pool good is healthy again", read_log(gw.proc))
    assert not member(gw, "bad")["healthy"]
    # The checks keep their TLS connection alive: one handshake, many checks.
    def checks_on_one_connection():
        lines = [l.split() for l in access_log_path(tmp_path, later).read_text().splitlines()]
        return max((int(l[0]) for l in lines if l[-1].startswith("hscale")), default=0)
    wait_until(lambda: checks_on_one_connection() >= 3, 10, "health checks reusing a connection")


def test_websocket_tunnel_to_an_https_backend(procs, tmp_path):
    """After a 101 from a wss backend the tunnel runs over TLS both ways:
    messages, a large burst down, and the close."""
    websockets = pytest.importorskip("websockets")
    ca = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, ca)
    port = free_port()
    be = procs.start([sys.executable, os.path.join(HERE, "ws_echo.py"), port, "tls-echo", cert, key],
                     name="ws-tls")
    wait_port(port, proc=be)
    cfg = write_yaml(tmp_path, "gateway:\n  pools:" + pool_yaml("wss", port, ca[0])
                     + "\n  routes: [{prefix: /, pool: wss}]\n")
    gw = Gateway(procs, config=cfg)

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws", max_size=None,
                                      ping_interval=None) as ws:
            await ws.send("whoami")
            assert await ws.recv() == "tls-echo"
            big = os.urandom(300000)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("push 50 20000")
            got = 0
            for _ in range(50):
                got += len(await ws.recv())
            assert got == 50 * 20000

    asyncio.run(asyncio.wait_for(talk(), 60))
    hs = tls_metrics(gw, "wss")
    assert hs["full"] + hs["resumed"] >= 1 and hs["failed"] == 0, hs
