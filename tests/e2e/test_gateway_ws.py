"""WebSocket (Upgrade) through the gateway: the handshake is routed and
balanced like any request, then the connection is a two-way tunnel with
backpressure, an idle timeout, a cap, metrics; reloads keep tunnels, SIGTERM
and a member's drain end them after their grace period.

The backend is a real WebSocket server (ws_echo.py, python3-websockets)."""
import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time

import pytest

from conftest import HERE, read_log, wait_port, free_port
from gw_util import Gateway, http, write_yaml
from up_util import wait_until

websockets = pytest.importorskip("websockets")


class WsBackend:
    def __init__(self, procs, name):
        self.name = name
        self.port = free_port()
        self.proc = procs.start([sys.executable, os.path.join(HERE, "ws_echo.py"), self.port, name],
                                name=f"ws-{name}")
        wait_port(self.port, proc=self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(port, path="/ws", **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    return websockets.connect(f"ws://127.0.0.1:{port}{path}", **kw)


def gateway_config(tmp_path, backends, extra="", pool_extra=""):
    members = ", ".join(f'{{address: "{b.addr}"}}' for b in backends)
    return write_yaml(tmp_path, f"""
gateway:
{extra}
  pools:
    - name: ws
      backends: [{members}]
{pool_extra}
  routes: [{{prefix: /, pool: ws}}]
""")


def metric(gw, name):
    text = http.get(gw.admin_url("/metrics")).text
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:          # the series, labels included
            return float(line.rsplit(" ", 1)[1])
    return None


def health(gw):
    return http.get(gw.admin_url("/health")).json()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_ws_messages_both_ways_large_and_fragmented(procs, tmp_path):
    b = WsBackend(procs, "a")
    gw = Gateway(procs, [b])

    async def go():
        async with connect(gw.port) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            big = os.urandom(3 * 1024 * 1024 + 17)       # past every gateway buffer
            await ws.send(big)
            assert await ws.recv() == big
            # A fragmented message: frames sent one by one, echoed whole.
            parts = [os.urandom(70000), os.urandom(5), os.urandom(200000)]
            await ws.send(iter(parts))
            assert await ws.recv() == b"".join(parts)
            # Server-initiated traffic, many messages in a row.
            await ws.send("push 200 1000")
            for _ in range(200):
                assert await ws.recv() == b"\xab" * 1000
            # The handshake went through the gateway's rewrite.
            await ws.send("headers")
            got = {k.lower(): v for k, v in json.loads(await ws.recv()).items()}
            assert got["upgrade"].lower() == "websocket" and "upgrade" in got["connection"].lower()
            assert got["x-forwarded-for"] == "127.0.0.1" and "x-request-id" in got
            assert health(gw)["connections_by_phase"]["tunnel"] == 1
            assert metric(gw, "hscale_gateway_tunnels") == 1
        wait_until(lambda: metric(gw, "hscale_gateway_tunnels") == 0, 10, "tunnel closed")

    run(go())
    assert metric(gw, 'hscale_gateway_tunnel_bytes_total{direction="up"}') > 3 * 1024 * 1024
    assert metric(gw, 'hscale_gateway_tunnel_bytes_total{direction="down"}') > 3 * 1024 * 1024 + 200000
    assert metric(gw, "hscale_gateway_tunnel_duration_seconds_count") == 1
    assert health(gw)["connections_by_phase"]["tunnel"] == 0
    # The handshake counts as one request answered 1xx.
    text = http.get(gw.admin_url("/metrics")).text
    assert 'code="1xx"} 1' in text


def test_upgrade_not_named_in_connection_is_a_plain_request(procs):
    b = WsBackend(procs, "a")
    gw = Gateway(procs, [b])
    r = http.get(gw.url("/x"), headers={"Upgrade": "websocket"})
    assert r.status_code == 200
    assert "upgrade" not in {k.lower() for k in r.json()["headers"]}


class RawTunnelBackend:
    """A bare TCP backend that answers any handshake with 101 and then
    writes as fast as its socket takes bytes, counting what the kernel
    accepted: with a reader that never reads, the count stalls once every
    buffer on the way is full. (The websockets library queues in its own
    transport, which would hide where the bytes wait.)"""

    def __init__(self, total):
        self.total, self.sent, self.got = total, 0, b""
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()

    def serve(self):
        while True:
            conn, _ = self.srv.accept()
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                got = conn.recv(4096)
                if not got:
                    return
                head += got
            if b"upgrade: raw" not in head.lower():      # a health check
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                return
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            chunk = bytes(range(256)) * 256
            conn.settimeout(30)
            try:
                while self.sent < self.total:
                    self.sent += conn.send(chunk[: min(len(chunk), self.total - self.sent)])
            except OSError:
                pass


def test_tunnel_slow_reader_backpressure_keeps_gateway_memory_bounded(procs):
    total = 512 * 1024 * 1024
    b = RawTunnelBackend(total)
    gw = Gateway(procs, extra=["--backend", f"127.0.0.1:{b.port}"])
    base = rss_kb(gw.proc.pid)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.connect(("127.0.0.1", gw.port))
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n")
    # The reader waits: the backend's count must stop growing.
    last, stable = [-1], [time.time()]

    def stalled():
        if b.sent != last[0]:
            last[0], stable[0] = b.sent, time.time()
        return time.time() - stable[0] > 1.0
    wait_until(stalled, 30, "the backend's writes to stall", step=0.1)
    grown = rss_kb(gw.proc.pid) - base
    # Kernel socket buffers hold up to ~36 MiB per hop here (tcp_rmem max
    # 32 MiB + tcp_wmem max 4 MiB); the gateway itself holds its bounded
    # buffers (c->out up to 256 KiB plus one read).
    assert b.sent < 100 * 1024 * 1024, b.sent
    assert grown < 16 * 1024, f"gateway RSS grew {grown} KiB"
    # The reader catches up: every byte arrives, in order.
    c.settimeout(30)
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(65536)
    assert head.startswith(b"HTTP/1.1 101")
    got = len(head.split(b"\r\n\r\n", 1)[1])
    pattern = bytes(range(256))
    while got < total:
        data = c.recv(1 << 20)
        assert data, f"closed after {got} bytes"
        off = got % 256
        assert data[:16] == (pattern * 2)[off:off + 16][:len(data[:16])]
        got += len(data)
    assert got == total
    c.close()


def test_ws_idle_timeout_closes_quiet_tunnels_only(procs, tmp_path):
    b = WsBackend(procs, "a")
    gw = Gateway(procs, config=gateway_config(tmp_path, [b], extra="  tunnel_idle_timeout: 1s"))

    async def go():
        async with connect(gw.port) as quiet, connect(gw.port) as busy:
            t0 = time.time()
            # The busy tunnel talks every 300 ms for 2.5 s: kept.
            while time.time() - t0 < 2.5:
                await busy.send("ping")
                assert await busy.recv() == "ping"
                await asyncio.sleep(0.3)
            # The quiet one was closed after about a second.
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(quiet.recv(), 5)
            await busy.send("still")
            assert await busy.recv() == "still"

    run(go())
    assert "idle for 1 s: closed" in read_log(gw.proc)


def test_ws_sticky_cookie_keeps_tunnels_on_one_member(procs, tmp_path):
    bs = [WsBackend(procs, n) for n in "abc"]
    gw = Gateway(procs, config=gateway_config(
        tmp_path, bs, pool_extra="      sticky_cookie: HSCALE_STICKY\n      algorithm: round_robin"))

    async def go():
        async with connect(gw.port) as ws:
            cookie = ws.response_headers["Set-Cookie"]
            assert cookie.startswith("HSCALE_STICKY=")
            await ws.send("whoami")
            first = await ws.recv()
        value = cookie.split(";")[0]
        seen = set()
        for _ in range(9):
            async with connect(gw.port, extra_headers={"Cookie": value}) as ws:
                await ws.send("whoami")
                seen.add(await ws.recv())
        assert seen == {first}
        # Without the cookie, round robin spreads the tunnels.
        spread = set()
        for _ in range(6):
            async with connect(gw.port) as ws:
                await ws.send("whoami")
                spread.add(await ws.recv())
        assert len(spread) == 3

    run(go())


def test_ws_consistent_hash_keeps_a_user_on_one_member(procs, tmp_path):
    bs = [WsBackend(procs, n) for n in "abc"]
    gw = Gateway(procs, config=gateway_config(
        tmp_path, bs, pool_extra="      algorithm: hash\n      hash_on: query\n      hash_key: user_id"))

    async def whoami(user):
        async with connect(gw.port, path=f"/ws?user_id={user}") as ws:
            await ws.send("whoami")
            return await ws.recv()

    async def go():
        owners = {}
        for u in range(12):
            got = {await whoami(u) for _ in range(3)}
            assert len(got) == 1, (u, got)
            owners[u] = got.pop()
        assert len(set(owners.values())) >= 2, owners

    run(go())


def test_ws_sighup_reload_keeps_open_tunnels(procs, tmp_path):
    b = WsBackend(procs, "a")
    cfg = gateway_config(tmp_path, [b])
    gw = Gateway(procs, config=cfg)

    async def go():
        async with connect(gw.port) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            with open(cfg, "a") as f:
                f.write("  try_timeout: 3s\n")
            gw.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in read_log(gw.proc), 10, "reload")
            gw.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: read_log(gw.proc).count("configuration reloaded") >= 2, 10, "reload")
            for i in range(20):
                await ws.send(f"after {i}")
                assert await ws.recv() == f"after {i}"
            assert metric(gw, "hscale_gateway_tunnels") == 1

    run(go())


def test_ws_sigterm_closes_tunnels_after_grace(procs, tmp_path):
    b = WsBackend(procs, "a")
    gw = Gateway(procs, config=gateway_config(tmp_path, [b], extra="  grace: 2s"))

    async def go():
        async with connect(gw.port) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            t0 = time.time()
            gw.proc.send_signal(signal.SIGTERM)
            # Within the grace period the tunnel still carries traffic.
            wait_until(lambda: "draining" in read_log(gw.proc), 5, "the gateway draining")
            await ws.send("during grace")
            assert await ws.recv() == "during grace"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            waited = time.time() - t0
            assert 1.5 <= waited <= 6, waited

    run(go())
    gw.proc.wait(10)
    assert gw.proc.returncode == 0
    assert "tunnel 1" in read_log(gw.proc)


def test_ws_member_drain_gives_tunnels_the_drain_time(procs, tmp_path):
    bs = [WsBackend(procs, n) for n in "ab"]
    gw = Gateway(procs, config=gateway_config(
        tmp_path, bs, pool_extra="      sticky_cookie: S\n      algorithm: round_robin"))

    async def go():
        async with connect(gw.port) as ws:
            await ws.send("whoami")
            name = await ws.recv()
            target = next(b for b in bs if b.name == name)
            pool = http.get(gw.admin_url("/api/v1/pools/ws")).json()
            m = next(x for x in pool["members"] if x["id"] == target.addr)
            assert m["tunnels"] == 1 and m["in_flight"] == 0
            t0 = time.time()
            r = http.delete(gw.admin_url(f"/api/v1/pools/ws/backends/{target.addr}?drain=2s"))
            assert r.status_code == 202, r.text
            # New tunnels go to the other member; this one keeps working.
            async with connect(gw.port) as other:
                await other.send("whoami")
                assert await other.recv() != name
            await ws.send("draining")
            assert await ws.recv() == "draining"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert 1.5 <= time.time() - t0 <= 6

    run(go())
    assert "the backend left the configuration" in read_log(gw.proc)


def test_ws_max_tunnels_refuses_beyond_the_cap(procs, tmp_path):
    b = WsBackend(procs, "a")
    gw = Gateway(procs, config=gateway_config(tmp_path, [b], extra="  max_tunnels: 2"))

    async def go():
        async with connect(gw.port) as w1, connect(gw.port) as w2:
            with pytest.raises(websockets.InvalidStatusCode) as e:
                async with connect(gw.port):
                    pass
            assert e.value.status_code == 503
            await w1.send("1")
            await w2.send("2")
            assert await w1.recv() == "1" and await w2.recv() == "2"
        # Slots come back when tunnels close.
        wait_until(lambda: metric(gw, "hscale_gateway_tunnels") == 0, 10, "tunnels closed")
        async with connect(gw.port) as w3:
            await w3.send("3")
            assert await w3.recv() == "3"

    run(go())


def test_ws_client_half_close_reaches_backend(procs):
    """A raw client: handshake, one masked frame, then EOF; the backend's
    close answer still comes back before the gateway closes."""
    b = WsBackend(procs, "a")
    gw = Gateway(procs, [b])
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"Connection: Upgrade" in head and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    # A masked close frame (code 1000), then our write side ends.
    s.sendall(bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2]))
    s.shutdown(socket.SHUT_WR)
    rest = head.split(b"\r\n\r\n", 1)[1]
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    assert rest[:1] == b"\x88"       # the backend's close frame came back
    s.close()
