"""A WebSocket echo backend for the gateway's tunnel tests (python3-websockets).

usage: ws_echo.py PORT NAME [CERT KEY]

With CERT and KEY it serves wss:// (TLS), for the https-backend tests.

Every message comes back as it came (text or binary, fragmented or not),
except these text commands:
  "whoami"        -> NAME (which member the tunnel reached)
  "push N SIZE"   -> N binary messages of SIZE bytes in a row
  "headers"       -> the handshake's request headers as JSON
A plain HTTP GET (no Upgrade) gets 200 "plain NAME" with its headers as JSON.
"""
import asyncio
import http
import json
import ssl
import sys

import websockets

PORT, NAME = int(sys.argv[1]), sys.argv[2]
TLS = None
if len(sys.argv) == 5:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(sys.argv[3], sys.argv[4])



async def handler(ws, path=None):
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg == "whoami":
                await ws.send(NAME)
            elif isinstance(msg, str) and msg == "headers":
                await ws.send(json.dumps(dict(ws.request_headers.raw_items())))
            elif isinstance(msg, str) and msg.startswith("push "):
                _, n, size = msg.split()
                chunk = b"\xab" * int(size)
                for _ in range(int(n)):
                    await ws.send(chunk)
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def plain_http(path, headers):
    if "upgrade" not in headers.get("Connection", "").lower():
        body = json.dumps({"name": NAME, "headers": dict(headers.raw_items())}).encode()
        return http.HTTPStatus.OK, [("Content-Type", "application/json"),
                                    ("X-Backend", NAME)], body
    return None


async def main():
    async with websockets.serve(handler, "127.0.0.1", PORT, process_request=plain_http,
                                max_size=None, ping_interval=None, ssl=TLS):
        await asyncio.Future()


asyncio.run(main())
