"""Opens N TLS keep-alive connections (one request each, no verification:
the benchmark's self-signed certificate) and holds them SECONDS, for the
memory per idle TLS client connection of bench/tls_vs_peers.sh.

    python3 tls_idleconns.py HOST PORT N SECONDS
Prints "open K" once K connections are established and idle."""
import asyncio
import resource
import ssl
import sys

resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


async def one(conns):
    r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
    w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    size = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":")[1])
    await r.readexactly(size)
    conns.append((r, w))


async def main():
    conns = []
    sem = asyncio.Semaphore(100)

    async def g():
        async with sem:
            try:
                await one(conns)
            except OSError:
                pass
    await asyncio.gather(*[g() for _ in range(n)])
    print("open", len(conns), flush=True)
    await asyncio.sleep(hold)

asyncio.run(main())
