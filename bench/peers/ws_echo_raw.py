"""Raw WebSocket echo backend for bench/compress_ws_vs_peers.sh.

    python3 ws_echo_raw.py PORT

Answers an Upgrade handshake with 101 (Sec-WebSocket-Accept computed), then
echoes every byte back as it came: a proxy relays bytes and never looks at
frames, and ws_load.py reads back exactly what it sent, so the backend does
no framing work and stays out of the proxies' way. A plain GET (the
proxies' health checks) gets 200."""
import asyncio
import base64
import hashlib
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.head, self.tunnel = t, b"", False

    def data_received(self, data):
        if self.tunnel:
            self.t.write(data)
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        head, rest = self.head.split(b"\r\n\r\n", 1)
        key = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"sec-websocket-key":
                key = v.strip()
        if key is None:
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.head = rest
            return
        acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        self.tunnel = True
        if rest:
            self.t.write(rest)


async def main():
    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]),
                                                         reuse_address=True, backlog=1024)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
