"""WebSocket echo load for bench/compress_ws_vs_peers.sh.

    python3 ws_load.py PORT TUNNELS SECONDS [SIZE]

Opens TUNNELS WebSocket connections (a real handshake through the proxy),
then each keeps one masked SIZE-byte binary frame in flight: send, wait
for the same bytes back, send again. Prints "msgs N rate R" (echoes per
second over SECONDS, all tunnels) and fails if any tunnel broke."""
import asyncio
import base64
import os
import sys
import time

PORT, TUNNELS, SECONDS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
SIZE = int(sys.argv[4]) if len(sys.argv) > 4 else 64


def frame(payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + mask + body


class Tunnel(asyncio.Protocol):
    def __init__(self, ready, counts):
        self.ready, self.counts, self.buf, self.open = ready, counts, b"", False
        self.msg = frame(os.urandom(SIZE))

    def connection_made(self, t):
        self.t = t
        key = base64.b64encode(os.urandom(16))
        t.write(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")

    def data_received(self, data):
        self.buf += data
        if not self.open:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 101"):
                print("handshake refused:", head[:60], file=sys.stderr)
                os._exit(1)
            self.open = True
            self.ready.set_result(True) if not self.ready.done() else None
            return
        n = len(self.msg)
        while len(self.buf) >= n:
            self.buf = self.buf[n:]
            self.counts[0] += 1
            if self.counts[1]:
                self.t.write(self.msg)

    def start(self):
        self.t.write(self.msg)

    def connection_lost(self, exc):
        if self.counts[1]:
            print("a tunnel closed during the run", file=sys.stderr)
            os._exit(1)


async def main():
    loop = asyncio.get_running_loop()
    counts = [0, True]
    tunnels = []
    for _ in range(TUNNELS):
        ready = loop.create_future()
        _, p = await loop.create_connection(lambda: Tunnel(ready, counts), "127.0.0.1", PORT)
        await asyncio.wait_for(ready, 10)
        tunnels.append(p)
    for p in tunnels:
        p.start()
    await asyncio.sleep(0.5)              # warm up
    c0, t0 = counts[0], time.monotonic()
    await asyncio.sleep(SECONDS)
    c1, t1 = counts[0], time.monotonic()
    counts[1] = False
    print(f"msgs {c1 - c0} rate {(c1 - c0) / (t1 - t0):.0f}")
    for p in tunnels:
        p.t.close()


asyncio.run(main())
